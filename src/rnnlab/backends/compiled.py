"""Whether numba's compiled kernels (``numpy_kernels``) serve arrays of a dtype: one lookup, shared by
the NumPy backend and the NumPy optimizer.  Importing this module imports no numba."""

from __future__ import annotations

import os

import numpy as np

_FOUND: list = []  # [the numpy_kernels module, or None without numba], once looked up


def kernels(dtype):
    """``rnnlab.backends.numpy_kernels`` where its kernels serve arrays of ``dtype``, else None:
    numba is not installed, the dtype is neither float32 nor float64, or ``RNNLAB_NUMBA=0``."""
    if os.environ.get("RNNLAB_NUMBA", "1") == "0" or np.dtype(dtype) not in (np.float32, np.float64):
        return None
    if not _FOUND:
        try:
            from . import numpy_kernels
        except ImportError:  # numba is an optional extra
            numpy_kernels = None
        _FOUND.append(numpy_kernels)
    return _FOUND[0]
