"""LSTM, GRU and bidirectional layers against PyTorch autograd on the same weights, float64.

Loss, outputs, final states and every gradient (all of torch's parameter names, the
inputs, h0 and c0) must agree to a relative error of 1e-9 or better.
"""

import itertools

import numpy as np
import pytest

import bptt
from bptt.gradcheck import relative_error

torch = pytest.importorskip("torch")
from torch_reference import torch_step  # noqa: E402  (needs torch: after the skip)

TOL = 1e-9
MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def make_problem(cell, layers, bidirectional, bias, masked, seed, I=4, H=5, O=3, T=6, B=3):
    torch.manual_seed(seed)
    module = getattr(torch.nn, MODULES[cell])(I, H, num_layers=layers, bias=bias,
                                              bidirectional=bidirectional).double()
    D = 2 if bidirectional else 1
    head = torch.nn.Linear(D * H, O, bias=bias).double()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I))
    y = rng.integers(0, O, (T, B))
    shape = (layers * D, B, H)
    state0 = (rng.standard_normal(shape), rng.standard_normal(shape)) if cell == "lstm" else rng.standard_normal(shape)
    mask = (rng.random((T, B)) < 0.6).astype(float) if masked else None
    return module, head, x, y, state0, mask


def assert_parity(net, module, head, x, y, state0, mask):
    result = net.forward_backward(x, y, mask=mask, h0=state0)
    E, z, final, X, S0 = torch_step(module, head, x, y, state0, mask)
    assert abs(result.loss - E.item()) <= TOL * abs(E.item())
    assert relative_error(result.outputs, z.detach().numpy()) < TOL
    ours_final = result.final_state if isinstance(result.final_state, tuple) else (result.final_state,)
    assert len(ours_final) == len(final)
    for ours, theirs in zip(ours_final, final):
        assert relative_error(ours, theirs.detach().numpy()) < TOL
    named = dict(module.named_parameters())
    named.update({f"head.{k}": v for k, v in head.named_parameters()})
    mapped = bptt.torch_names(net, result.grads)
    assert set(mapped) == set(named)
    for name, p in named.items():
        assert relative_error(mapped[name], p.grad.numpy()) < TOL, name
    assert relative_error(result.dinputs, X.grad.numpy()) < TOL
    ours_d0 = result.dh0 if isinstance(result.dh0, tuple) else (result.dh0,)
    for ours, theirs in zip(ours_d0, S0):
        assert relative_error(ours, theirs.grad.numpy()) < TOL


@pytest.mark.parametrize("cell,layers,bidirectional,masked", list(itertools.product(
    ("lstm", "gru"), (1, 2, 3), (False, True), (False, True))))
def test_parity_with_torch_gated(cell, layers, bidirectional, masked):
    module, head, x, y, state0, mask = make_problem(cell, layers, bidirectional, True, masked, seed=layers)
    net = bptt.from_torch(module, head)
    assert net.cell == cell and net.bidirectional == bidirectional
    assert_parity(net, module, head, x, y, state0, mask)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_parity_without_bias(cell, bidirectional):
    module, head, x, y, state0, mask = make_problem(cell, 2, bidirectional, False, True, seed=11)
    net = bptt.from_torch(module, head)
    assert not any(name.split(".")[-1].startswith("b") for name in net.params)
    assert_parity(net, module, head, x, y, state0, mask)


