"""Pascanu et al. (2013)'s Omega: value against an independent recomputation through the
one-step Jacobians, immediate gradient against central differences, and the loss term."""

import numpy as np
import pytest

import bptt
from bptt import diagnostics as D
from bptt.gradcheck import numerical_gradient, random_problem, relative_error
from bptt.losses import compute_loss
from bptt.training.regularizers import layer_omega, loss_and_grads_with_omega, omega_terms


def _passes(net, x, y, mask, h0):
    fwd = net.forward(x, h0)
    _, dz = compute_loss(net.loss, fwd.outputs, y, mask)
    return fwd, net.backward(fwd, dz)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_omega_equals_its_definition_through_the_jacobians(nonlinearity):
    net = bptt.Network(3, 5, 4, num_layers=2, nonlinearity=nonlinearity, seed=1)
    x, y, mask, h0 = random_problem(net, 7, 3, seed=2, masked=True)
    fwd, bwd = _passes(net, x, y, mask, h0)
    for index in (0, 1):
        omega, _, count = layer_omega(net, fwd, bwd, index)
        g = bwd.dh[index]                                      # (T, B, H) = dE/dh_t
        F = D.state_jacobians(net, x, h0, layer=index)        # (T, B, H, H) = dh_t/dh_{t-1}
        v = np.einsum("tbi,tbij->tbj", g, F)                   # dE/dh_{t-1} through step t
        ratio = np.linalg.norm(v, axis=2) / np.linalg.norm(g, axis=2)
        assert count == g.shape[0] * g.shape[1]
        assert omega == pytest.approx(np.mean((ratio - 1) ** 2), rel=1e-12)


def test_immediate_gradient_passes_finite_differences():
    """d+Omega/dW holds g_t = dE/dh_t and f'(a_t) fixed (Pascanu et al. eq. 10): differentiate
    exactly that function of W."""
    net = bptt.Network(3, 6, 4, seed=4)
    x, y, mask, h0 = random_problem(net, 9, 4, seed=5, masked=True)
    fwd, bwd = _passes(net, x, y, mask, h0)
    h, g = fwd.hidden[0], bwd.dh[0]
    u = (g * (1 - h * h)).reshape(-1, 6)
    W = net.params["layers.0.W"].copy()
    omega, dW, _ = omega_terms(u, g.reshape(-1, 6), W)
    numeric = numerical_gradient(lambda: omega_terms(u, g.reshape(-1, 6), W)[0], W)
    assert omega > 0 and np.abs(dW).max() > 0
    assert relative_error(dW, numeric) < 1e-7


def test_terms_without_error_signal_are_left_out():
    rng = np.random.default_rng(0)
    u, g, W = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((3, 3))
    g[2] = 0.0
    full, dW_full, count = omega_terms(u, g, W)
    assert count == 4
    kept = [0, 1, 3, 4]
    alone, dW_alone, _ = omega_terms(u[kept], g[kept], W)
    assert full == pytest.approx(alone) and np.allclose(dW_full, dW_alone)
    assert omega_terms(u, np.zeros_like(g), W)[:3:2] == (0.0, 0)


def test_loss_and_grads_with_omega_adds_strength_times_omega():
    net = bptt.Network(3, 5, 4, num_layers=2, seed=6)
    x, y, mask, h0 = random_problem(net, 6, 2, seed=1, masked=True)
    loss, grads = net.loss_and_grads(x, y, mask, h0)
    fwd, bwd = _passes(net, x, y, mask, h0)
    parts = [layer_omega(net, fwd, bwd, i) for i in (0, 1)]
    total, reg_grads, omega = loss_and_grads_with_omega(net, x, y, mask, h0, strength=2.0)
    assert omega == pytest.approx(np.mean([p[0] for p in parts]))
    assert total == pytest.approx(loss + 2.0 * omega)
    for i in (0, 1):
        np.testing.assert_allclose(reg_grads[f"layers.{i}.W"], grads[f"layers.{i}.W"] + parts[i][1], rtol=1e-12)
    np.testing.assert_array_equal(reg_grads["layers.0.U"], grads["layers.0.U"])
    np.testing.assert_array_equal(reg_grads["V"], grads["V"])


def test_bad_input():
    net = bptt.Network(3, 5, 4)
    x, y, _, _ = random_problem(net, 4, 2)
    with pytest.raises(ValueError, match="strength must be .* got -1"):
        loss_and_grads_with_omega(net, x, y, strength=-1.0)
    with pytest.raises(ValueError, match="cell 'rnn', got cell 'lstm'"):
        loss_and_grads_with_omega(bptt.Network(3, 5, 4, cell="lstm"), x, y)
