"""Layer-normalised LSTM (Ba et al. 2016): finite differences (random gammas and betas, so every LN
factor matters), and a torch autograd reference written from the equations (test-only)."""

import itertools

import numpy as np
import pytest

from bptt import Network
from bptt.gradcheck import check_network, random_lengths, random_problem, relative_error


def randomise_ln(net, seed=0):
    rng = np.random.default_rng(seed)
    for k, v in net.params.items():
        if ".ln_" in k:
            v[...] = rng.uniform(0.5, 1.5, v.shape) if k.endswith("gamma") else 0.3 * rng.standard_normal(v.shape)


def test_parameters_and_init():
    net = Network(3, 4, 2, cell="lstm", layer_norm=True)
    for name, size in (("x", 16), ("h", 16), ("c", 4)):
        assert np.all(net.params[f"layers.0.ln_{name}_gamma"] == 1) and net.params[f"layers.0.ln_{name}_gamma"].shape == (size,)
        assert np.all(net.params[f"layers.0.ln_{name}_beta"] == 0)
    with pytest.raises(ValueError, match="layer_norm=True .* needs cell='lstm', got cell='gru'"):
        Network(3, 4, 2, cell="gru", layer_norm=True)


@pytest.mark.parametrize("bidirectional,layers,ids,lengths",
                         list(itertools.product([False, True], [1, 2], [False, True], [False, True])))
def test_finite_differences(bidirectional, layers, ids, lengths):
    net = Network(5, 4, 3, num_layers=layers, cell="lstm", layer_norm=True, bidirectional=bidirectional, seed=1)
    randomise_ln(net)
    x, y, mask, h0 = random_problem(net, 6, 4, seed=2, token_ids=ids, masked=True)
    errors = check_network(net, x, y, mask, h0, lengths=random_lengths(4, 6, seed=3) if lengths else None)
    assert max(errors.values()) < 1e-6, errors


def test_torch_autograd_reference():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    net = Network(4, 5, 3, num_layers=2, cell="lstm", layer_norm=True, seed=4)
    randomise_ln(net, 4)
    x, y, _, h0 = random_problem(net, 7, 3, seed=4)
    upstream = [np.random.default_rng(s).standard_normal(a.shape) for s, a in enumerate(h0)]
    fwd = net.forward(x, h0)
    loss, dz = net.output_loss(fwd, y)
    bwd = net.backward(fwd, dz, dfinal_state=tuple(upstream))

    P = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    xt = torch.tensor(x, requires_grad=True)
    H = 5
    inp, finals_h, finals_c = xt, [], []
    for k in range(2):
        q = lambda name: P[f"layers.{k}.{name}"]                                  # noqa: E731
        h, c = torch.tensor(h0[0][k]), torch.tensor(h0[1][k])
        outs = []
        for t in range(x.shape[0]):
            a = (F.layer_norm(inp[t] @ q("U").T, (4 * H,), q("ln_x_gamma"), q("ln_x_beta"), 1e-5)
                 + F.layer_norm(h @ q("W").T, (4 * H,), q("ln_h_gamma"), q("ln_h_beta"), 1e-5) + q("b"))
            i, f, g, o = (torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.tanh(a[:, 2 * H:3 * H]),
                          torch.sigmoid(a[:, 3 * H:]))
            c = f * c + i * g
            h = o * torch.tanh(F.layer_norm(c, (H,), q("ln_c_gamma"), q("ln_c_beta"), 1e-5))
            outs.append(h)
        finals_h.append(h)
        finals_c.append(c)
        inp = torch.stack(outs)
    logits = inp @ P["V"].T + P["c"]
    T, B = y.shape
    t_loss = F.cross_entropy(logits.reshape(T * B, -1), torch.tensor(y).reshape(-1), reduction="sum") / B
    extra = (torch.tensor(upstream[0]) * torch.stack(finals_h)).sum() + (torch.tensor(upstream[1]) * torch.stack(finals_c)).sum()
    (t_loss + extra).backward()
    assert abs(loss - t_loss.item()) <= 1e-12 * abs(loss)
    for k, p in P.items():
        assert relative_error(bwd.grads[k], p.grad.numpy()) <= 1e-9, k
    assert relative_error(bwd.dinputs, xt.grad.numpy()) <= 1e-9
