"""Lyapunov exponents by the QR method against cases with a known answer."""

import numpy as np
import pytest

import bptt
from bptt import diagnostics
from bptt.diagnostics.lyapunov import lyapunov_from_jacobians


def matrix_with_eigenvalues(values, seed=0):
    """A non-symmetric (non-normal) real matrix P diag(values) P^-1."""
    rng = np.random.default_rng(seed)
    P = np.eye(len(values)) + 0.3 * rng.normal(size=(len(values), len(values)))
    return P @ np.diag(values) @ np.linalg.inv(P)


def test_linear_map_gives_log_abs_eigenvalues():
    values = np.array([1.3, -0.9, 0.5, 0.2, -0.05])
    W = matrix_with_eigenvalues(values)
    T = 3000
    factors = np.broadcast_to(W, (T, 1, 5, 5))
    exps = lyapunov_from_jacobians(factors)[0]
    np.testing.assert_allclose(exps, np.log(np.abs(values)), atol=2e-3)   # converges like 1/T


def test_rnn_near_its_fixed_point_is_its_linear_recurrence():
    """Zero inputs, no bias, h0 = 0: h_t = 0 for all t and tanh'(0) = 1, so D_t = W exactly."""
    values = np.array([0.95, 0.7, -0.6, 0.3])
    net = bptt.Network(3, 4, 3, bias=False, seed=0)
    net.params["layers.0.W"] = matrix_with_eigenvalues(values, seed=1)
    x = np.zeros((2000, 2, 3))
    exps = diagnostics.lyapunov_spectrum(net, x)
    np.testing.assert_allclose(exps, np.sort(np.log(np.abs(values)))[::-1], atol=2e-3)
    top2 = diagnostics.lyapunov_spectrum(net, x, k=2)
    np.testing.assert_allclose(top2, exps[:2], atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sum_of_exponents_is_mean_log_det(cell):
    """Along any trajectory, sum_i lambda_i = (1/T) sum_t log|det D_t| (exact, every cell)."""
    net = bptt.Network(5, 3, 5, cell=cell, seed=4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (40, 2))
    factors = diagnostics.state_jacobians(net, x)
    exps = lyapunov_from_jacobians(factors)                        # (B, S)
    logdet = np.linalg.slogdet(factors)[1].mean(axis=0)            # (B,)
    np.testing.assert_allclose(exps.sum(axis=1), logdet, rtol=1e-10)
    assert np.all(np.diff(diagnostics.lyapunov_spectrum(net, x)) <= 0)


def test_bad_k_and_transient():
    net = bptt.Network(3, 4, 3, seed=0)
    x = np.zeros((5, 1), int)
    with pytest.raises(ValueError, match="k must be an integer in \\[1, 4\\]"):
        diagnostics.lyapunov_spectrum(net, x, k=9)
    with pytest.raises(ValueError, match="transient"):
        diagnostics.lyapunov_spectrum(net, x, transient=5)
