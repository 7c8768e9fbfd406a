"""Keep large freed blocks in the C heap, so that each training step's big temporaries reuse them.

glibc's malloc serves a block above its mmap threshold (128 KiB, rising to at most 32 MiB as
large blocks are freed) with fresh pages from the kernel and returns them on ``free``; a NumPy
training step allocates its activations, caches and dropout masks anew every step, so every
step paid the kernel for zeroed pages again: best-300s's masks took 8 ms to draw, 3 ms with the
pages kept, and its whole step 118 ms against 103 ms (benchmarks/step_profile.py sorts such time
under "libc (unresolved)" and "memory").  The cost: memory freed by the process stays mapped to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters in glibc's malloc.h
LARGEST_HEAP_BLOCK = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit machines


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); False where the C library
    is not glibc or refuses."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK) and mallopt(M_TRIM_THRESHOLD, 1 << 30))
