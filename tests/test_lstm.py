"""LSTM: every hand-derived gradient against float64 central differences, plus invariants."""

import itertools

import numpy as np
import pytest

import bptt
from bptt.functional import sigmoid
from bptt.gradcheck import check_network, random_problem
from bptt.layers.lstm import LSTMLayer
from gated_layer_check import layer_gradient_errors, random_layer_inputs

TOL = 1e-6


@pytest.mark.parametrize("T,B,ids,bias", [(4, 3, False, True), (1, 1, False, True), (1, 3, True, True),
                                          (5, 1, True, False), (3, 2, False, False)])
def test_layer_backward_random_upstream(T, B, ids, bias, rng):
    layer = LSTMLayer(3, 4, bias=bias, rng=rng, dtype=np.float64)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    errors = layer_gradient_errors(layer, x, state0, seed=T)
    expected = {"U", "W", "h0", "c0"} | ({"b"} if bias else set()) | (set() if ids else {"x"})
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("layers,ids,masked", list(itertools.product((1, 2, 3), (False, True), (False, True))))
def test_network_gradients_match_finite_differences(layers, ids, masked):
    net = bptt.Network(5, 4, 3, num_layers=layers, cell="lstm", seed=layers)
    inputs, targets, mask, h0 = random_problem(net, seq_len=4, batch=2, seed=7, token_ids=ids, masked=masked)
    errors = check_network(net, inputs, targets, mask, h0)
    expected = {f"layers.{l}.{p}" for l in range(layers) for p in "UWb"} | {"V", "c", "h0", "c0"}
    if not ids:
        expected.add("inputs")
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("seq_len,batch", [(1, 1), (1, 3), (5, 1)])
def test_network_edge_lengths_and_mse(seq_len, batch):
    net = bptt.Network(3, 4, 2, num_layers=2, cell="lstm", loss="mse", seed=3)
    inputs, targets, mask, h0 = random_problem(net, seq_len, batch, seed=1, masked=True)
    assert max(check_network(net, inputs, targets, mask, h0).values()) < TOL


def test_forward_matches_the_equations_written_out():
    """One step computed directly from the docstring's equations, gate slices [i, f, g, o]."""
    rng = np.random.default_rng(0)
    layer = LSTMLayer(3, 4, rng=rng, dtype=np.float64)
    x, (h0, c0) = random_layer_inputs(layer, 1, 2, rng)
    U, W, b = layer.params["U"], layer.params["W"], layer.params["b"]
    a = x[0] @ U.T + h0 @ W.T + b
    i, f, g, o = sigmoid(a[:, :4]), sigmoid(a[:, 4:8]), np.tanh(a[:, 8:12]), sigmoid(a[:, 12:])
    c = f * c0 + i * g
    h = o * np.tanh(c)
    out, (hT, cT), _ = layer.forward(x, (h0, c0))
    np.testing.assert_allclose(out[0], h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(cT, c, rtol=1e-13, atol=1e-15)


def test_splitting_the_sequence_equals_full_bptt(rng):
    """Backward over [k, T) then [0, k) with the carried dE/d(h_k, c_k) equals one full backward,
    and that carried gradient is dE/dh_k minus the direct term (the dh_total the layer returns)."""
    layer = LSTMLayer(3, 4, rng=rng, dtype=np.float64)
    T, B, k = 6, 2, 3
    x, state0 = random_layer_inputs(layer, T, B, rng)
    G = rng.standard_normal((T, B, 4))
    S = (rng.standard_normal((B, 4)), rng.standard_normal((B, 4)))
    _, _, cache = layer.forward(x, state0)
    full = {n: np.zeros_like(p) for n, p in layer.params.items()}
    dx, d0, dh_total = layer.backward(G, S, cache, full)

    _, state_k, cache1 = layer.forward(x[:k], state0)
    _, _, cache2 = layer.forward(x[k:], state_k)
    split = {n: np.zeros_like(p) for n, p in layer.params.items()}
    dx2, dk, _ = layer.backward(G[k:], S, cache2, split)
    dx1, d0_split, total1 = layer.backward(G[:k], dk, cache1, split)
    for n in full:
        np.testing.assert_allclose(split[n], full[n], rtol=1e-12, atol=1e-14)
    for a, b in zip(d0_split, d0):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.concatenate([dx1, dx2]), dx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dk[0] + G[k - 1], dh_total[k - 1], rtol=1e-12, atol=1e-14)


def test_step_loop_equals_forward(rng):
    layer = LSTMLayer(4, 3, rng=rng, dtype=np.float64)
    for ids in (False, True):
        x, state = random_layer_inputs(layer, 5, 2, rng, ids=ids)
        h, final, _ = layer.forward(x, state)
        for t in range(5):
            h_t, state = layer.step(x[t], state)
            np.testing.assert_allclose(h_t, h[t], rtol=1e-13, atol=1e-15)
        for a, b in zip(state, final):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_forget_bias_is_added_to_the_forget_slice_only():
    H = 6
    base = bptt.Network(3, H, 2, cell="lstm", forget_bias=0.0, seed=4).params["layers.0.b"]
    shifted = bptt.Network(3, H, 2, cell="lstm", forget_bias=1.0, seed=4).params["layers.0.b"]
    default = bptt.Network(3, H, 2, cell="lstm", seed=4).params["layers.0.b"]
    diff = shifted - base
    np.testing.assert_allclose(diff[H:2 * H], 1.0, rtol=0, atol=1e-15)
    assert np.all(diff[:H] == 0) and np.all(diff[2 * H:] == 0)
    np.testing.assert_array_equal(default, shifted)


def test_float32_stays_float32():
    net = bptt.Network(4, 5, 3, num_layers=2, cell="lstm", dtype="float32", seed=0)
    inputs, targets, _, _ = random_problem(net, 4, 2, seed=0)
    result = net.forward_backward(inputs.astype(np.float32), targets)
    assert result.outputs.dtype == np.float32
    assert all(g.dtype == np.float32 for g in result.grads.values())
    assert all(s.dtype == np.float32 for s in result.final_state + result.dh0)


def test_state_format_and_bad_state():
    net = bptt.Network(3, 4, 2, num_layers=2, cell="lstm")
    h0, c0 = net.zero_state(5)
    assert h0.shape == c0.shape == (2, 5, 4)
    x = np.zeros((3, 5, 3))
    with pytest.raises(ValueError, match="tuple"):
        net.forward(x, h0)
    with pytest.raises(ValueError, match=r"c0 must have shape \(2, 5, 4\)"):
        net.forward(x, (h0, np.zeros((1, 5, 4))))
    with pytest.raises(ValueError, match="forget_bias must be a finite number, got nan"):
        bptt.Network(3, 4, 2, cell="lstm", forget_bias=float("nan"))
