"""numpy's own BLAS ``gemm``, callable from compiled (numba) code.

numba's np.dot calls BLAS through scipy (scipy.linalg.cython_blas), a second OpenBLAS build
that measured slower than numpy's at the LSTM/GRU step shapes (a (32, 128) x (128, 512) float32
product: 2.40 vs 2.13 ms for 64 of them, one thread). This module finds the gemm of the OpenBLAS
that numpy's wheel ships (``numpy.libs/libscipy_openblas64_*.so``, ILP64 with a ``64_`` suffix),
so the compiled time loops (kernels/lstm.py, kernels/gru.py) call exactly the library numpy does.

``gemm_for(dtype)`` returns a ctypes function, or None where none was found (another BLAS, another
platform): callers then keep their per-step Python loop. Pointers are passed as integers
(``array.ctypes.data``), which the x86-64 and arm64 C conventions pass like ``void *``.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

ROW_MAJOR, NO_TRANS = 101, 111      # CBLAS enum values (cblas.h)
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


def _gemm_type(real):
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_size_t
    #                       order trans_a trans_b M    N    K  alpha  A    lda  B    ldb  beta  C    ldc
    return ctypes.CFUNCTYPE(None, i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)


def gemm_for(dtype):
    """cblas_{s,d}gemm of numpy's BLAS as a ctypes function for float32/float64, or None."""
    global _found
    if _found is None:
        _found = {}
        library = _library()
        if library is not None:
            for key, name, real in (("float32", "scipy_cblas_sgemm64_", ctypes.c_float),
                                    ("float64", "scipy_cblas_dgemm64_", ctypes.c_double)):
                try:
                    _found[key] = _gemm_type(real)((name, library))
                except AttributeError:
                    pass
    return _found.get(np.dtype(dtype).name)
