"""Invariants of the stacked network and its validation of bad input."""

import numpy as np
import pytest

import bptt
from bptt.gradcheck import random_problem
from bptt.layers.rnn import RNNLayer


def test_looping_step_equals_forward():
    net = bptt.Network(5, 6, 4, num_layers=3, seed=2)
    inputs, _, _, h0 = random_problem(net, 6, 2, seed=3, token_ids=True)
    fwd = net.forward(inputs, h0)
    state = h0
    for t in range(inputs.shape[0]):
        out_t, state = net.step(inputs[t], state)
        np.testing.assert_allclose(out_t, fwd.outputs[t], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state, fwd.final_state, rtol=1e-12, atol=1e-13)


def test_stack_of_one_equals_the_layer():
    net = bptt.Network(3, 4, None, num_layers=1, seed=4, loss="mse")
    layer = RNNLayer(3, 4, rng=np.random.default_rng(0), dtype=np.float64)
    for k in layer.params:
        layer.params[k][...] = net.params[f"layers.0.{k}"]
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    h, (hT,), _ = layer.forward(x, (np.zeros((2, 4)),))
    np.testing.assert_array_equal(net.forward(x).outputs, h)
    np.testing.assert_array_equal(net.forward(x).final_state[0], hT)


def test_initial_loss_is_about_log_vocabulary():
    """Small random weights give near-uniform predictions: E_t ~ log(V) per step."""
    V = 50
    net = bptt.Network(V, 32, V, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (20, 16))
    loss = net.loss_only(ids, rng.integers(0, V, (20, 16)))
    assert abs(loss / 20 - np.log(V)) < 0.1 * np.log(V)


def test_seeds_repeat_and_differ():
    a, b, c = (bptt.Network(3, 4, 2, seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["layers.0.W"], c.params["layers.0.W"])


def test_float32_stays_float32():
    net = bptt.Network(5, 8, 5, num_layers=2, dtype="float32", seed=0)
    inputs, targets, mask, _ = random_problem(net, 4, 3, seed=0, masked=True)
    result = net.forward_backward(inputs.astype(np.float32), targets, mask)
    assert result.outputs.dtype == np.float32
    assert all(g.dtype == np.float32 for g in result.grads.values())
    assert all(d.dtype == np.float32 for d in result.dh)


def test_mask_zero_steps_add_nothing():
    net = bptt.Network(3, 4, 2, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3))
    y = rng.integers(0, 2, (5, 2))
    mask = np.zeros((5, 2))
    mask[-1] = 1                                   # many-to-one: only the last step counts
    y2 = y.copy()
    y2[:-1] = 1 - y2[:-1]                          # change every target the mask hides
    l1, g1 = net.loss_and_grads(x, y, mask)
    l2, g2 = net.loss_and_grads(x, y2, mask)
    assert l1 == l2 and all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_sgd_with_clipping_lowers_the_loss():
    net = bptt.Network(4, 16, 4, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, (10, 8))
    targets = np.roll(ids, 1, axis=0)               # predict the previous token: needs memory
    opt = bptt.SGD(net.params, lr=0.5)
    first = None
    for _ in range(60):
        loss, grads = net.loss_and_grads(ids, targets)
        first = loss if first is None else first
        bptt.clip_by_global_norm(grads, 5.0)
        opt.step(grads)
    assert loss < 0.5 * first


def test_dh_is_the_full_gradient_wrt_each_hidden_state():
    """result.dh[l][t] is dE/dh_t: check the last layer's against a perturbation of the readout input."""
    net = bptt.Network(3, 4, 2, num_layers=2, seed=1)
    inputs, targets, _, _ = random_problem(net, 4, 1, seed=1)
    result = net.forward_backward(inputs, targets)
    fwd = net.forward(inputs)
    # at the last step, dE/dh_T only flows through the readout: V^T (y^_T - y_T) / B
    probs = bptt.functional.softmax(fwd.outputs[-1])
    probs[np.arange(1), targets[-1]] -= 1
    np.testing.assert_allclose(result.dh[-1][-1], probs @ net.params["V"], rtol=1e-12)


BAD = [
    (dict(hidden_size=0), "hidden_size must be >= 1, got 0"),
    (dict(num_layers=-1), "num_layers must be >= 1, got -1"),
    (dict(input_size=2.5), "input_size must be an integer"),
    (dict(cell="lstmx"), "cell must be one of"),
    (dict(nonlinearity="sigmoid"), "nonlinearity must be one of"),
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(loss="hinge"), "loss must be one of"),
    (dict(seed=-3), "seed must be a non-negative integer, got -3"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_constructor_arguments_name_the_value(kwargs, message):
    args = dict(input_size=3, hidden_size=4, output_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bptt.Network(**args)


def test_bad_call_arguments_name_the_value():
    net = bptt.Network(3, 4, 2, num_layers=2, seed=0)
    x = np.zeros((5, 2, 3))
    y = np.zeros((5, 2), dtype=int)
    cases = [
        ((np.zeros((5, 2, 4)), y), "inputs must have shape (*, *, 3), got (5, 2, 4)"),
        ((np.zeros((5, 3)), y), "inputs must have shape"),
        ((np.array([[0, 3]]), y[:1]), "inputs holds token id 3, outside [0, 3)"),
        ((x, np.full((5, 2), 2)), "targets holds token id 2, outside [0, 2)"),
        ((x, y[:4]), "targets must have shape (5, 2), got (4, 2)"),
        ((x, y.astype(float)), "targets must be integer token ids"),
        ((np.zeros((0, 2, 3)), y[:0]), "inputs must not be empty"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as info:
            net.loss_and_grads(*args)
        assert message in str(info.value), (message, str(info.value))
    nan_x = x.copy()
    nan_x[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"inputs contains a non-finite value nan at index \(2, 1, 0\)"):
        net.loss_and_grads(nan_x, y)
    with pytest.raises(ValueError, match=r"mask must have shape \(5, 2\), got \(5,\)"):
        net.loss_and_grads(x, y, mask=np.ones(5))
    with pytest.raises(ValueError, match="mask must be >= 0"):
        net.loss_and_grads(x, y, mask=-np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 4\), got \(1, 2, 4\)"):
        net.loss_and_grads(x, y, h0=np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="inputs must be a float array"):
        net.loss_and_grads(np.array([["a"]]), y)
