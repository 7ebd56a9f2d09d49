"""Saliency by time lag (diagnostics.saliency) against torch autograd on the same weights, float64."""

import numpy as np
import pytest

import bptt
from bptt import diagnostics
from bptt.diagnostics.saliency import lags_below, saliency_matrix

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_saliency(net, x, y, t, mask=None, lengths=None):
    """||dE_{t,b}/dx_{k,b}|| by autograd: x one-hot (ids), the embedded rows, or the float inputs."""
    parts = bptt.to_torch(net)
    module, head = parts[0], parts[1]
    module.eval()
    T, B = y.shape[:2]
    if net.embedding is not None:
        X = parts[2](torch.tensor(x)).detach().requires_grad_(True)
    elif x.dtype.kind in "iu":
        X = F.one_hot(torch.tensor(x), net.input_size).double().requires_grad_(True)
    else:
        X = torch.tensor(x, requires_grad=True)
    out, _ = module(X)
    z = head(out)
    if net.loss == "cross_entropy":
        per = F.cross_entropy(z[t], torch.tensor(y[t]), reduction="none")     # (B,)
    else:
        per = 0.5 * ((z[t] - torch.tensor(y[t])) ** 2).sum(-1)
    weight = torch.ones(B, dtype=torch.float64)
    if mask is not None:
        weight = weight * torch.tensor(mask[t])
    if lengths is not None:
        weight = weight * torch.tensor((t < np.asarray(lengths)).astype(float))
    (per * weight).sum().backward()
    return X.grad.norm(dim=-1).numpy()                                         # (T, B)


CASES = [("rnn", {}), ("lstm", {}), ("gru", {}), ("rnn", {"num_layers": 2}), ("lstm", {"num_layers": 2}),
         ("gru", {"embedding_size": 4}), ("lstm", {"embedding_size": 3, "num_layers": 2})]


@pytest.mark.parametrize("cell,options", CASES, ids=[f"{c}-{o}" for c, o in CASES])
def test_input_saliency_matches_torch_on_token_ids(cell, options):
    V, T, B = 6, 7, 3
    net = bptt.Network(V, 5, V, cell=cell, seed=2, **options)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    mask = (rng.random((T, B)) > 0.2).astype(float)
    S_all = saliency_matrix(net, x, y, mask=mask)
    for t in (0, 3, T - 1):
        ours = diagnostics.input_saliency(net, x, y, t, mask=mask)
        ref = torch_saliency(net, x, y, t, mask=mask)
        assert ours.shape == (T, B)
        assert np.abs(ours - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
        assert np.all(ours[t + 1:] == 0)
        assert np.abs(S_all[t] - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
    assert np.all(ours[: T - 1] > 0) or np.any(mask[T - 1] == 0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_input_saliency_matches_torch_with_lengths_and_float_inputs(cell):
    T, B, I = 6, 3, 4
    net = bptt.Network(I, 5, 2, cell=cell, loss="mse", seed=7)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, 2))
    lengths = np.array([6, 2, 4])
    for t in (1, 3, 5):
        ours = diagnostics.input_saliency(net, x, y, t, lengths=lengths)
        ref = torch_saliency(net, x, y, t, lengths=lengths)
        assert np.abs(ours - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
        assert np.all(ours[:, lengths <= t] == 0)                  # past its end, no loss, no saliency


def test_saliency_uses_h0_and_is_per_example():
    net = bptt.Network(5, 4, 5, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, (5, 2)), rng.integers(0, 5, (5, 2))
    both = saliency_matrix(net, x, y)
    alone = saliency_matrix(net, x[:, :1], y[:, :1])
    np.testing.assert_allclose(both[:, :, :1], alone, rtol=1e-12)   # independent of the rest of the batch
    h0 = rng.normal(size=(1, 2, 4))
    assert not np.allclose(saliency_matrix(net, x, y, h0=h0), both)


def test_lags_below_on_a_known_profile():
    T = 6
    S = np.zeros((T, T, 1))
    for t in range(T):
        for k in range(t + 1):
            S[t, k, 0] = 10.0 ** -(t - k)                       # falls by 10x per lag
    lags = lags_below(S, 0.01)[:, 0]
    # 1% of lag 0 is 1e-2: first strictly below at lag 3; censored (t + 1) before that
    np.testing.assert_array_equal(lags, [1, 2, 3, 3, 3, 3])


def test_saliency_lags_of_a_forgetting_network_are_short():
    net = bptt.Network(4, 6, 4, seed=0)
    for name in ("layers.0.W",):
        net.params[name] = net.params[name] * 0.05             # almost no memory
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 4, (12, 1)), rng.integers(0, 4, (12, 1))
    lags = diagnostics.saliency_lags(net, x, y)
    assert lags.shape == (12, 1)
    assert lags[4:].max() <= 3


@pytest.mark.parametrize("bad,message", [(12, "t must be in"), (1.5, "t must be an integer")])
def test_input_saliency_bad_t(bad, message):
    net = bptt.Network(4, 3, 4, seed=0)
    x = np.zeros((5, 1), int)
    with pytest.raises(ValueError, match=message):
        diagnostics.input_saliency(net, x, x, bad)


def test_saliency_lags_bad_threshold():
    net = bptt.Network(4, 3, 4, seed=0)
    x = np.zeros((5, 1), int)
    with pytest.raises(ValueError, match="threshold"):
        diagnostics.saliency_lags(net, x, x, threshold=2.0)
