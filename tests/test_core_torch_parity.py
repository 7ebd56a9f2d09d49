"""The lecture's RNN against PyTorch autograd on the same weights, in float64.

Loss, outputs, final states and every gradient (all of torch's parameter names, the
inputs and h0) must agree to a relative error of 1e-9 or better.
"""

import itertools

import numpy as np
import pytest

import bptt
from bptt.gradcheck import relative_error

torch = pytest.importorskip("torch")
from torch_reference import torch_step  # noqa: E402  (needs torch: after the skip)

TOL = 1e-9


@pytest.mark.parametrize("layers,nonlinearity,bias,masked", list(itertools.product(
    (1, 2, 3), ("tanh", "relu"), (True, False), (False, True))))
def test_parity_with_torch_rnn(layers, nonlinearity, bias, masked):
    torch.manual_seed(layers)
    rnn = torch.nn.RNN(4, 6, num_layers=layers, nonlinearity=nonlinearity, bias=bias).double()
    head = torch.nn.Linear(6, 5, bias=bias).double()
    net = bptt.from_torch(rnn, head)
    rng = np.random.default_rng(layers)
    T, B = 7, 3
    x = rng.standard_normal((T, B, 4))
    y = rng.integers(0, 5, (T, B))
    h0 = rng.standard_normal((layers, B, 6))
    mask = (rng.random((T, B)) < 0.6).astype(float) if masked else None

    result = net.forward_backward(x, y, mask=mask, h0=h0)
    E, z, (hT,), X, (H0,) = torch_step(rnn, head, x, y, h0, mask)

    assert abs(result.loss - E.item()) <= TOL * abs(E.item())
    assert relative_error(result.outputs, z.detach().numpy()) < TOL
    assert relative_error(result.final_state, hT.detach().numpy()) < TOL
    named = dict(rnn.named_parameters())
    named.update({f"head.{k}": v for k, v in head.named_parameters()})
    mapped = bptt.torch_names(net, result.grads)
    assert set(mapped) == set(named)
    for name, p in named.items():
        assert relative_error(mapped[name], p.grad.numpy()) < TOL, name
    assert relative_error(result.dinputs, X.grad.numpy()) < TOL
    assert relative_error(result.dh0, H0.grad.numpy()) < TOL


def test_token_ids_equal_one_hot_inputs_in_torch():
    """Ids are a column lookup of U; torch sees the same as one-hot float inputs."""
    torch.manual_seed(0)
    rnn = torch.nn.RNN(7, 5, num_layers=2).double()
    head = torch.nn.Linear(5, 7).double()
    net = bptt.from_torch(rnn, head)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (6, 2))
    y = rng.integers(0, 7, (6, 2))
    h0 = np.zeros((2, 2, 5))
    loss, grads = net.loss_and_grads(ids, y, h0=h0)
    E, *_ = torch_step(rnn, head, np.eye(7)[ids], y, h0, None)
    assert abs(loss - E.item()) <= TOL * E.item()
    mapped = bptt.torch_names(net, grads)
    assert relative_error(mapped["weight_ih_l0"], rnn.weight_ih_l0.grad.numpy()) < TOL


def test_mse_and_no_head_parity():
    torch.manual_seed(1)
    rnn = torch.nn.RNN(3, 4, num_layers=2).double()
    net = bptt.from_torch(rnn, None, loss="mse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 3))
    y = rng.standard_normal((5, 2, 4))
    h0 = rng.standard_normal((2, 2, 4))
    loss, grads = net.loss_and_grads(x, y, h0=h0)
    E, *_ = torch_step(rnn, None, x, y, h0, None, loss="mse")
    assert abs(loss - E.item()) <= TOL * E.item()
    named = dict(rnn.named_parameters())
    for name, g in bptt.torch_names(net, grads).items():
        assert relative_error(g, named[name].grad.numpy()) < TOL


def test_to_torch_round_trip_computes_the_same():
    net = bptt.Network(3, 4, 2, num_layers=2, nonlinearity="relu", seed=9)
    rnn, head = bptt.to_torch(net)
    back = bptt.from_torch(rnn, head)
    for name in net.params:
        np.testing.assert_allclose(back.params[name], net.params[name], rtol=0, atol=1e-15)
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    with torch.no_grad():
        out, _ = rnn(torch.tensor(x))
        z = head(out).numpy()
    assert relative_error(net.forward(x).outputs, z) < TOL


def test_global_norm_clipping_matches_torch():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)) * 10, "b": rng.standard_normal(5) * 10}
    tensors = [torch.tensor(g.copy(), requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g.copy())
    norm_torch = torch.nn.utils.clip_grad_norm_(tensors, max_norm=2.0)
    report = bptt.clip_by_global_norm(grads, 2.0)
    assert report.clipped and abs(report.norm - norm_torch.item()) < 1e-12 * report.norm
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


def test_from_torch_refuses_what_it_cannot_represent():
    with pytest.raises(ValueError, match="head"):
        bptt.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match="Conv1d"):
        bptt.from_torch(torch.nn.Conv1d(3, 4, 1))
