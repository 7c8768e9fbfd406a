"""How much memory this process may use, to refuse work that cannot fit before allocating it."""

from __future__ import annotations

import os


def memory_bytes() -> int:
    """The machine's physical memory, or a smaller cgroup limit (containers, batch jobs)."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


# glibc returns every freed block above its mmap threshold (128 KiB at first, raised only as
# blocks are freed) to the kernel, so a small process re-faults the pages of each step's large
# temporaries: measured, a charlm step (H=128, B=32, T=64, NumPy) took 30% longer in a process
# with a small heap than in one whose earlier large allocations had raised the threshold.
MMAP_THRESHOLD_BYTES = 64 << 20
TRIM_THRESHOLD_BYTES = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def keep_freed_blocks() -> bool:
    """Ask glibc to keep freed blocks below 64 MiB for reuse instead of unmapping them (and to
    trim its heap only past 128 MiB free), unless the user set ``MALLOC_MMAP_THRESHOLD_``
    themselves.  True when it took effect (Linux with glibc)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
