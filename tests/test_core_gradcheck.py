"""The lecture's RNN: every hand-derived gradient against float64 central differences."""

import itertools

import numpy as np
import pytest

import bptt
from bptt.gradcheck import check_network, numerical_gradient, random_problem, relative_error
from bptt.layers.rnn import RNNLayer

TOL = 1e-6

CASES = list(itertools.product(
    ("tanh", "relu"),          # nonlinearity
    (1, 2, 3),                 # layers
    (False, True),             # token ids
    (False, True),             # mask
))


@pytest.mark.parametrize("nonlinearity,layers,ids,masked", CASES)
def test_network_gradients_match_finite_differences(nonlinearity, layers, ids, masked):
    net = bptt.Network(6, 5, 4, num_layers=layers, nonlinearity=nonlinearity, seed=layers)
    inputs, targets, mask, h0 = random_problem(net, seq_len=4, batch=3, seed=7, token_ids=ids, masked=masked)
    errors = check_network(net, inputs, targets, mask, h0)
    expected = {f"layers.{l}.{p}" for l in range(layers) for p in "UWb"} | {"V", "c", "h0"}
    if not ids:
        expected.add("inputs")
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("seq_len,batch", [(1, 1), (1, 3), (5, 1)])
def test_edge_lengths_and_batches(seq_len, batch):
    net = bptt.Network(3, 4, 2, num_layers=2, seed=3)
    inputs, targets, mask, h0 = random_problem(net, seq_len, batch, seed=1)
    assert max(check_network(net, inputs, targets, mask, h0).values()) < TOL


@pytest.mark.parametrize("bias", [True, False])
def test_mse_loss_and_no_bias(bias):
    net = bptt.Network(3, 4, 2, num_layers=2, bias=bias, loss="mse", seed=5)
    inputs, targets, mask, h0 = random_problem(net, 4, 2, seed=2, masked=True)
    errors = check_network(net, inputs, targets, mask, h0)
    assert ("layers.0.b" in errors) == bias and ("c" in errors) == bias
    assert max(errors.values()) < TOL


def test_no_readout_loss_reads_top_hidden_state():
    net = bptt.Network(3, 4, None, num_layers=2, loss="mse", seed=5)
    inputs, targets, mask, h0 = random_problem(net, 3, 2, seed=2)
    errors = check_network(net, inputs, targets, mask, h0)
    assert "V" not in errors and max(errors.values()) < TOL


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_layer_backward_with_random_upstream_gradients(nonlinearity, rng):
    """RNNLayer alone: random dE/dh_t for every t and a random dE/dh_T, against central differences."""
    layer = RNNLayer(3, 4, nonlinearity=nonlinearity, rng=rng, dtype=np.float64)
    x = rng.standard_normal((5, 2, 3))
    h0 = rng.standard_normal((2, 4))
    dh = rng.standard_normal((5, 2, 4))
    dlast = rng.standard_normal((2, 4))

    def objective():
        h, (h_T,), _ = layer.forward(x, (h0,))
        return float(np.sum(dh * h) + np.sum(dlast * h_T))

    _, _, cache = layer.forward(x, (h0,))
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    dx, (dh0,), dh_total = layer.backward(dh, (dlast,), cache, grads)
    for name, p in layer.params.items():
        assert relative_error(grads[name], numerical_gradient(objective, p)) < TOL, name
    assert relative_error(dx, numerical_gradient(objective, x)) < TOL
    assert relative_error(dh0, numerical_gradient(objective, h0)) < TOL
    # dh_total[t] is the full dE/dh_t: perturbing h_t's pre-activation is not possible from outside,
    # but its last entry must equal the upstream gradient plus the gradient into the final state.
    np.testing.assert_allclose(dh_total[-1], dh[-1] + dlast, rtol=0, atol=1e-14)


def test_gradient_accumulates_with_plus_equals(rng):
    """Backward adds into grads: two calls give twice the gradient (what weight sharing relies on)."""
    net = bptt.Network(3, 4, 2, seed=0)
    inputs, targets, _, _ = random_problem(net, 3, 2, seed=0)
    fwd = net.forward(inputs)
    _, dz = bptt.losses.compute_loss("cross_entropy", fwd.outputs, targets)
    once = net.backward(fwd, dz).grads
    grads = net.zero_grads()
    net.backward(fwd, dz, grads)
    net.backward(fwd, dz, grads)
    for k in grads:
        np.testing.assert_allclose(grads[k], 2 * once[k], rtol=1e-12, atol=1e-15)


def test_checker_catches_a_wrong_gradient(monkeypatch):
    """The check can fail: cut the recurrent path (dE/dh_{t-1} = 0) and it must see the error."""
    import bptt.layers.rnn as rnn_module

    original = rnn_module.RNNLayer.backward

    def truncated_backward(self, dh, dstate, cache, grads, **options):   # options: input_grad, overwrite_dh
        # Feed each step separately: no gradient flows through W between steps.
        T = dh.shape[0]
        from bptt.layers.rnn import RNNCache
        dx_parts = []
        for t in range(T):
            sub = RNNCache(cache.x[t:t + 1], cache.hs[t:t + 2])
            dx_t, _, _ = original(self, dh[t:t + 1], None, sub, grads)
            dx_parts.append(dx_t)
        return np.concatenate(dx_parts), (np.zeros_like(dh[0]),), dh

    monkeypatch.setattr(rnn_module.RNNLayer, "backward", truncated_backward)
    net = bptt.Network(3, 4, 2, seed=0)
    inputs, targets, mask, h0 = random_problem(net, 4, 2, seed=0)
    errors = check_network(net, inputs, targets, mask, h0)
    assert errors["layers.0.W"] > 1e-3
    assert errors["V"] < TOL          # the readout does not depend on the recurrence's backward


def test_relative_error_is_zero_safe():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 0.0]), np.array([1.0, 1e-3])) == pytest.approx(1e-3)
