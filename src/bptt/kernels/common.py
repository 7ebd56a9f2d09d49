"""Shared pieces of the numba kernels: the compile options and tanh / sigmoid for scalars.

Importing this module imports numba; ``bptt.kernels.enabled()`` decides whether it is.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

# error_model="numpy": division by zero gives inf/nan instead of raising, which is what lets
# LLVM vectorise loops that divide (the default "python" model inserts a check per element).
# No fastmath: it would let LLVM reorder sums and drop NaN checks that the numerics guard needs.
# cache=True: compiled code is kept on disk (__pycache__), so only the first run compiles.
jit = numba.njit(cache=True, error_model="numpy", nogil=True)

# tanh(x) is +-1 in float32 beyond this |x| (Eigen's generic_fast_tanh_float clamp).
_CLAMP32 = np.float32(7.90531110763549805)


def tanh(x):
    """tanh for one scalar inside a kernel (a stub: numba compiles the overloads below)."""
    return math.tanh(x)


@overload(tanh, inline="always")
def _tanh_overload(x):
    if x == types.float32:
        def tanh32(x):
            # Eigen's rational approximation of tanh (Eigen/src/Core/MathFunctionsImpl.h,
            # generic_fast_tanh_float): a 13/6 odd/even polynomial ratio after clamping.
            # Pure arithmetic, so LLVM vectorises it (libm's tanhf is a scalar call, ~40x slower
            # in a loop); at most ~6 ulp from the exact tanh over all float32, measured.
            x = min(max(x, -_CLAMP32), _CLAMP32)
            x2 = x * x
            p = np.float32(-2.76076847742355e-16)
            p = p * x2 + np.float32(2.00018790482477e-13)
            p = p * x2 + np.float32(-8.60467152213735e-11)
            p = p * x2 + np.float32(5.12229709037114e-08)
            p = p * x2 + np.float32(1.48572235717979e-05)
            p = p * x2 + np.float32(6.37261928875436e-04)
            p = p * x2 + np.float32(4.89352455891786e-03)
            q = np.float32(1.19825839466702e-06)
            q = q * x2 + np.float32(1.18534705686654e-04)
            q = q * x2 + np.float32(2.26843463243900e-03)
            q = q * x2 + np.float32(4.89352518554385e-03)
            return (x * p) / q
        return tanh32
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)      # float64: libm, exact to an ulp (for the gradient checks)
    return None


def sigmoid(x):
    """Logistic sigmoid for one scalar inside a kernel, as 1/2 + tanh(x/2)/2 (never overflows;
    the same formula as bptt.functional.sigmoid)."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(sigmoid, inline="always")
def _sigmoid_overload(x):
    if isinstance(x, types.Float):
        half = np.float32(0.5) if x == types.float32 else 0.5
        def sigmoid_impl(x):
            return half + half * tanh(half * x)
        return sigmoid_impl
    return None


def one(x):
    """1 in the float type of x, inside a kernel: ``one(x) - x`` stays float32 for float32 x
    (a plain ``1 - x`` would be int64 - float32, which numba, like numpy, widens to float64)."""
    return 1.0


@overload(one, inline="always")
def _one_overload(x):
    if x == types.float32:
        unit32 = np.float32(1.0)
        return lambda x: unit32
    if isinstance(x, types.Float):
        return lambda x: 1.0
    return None
