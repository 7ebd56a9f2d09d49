"""Shared by the lean-step memory tests (test_lean_memory.py, test_lean_memory_gated.py)."""

import os

import numpy as np
import pytest

from bptt import kernels


def problem(seed, T, B, I, O, ids, dtype="float64"):
    """Random inputs (token ids or float features), targets and a positive mask."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    y = rng.integers(0, O, (T, B))
    mask = rng.uniform(0.5, 1.5, (T, B))
    return x, y, mask


def compute_path(name):
    """``with compute_path("numba" | "numpy"):`` -- skips the test when numba is missing."""
    if name == "numba":
        pytest.importorskip("numba")
    return kernels.using(name)


# Bit for bit, or nearly? The chunked step computes every number with the same operations as the
# whole-array step, but a row-block of a GEMM equals the same rows of the whole GEMM only when the
# BLAS uses one kernel for every block shape. OpenBLAS's kernel for this CPU does; a kernel forced by
# OPENBLAS_CORETYPE (set on some machines, e.g. Haswell's on an AMD EPYC) may take another code path
# for the edge blocks (measured: float32 row blocks then differ in the last bit). There the tests
# compare to within a few units in the last place instead -- still far below any real bug (a wrong
# chunk boundary is O(1) off).
BITWISE = "OPENBLAS_CORETYPE" not in os.environ


def assert_same(actual, desired, err_msg=""):
    """Bit-identical under the BLAS's own kernel; else within a few ulps (see BITWISE)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    if BITWISE:
        np.testing.assert_array_equal(actual, desired, err_msg=err_msg)
        return
    tol = 1e-12 if actual.dtype == np.float64 else 2e-5
    scale = max(float(np.max(np.abs(desired), initial=0.0)), 1e-300)
    assert actual.shape == desired.shape, err_msg
    assert float(np.max(np.abs(actual - desired), initial=0.0)) <= tol * scale, err_msg


def assert_same_loss(actual, desired, err_msg=""):
    if BITWISE:
        assert actual == desired, err_msg
    else:
        assert abs(actual - desired) <= 1e-12 * max(abs(desired), 1.0), err_msg
