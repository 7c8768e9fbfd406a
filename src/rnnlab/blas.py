"""One BLAS thread for the calling thread only, where the BLAS allows it.

NumPy's wheels ship OpenBLAS, whose thread count is one setting for the whole process, except
``openblas_set_num_threads_local`` (OpenBLAS 0.3.27 and later), which sets it for the calling
thread alone.  The NumPy backend's batch split runs its row blocks in threads of its own, each of
whose matrix products must stay on one core: with OpenBLAS's two threads inside each of two
threads, four threads would share two cores, spinning while they wait on each other.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path


@functools.cache
def _thread_local_setter():
    """The loaded OpenBLAS's per-thread thread-count setter, or None (another BLAS, an older
    OpenBLAS, not Linux)."""
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that it is in the map below)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    libraries = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.rsplit("/", 1)[-1]})
    for path in libraries:
        try:
            setter = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        return setter
    return None


def can_pin_threads() -> bool:
    """Whether ``one_blas_thread_here`` works with NumPy's BLAS in this process."""
    return _thread_local_setter() is not None


def one_blas_thread_here() -> None:
    """Make the calling thread's matrix products single-threaded (the other threads keep theirs)."""
    setter = _thread_local_setter()
    if setter is None:
        raise RuntimeError("NumPy's BLAS has no per-thread thread count (see rnnlab.blas.can_pin_threads)")
    setter(1)
