"""numpy's own BLAS ``gemm``, callable from compiled (numba) code.

numba's np.dot calls BLAS through scipy (scipy.linalg.cython_blas), a second OpenBLAS build
that measured slower than numpy's at the LSTM/GRU step shapes (a (32, 128) x (128, 512) float32
product: 2.40 vs 2.13 ms for 64 of them, one thread). This module finds the gemm of the OpenBLAS
that numpy's wheel ships (``numpy.libs/libscipy_openblas64_*.so``, ILP64 with a ``64_`` suffix),
so the compiled time loops (kernels/lstm.py, kernels/gru.py) call exactly the library numpy does.

``gemm_for(dtype)`` returns the function's address (an int, for kernels/gemm.py's
``matmul_into``), or None where none was found (another BLAS, another platform): callers then keep
their per-step Python loop.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_found: dict | None = None


def _library():
    """The OpenBLAS numpy's wheel bundles (already loaded by numpy; dlopen returns the same copy)."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/libscipy_openblas64_*.so*", "numpy/.dylibs/libscipy_openblas64_*.dylib"):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def gemm_for(dtype):
    """The address of cblas_{s,d}gemm (ILP64) in numpy's BLAS for float32/float64, or None."""
    global _found
    if _found is None:
        _found = {}
        library = _library()
        if library is not None:
            for key, name in ((np.dtype(np.float32), "scipy_cblas_sgemm64_"),
                              (np.dtype(np.float64), "scipy_cblas_dgemm64_")):
                try:
                    _found[key] = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                except AttributeError:
                    pass
    return _found.get(np.dtype(dtype))           # (dtype objects as keys: .name is slow, ~40 us)
