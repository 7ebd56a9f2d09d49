"""Shared by the lean-step memory tests (test_lean_memory.py, test_lean_memory_gated.py)."""

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