def test_parity_bidirectional_rnn_relu():
    torch.manual_seed(3)
    module = torch.nn.RNN(4, 5, num_layers=2, nonlinearity="relu", bidirectional=True).double()
    head = torch.nn.Linear(10, 3).double()
    _, _, x, y, state0, mask = make_problem("rnn", 2, True, True, True, seed=3)
    net = bptt.from_torch(module, head)
    assert_parity(net, module, head, x, y, state0, mask)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_token_ids_equal_one_hot_inputs_in_torch(cell):
    torch.manual_seed(0)
    module = getattr(torch.nn, MODULES[cell])(7, 5, num_layers=2, bidirectional=True).double()
    head = torch.nn.Linear(10, 7).double()
    net = bptt.from_torch(module, head)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (6, 2))
    y = rng.integers(0, 7, (6, 2))
    loss, grads = net.loss_and_grads(ids, y)
    zero = net.zero_state(2)
    E, *_ = torch_step(module, head, np.eye(7)[ids], y, zero, None)
    assert abs(loss - E.item()) <= TOL * E.item()
    mapped = bptt.torch_names(net, grads)
    for name in ("weight_ih_l0", "weight_ih_l0_reverse", "bias_hh_l1_reverse"):
        assert relative_error(mapped[name], dict(module.named_parameters())[name].grad.numpy()) < TOL, name


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_mse_without_head(cell):
    torch.manual_seed(1)
    module = getattr(torch.nn, MODULES[cell])(3, 4, num_layers=2).double()
    net = bptt.from_torch(module, None, loss="mse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 3))
    y = rng.standard_normal((5, 2, 4))
    state0 = net.zero_state(2)
    loss, grads = net.loss_and_grads(x, y, h0=state0)
    E, *_ = torch_step(module, None, x, y, state0, None, loss="mse")
    assert abs(loss - E.item()) <= TOL * E.item()
    named = dict(module.named_parameters())
    for name, g in bptt.torch_names(net, grads).items():
        assert relative_error(g, named[name].grad.numpy()) < TOL, name


@pytest.mark.parametrize("cell,bidirectional,bias", list(itertools.product(
    ("rnn", "lstm", "gru"), (False, True), (True, False))))
def test_to_torch_round_trip_computes_the_same(cell, bidirectional, bias):
    net = bptt.Network(3, 4, 2, num_layers=2, cell=cell, bidirectional=bidirectional, bias=bias, seed=9)
    module, head = bptt.to_torch(net)
    assert isinstance(module, getattr(torch.nn, MODULES[cell])) and module.bidirectional == bidirectional
    back = bptt.from_torch(module, head)
    assert set(back.params) == set(net.params)
    for name in net.params:
        np.testing.assert_allclose(back.params[name], net.params[name], rtol=0, atol=1e-15, err_msg=name)
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    with torch.no_grad():
        out, _ = module(torch.tensor(x))
        z = head(out).numpy()
    assert relative_error(net.forward(x).outputs, z) < TOL


def test_lstm_step_loop_matches_torch_lstm_cell_by_cell():
    """net.step() looped over time equals torch's whole-sequence LSTM."""
    torch.manual_seed(4)
    module = torch.nn.LSTM(3, 4, num_layers=2).double()
    head = torch.nn.Linear(4, 2).double()
    net = bptt.from_torch(module, head)
    x = np.random.default_rng(4).standard_normal((5, 2, 3))
    state = net.zero_state(2)
    outs = []
    for t in range(5):
        out, state = net.step(x[t], state)
        outs.append(out)
    with torch.no_grad():
        seq, (hT, cT) = module(torch.tensor(x))
        z = head(seq).numpy()
    assert relative_error(np.stack(outs), z) < TOL
    assert relative_error(state[0], hT.numpy()) < TOL and relative_error(state[1], cT.numpy()) < TOL


def test_interop_refuses_what_it_cannot_represent():
    with pytest.raises(ValueError, match="gru_variant 'cho'"):
        bptt.to_torch(bptt.Network(3, 4, 2, cell="gru", gru_variant="cho"))
    with pytest.raises(ValueError, match="layer-normalised LSTM has no torch.nn module"):
        bptt.to_torch(bptt.Network(3, 4, 2, cell="lstm", layer_norm=True))
    with pytest.raises(ValueError, match="mingru"):
        bptt.to_torch(bptt.Network(3, 4, 2, cell="mingru"))
    with pytest.raises(ValueError, match="in_features"):
        bptt.from_torch(torch.nn.GRU(3, 4, bidirectional=True), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="LSTMCell"):
        bptt.from_torch(torch.nn.LSTMCell(3, 4))


def test_dropout_and_mode_carry_over():
    module = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.25)
    module.eval()
    net = bptt.from_torch(module)
    assert net.dropout == 0.25 and not net.training
    back, _ = bptt.to_torch(net)
    assert back.dropout == 0.25 and not back.training
