"""RTRL (bptt.rtrl) against BPTT (Network.loss_and_grads): the same loss and every gradient,
float64, to 1e-10 relative, for every cell RTRL covers, with masks, h0, embeddings and stacks."""

import numpy as np
import pytest

import bptt
from bptt import rtrl

CASES = [
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("lstm", {"bias": False}),
    ("gru", {}),
    ("gru", {"gru_variant": "cho"}),
    ("rnn", {"num_layers": 2}),
    ("lstm", {"num_layers": 2}),
    ("gru", {"num_layers": 3}),
    ("gru", {"embedding_size": 4}),
    ("lstm", {"num_layers": 2, "embedding_size": 5}),
    ("rnn", {"embedding_size": 6, "tie_weights": True, "hidden_size": 6}),
]


def relative(a, b):
    return np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), 1e-300)


def random_state(net, B, rng):
    shape = (net.num_layers, B, net.hidden_size)
    parts = tuple(rng.normal(0, 0.5, shape) for _ in net.state_names)
    return parts[0] if len(parts) == 1 else parts


@pytest.mark.parametrize("cell,options", CASES, ids=[f"{c}-{o}" for c, o in CASES])
def test_rtrl_equals_bptt_token_ids_with_mask_and_h0(cell, options):
    options = dict(options)
    H = options.pop("hidden_size", 5)
    V = 7
    net = bptt.Network(V, H, V, cell=cell, seed=3, **options)
    rng = np.random.default_rng(11)
    T, B = 6, 3
    x = rng.integers(0, V, (T, B))
    y = rng.integers(0, V, (T, B))
    mask = (rng.random((T, B)) > 0.3).astype(float)
    mask[0, 0] = 0.0                                    # a masked step for sure
    h0 = random_state(net, B, rng)
    loss_b, grads_b = net.loss_and_grads(x, y, mask=mask, h0=h0)
    loss_r, grads_r = rtrl.loss_and_grads(net, x, y, mask=mask, h0=h0)
    assert loss_r == pytest.approx(loss_b, rel=1e-12)
    assert set(grads_r) == set(grads_b)
    for name in grads_b:
        assert np.abs(grads_b[name]).max() > 0, name   # every gradient is exercised
        assert relative(grads_r[name], grads_b[name]) < 1e-10, name


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_rtrl_equals_bptt_float_inputs_mse(cell):
    net = bptt.Network(4, 3, 2, cell=cell, loss="mse", num_layers=2, seed=5)
    rng = np.random.default_rng(2)
    T, B = 5, 2
    x = rng.normal(size=(T, B, 4))
    y = rng.normal(size=(T, B, 2))
    mask = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 0]], float)
    loss_b, grads_b = net.loss_and_grads(x, y, mask=mask)
    loss_r, grads_r = rtrl.loss_and_grads(net, x, y, mask=mask)
    assert loss_r == pytest.approx(loss_b, rel=1e-12)
    for name in grads_b:
        assert relative(grads_r[name], grads_b[name]) < 1e-10, name


def test_rtrl_single_step_and_batch_of_one():
    net = bptt.Network(5, 4, 5, cell="lstm", seed=0)
    x, y = np.array([[2]]), np.array([[3]])
    loss_b, grads_b = net.loss_and_grads(x, y)
    loss_r, grads_r = rtrl.loss_and_grads(net, x, y)
    assert loss_r == pytest.approx(loss_b, rel=1e-12)
    for name in grads_b:
        assert relative(grads_r[name], grads_b[name]) < 1e-10, name


def test_rtrl_without_readout():
    net = bptt.Network(3, 4, None, cell="gru", loss="mse", seed=1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 4))
    loss_b, grads_b = net.loss_and_grads(x, y)
    loss_r, grads_r = rtrl.loss_and_grads(net, x, y)
    assert loss_r == pytest.approx(loss_b, rel=1e-12)
    for name in grads_b:
        assert relative(grads_r[name], grads_b[name]) < 1e-10, name


def test_rtrl_is_exported_as_bptt_rtrl():
    import bptt.rtrl as module
    from bptt.diagnostics import rtrl as inner
    assert module.loss_and_grads is inner.loss_and_grads


@pytest.mark.parametrize("kwargs,message", [
    ({"cell": "mingru"}, "rtrl supports cells"),
    ({"bidirectional": True}, "unidirectional"),
    ({"readout": "last"}, "readout='all'"),
])
def test_rtrl_refuses_what_it_does_not_cover(kwargs, message):
    net = bptt.Network(3, 2, 3, seed=0, **kwargs)
    targets = np.zeros(2, int) if kwargs.get("readout") else np.zeros((4, 2), int)
    with pytest.raises(ValueError, match=message):
        rtrl.loss_and_grads(net, np.zeros((4, 2), int), targets)


def test_rtrl_refuses_active_dropout_and_accepts_eval():
    net = bptt.Network(3, 2, 3, num_layers=2, dropout=0.5, seed=0)
    x = np.zeros((4, 2), int)
    with pytest.raises(ValueError, match="net.eval"):
        rtrl.loss_and_grads(net, x, x)
    net.eval()
    loss_b, grads_b = net.loss_and_grads(x, x)
    loss_r, grads_r = rtrl.loss_and_grads(net, x, x)
    assert loss_r == pytest.approx(loss_b, rel=1e-12)


def test_rtrl_bad_input_names_the_value():
    net = bptt.Network(3, 2, 3, seed=0)
    with pytest.raises(ValueError, match="inputs"):
        rtrl.loss_and_grads(net, np.full((4, 2), 9), np.zeros((4, 2), int))
