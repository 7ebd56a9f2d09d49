"""Truncated BPTT: each mode equals full BPTT when its window covers the sequence, and each
truncated gradient matches an independent reference (a direct loop, or torch with detach)."""

import numpy as np

import bptt
import pytest

from bptt.gradcheck import random_problem, relative_error
from bptt.network import Network
from bptt.training.truncation import TBPTT, Chunked, FullBPTT, PerOutputWindow, make_truncation


def collect(net, mode, inputs, targets, mask=None, h0=None):
    """Run a mode without updating: sum of the pieces' gradients, their losses, the final state."""
    pieces = []
    x = net.check_inputs(inputs)
    T, B = x.shape[:2]
    y = net.check_targets(targets, T, B)
    m = net.check_mask(mask, T, B)
    loss, final = mode.run(net, x, y, m, h0, pieces.append)
    total = net.zero_grads()
    for piece in pieces:
        for name in total:
            total[name] += piece.grads[name]
    return loss, total, final, pieces


def worst(a: dict, b: dict) -> float:
    return max(relative_error(a[k], b[k]) for k in a)


def make(cell="rnn", layers=1, loss="cross_entropy", seed=3, I=4, H=5, O=3):
    return Network(I, H, O, num_layers=layers, cell=cell, loss=loss, seed=seed)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("mode", [Chunked(7), Chunked(100), TBPTT(7, 7), TBPTT(7, 9), TBPTT(20, 30),
                                  PerOutputWindow(6), PerOutputWindow(50)])
def test_window_covering_the_sequence_is_full_bptt(cell, mode):
    net = make(cell=cell, layers=2)
    inputs, targets, mask, h0 = random_problem(net, 7, 3, seed=1, masked=True)
    full_loss, full_grads = net.loss_and_grads(inputs, targets, mask, h0)
    loss, grads, final, _ = collect(net, mode, inputs, targets, mask, h0)
    assert abs(loss - full_loss) <= 1e-12 * abs(full_loss)
    assert worst(grads, full_grads) < 1e-12
    full_final = net.forward(inputs, h0).final_state
    for a, b in zip(final if isinstance(final, tuple) else (final,),
                    full_final if isinstance(full_final, tuple) else (full_final,)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def test_chunked_is_per_chunk_bptt_with_carried_detached_state():
    net = make(layers=2, loss="mse")
    inputs, targets, mask, h0 = random_problem(net, 11, 2, seed=4, masked=True)
    loss, grads, final, pieces = collect(net, Chunked(4), inputs, targets, mask, h0)
    assert [p.span for p in pieces] == [(0, 4), (4, 8), (8, 11)]
    # reference: three independent full-BPTT calls, each starting from the previous chunk's final state
    ref = net.zero_grads()
    state, ref_loss = h0, 0.0
    for t0, t1 in [(0, 4), (4, 8), (8, 11)]:
        result = net.forward_backward(inputs[t0:t1], targets[t0:t1], mask[t0:t1], state)
        ref_loss += result.loss
        for k in ref:
            ref[k] += result.grads[k]
        state = result.final_state
    assert abs(loss - ref_loss) < 1e-12 * abs(ref_loss)
    assert worst(grads, ref) < 1e-12
    # and truncation changes the gradient (the test would notice a mode silently doing full BPTT)
    _, full = net.loss_and_grads(inputs, targets, mask, h0)
    assert worst(grads, full) > 1e-3


def wildml_window_gradient(net, ids, targets, mask, k):
    """The WildML tutorial's bptt() loop (part 2), generalised to a batch: an independent
    reference written from the equations, one output E_t at a time, k steps back."""
    U, W, b = net.params["layers.0.U"], net.params["layers.0.W"], net.params["layers.0.b"]
    V, c = net.params["V"], net.params["c"]
    T, B = ids.shape
    H = W.shape[0]
    s = np.zeros((T + 1, B, H))                                    # s[t+1] = h_t, s[0] = h_0 = 0
    for t in range(T):
        s[t + 1] = np.tanh(U[:, ids[t]].T + s[t] @ W.T + b)
    z = s[1:] @ V.T + c
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    delta_o = p.copy()
    for t in range(T):
        delta_o[t, np.arange(B), targets[t]] -= 1
    delta_o *= (mask / B)[..., None]
    g = {name: np.zeros_like(a) for name, a in net.params.items()}
    for t in range(T - 1, -1, -1):
        g["V"] += delta_o[t].T @ s[t + 1]
        g["c"] += delta_o[t].sum(0)
        delta_t = (delta_o[t] @ V) * (1 - s[t + 1] ** 2)
        for step in range(t, max(0, t - k) - 1, -1):               # at most k steps back
            g["layers.0.W"] += delta_t.T @ s[step]
            g["layers.0.b"] += delta_t.sum(0)
            for bi in range(B):
                g["layers.0.U"][:, ids[step, bi]] += delta_t[bi]
            delta_t = (delta_t @ W) * (1 - s[step] ** 2)
    return g


@pytest.mark.parametrize("k", [0, 1, 3])
def test_per_output_window_matches_the_tutorial_loop(k):
    net = Network(6, 5, 6, seed=2)
    rng = np.random.default_rng(0)
    T, B = 9, 3
    ids = rng.integers(0, 6, (T, B))
    targets = rng.integers(0, 6, (T, B))
    mask = rng.random((T, B))
    _, grads, _, _ = collect(net, PerOutputWindow(k, max_rows=7), ids, targets, mask)   # several groups
    ref = wildml_window_gradient(net, ids, targets, mask, k)
    assert worst(grads, ref) < 1e-12
    _, full = net.loss_and_grads(ids, targets, mask)
    assert worst(grads, full) > 1e-4


def torch_rnn(net):
    torch = pytest.importorskip("torch")
    module, head = bptt.to_torch(net)
    return torch, module, head


def torch_states(torch, module, x):
    """Per-layer states (L, B, H) before every step, by running the module one step at a time."""
    h = torch.zeros(module.num_layers, x.shape[1], module.hidden_size, dtype=torch.float64)
    states = [h]
    for t in range(x.shape[0]):
        _, h = module(x[t:t + 1], h)
        states.append(h)
    return states


def torch_grads(net, module, head):
    from bptt.interop.torch import torch_names  # noqa: F401  (names checked by the interop tests)
    out = {}
    for k in range(net.num_layers):
        out[f"layers.{k}.U"] = getattr(module, f"weight_ih_l{k}").grad.numpy().copy()
        out[f"layers.{k}.W"] = getattr(module, f"weight_hh_l{k}").grad.numpy().copy()
        out[f"layers.{k}.b"] = getattr(module, f"bias_ih_l{k}").grad.numpy().copy()
    out["V"] = head.weight.grad.numpy().copy()
    out["c"] = head.bias.grad.numpy().copy()
    return out


def weighted_ce(torch, logits, targets, weights):
    """bptt's convention: sum over time, mean over batch, weighted by the mask."""
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, targets[..., None])[..., 0]
    return -(picked * weights).sum() / targets.shape[1]


def test_per_output_window_matches_torch_with_detach_two_layers():
    net = make(layers=2, I=4, H=5, O=3, seed=8)
    torch, module, head = torch_rnn(net)
    inputs, targets, mask, _ = random_problem(net, 8, 2, seed=5, masked=True)
    k = 2
    _, grads, _, _ = collect(net, PerOutputWindow(k), inputs, targets, mask)
    x = torch.tensor(inputs)
    y = torch.tensor(targets)
    w = torch.tensor(mask)
    states = torch_states(torch, module, x)
    for t in range(8):
        s = max(0, t - k)
        out, _ = module(x[s:t + 1], states[s].detach())             # E_t sees steps s..t only
        logits = head(out[-1:])
        weighted_ce(torch, logits, y[t:t + 1], w[t:t + 1]).backward()
    assert worst(grads, torch_grads(net, module, head)) < 1e-10


def test_tbptt_matches_torch_with_detach():
    net = make(layers=2, I=4, H=5, O=3, seed=9)
    torch, module, head = torch_rnn(net)
    inputs, targets, mask, _ = random_problem(net, 13, 2, seed=6, masked=True)
    k1, k2 = 3, 5
    _, grads, _, pieces = collect(net, TBPTT(k1, k2), inputs, targets, mask)
    assert [p.span for p in pieces] == [(0, 3), (3, 6), (6, 9), (9, 12), (12, 13)]
    assert [p.window for p in pieces] == [(0, 3), (1, 6), (4, 9), (7, 12), (8, 13)]
    x, y, w = torch.tensor(inputs), torch.tensor(targets), torch.tensor(mask)
    states = torch_states(torch, module, x)
    for t0, t1 in [(0, 3), (3, 6), (6, 9), (9, 12), (12, 13)]:
        s = max(0, t1 - k2)                                         # backpropagate k2 steps
        out, _ = module(x[s:t1], states[s].detach())
        logits = head(out[t0 - s:])                                 # loss on the k1 newest outputs
        weighted_ce(torch, logits, y[t0:t1], w[t0:t1]).backward()
    assert worst(grads, torch_grads(net, module, head)) < 1e-10
    for piece in pieces:                                            # dh over each whole window
        assert piece.dh[0].shape == (piece.window[1] - piece.window[0], 2, 5)


def test_tbptt_k_k_equals_chunked_when_k_divides_T():
    net = make(cell="lstm", layers=1)
    inputs, targets, mask, h0 = random_problem(net, 12, 2, seed=7)
    _, a, fa, _ = collect(net, TBPTT(4, 4), inputs, targets, mask, h0)
    _, b, fb, _ = collect(net, Chunked(4), inputs, targets, mask, h0)
    assert worst(a, b) < 1e-12


def test_full_mode_returns_dh_and_forward():
    net = make()
    inputs, targets, _, _ = random_problem(net, 5, 2, seed=1)
    _, grads, _, pieces = collect(net, FullBPTT(), inputs, targets)
    assert len(pieces) == 1 and pieces[0].forward is not None and pieces[0].dh[0].shape == (5, 2, 5)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="k2 must be >= k1"):
        TBPTT(5, 3)
    with pytest.raises(ValueError, match="k must be"):
        Chunked(0)
    with pytest.raises(ValueError, match="k must be an integer >= 0, got -1"):
        PerOutputWindow(-1)
    with pytest.raises(ValueError, match="truncation must be one of"):
        make_truncation("nope")
    net = Network(3, 4, 2, bidirectional=True)
    inputs, targets, _, _ = random_problem(net, 4, 2)
    with pytest.raises(ValueError, match="unidirectional"):
        collect(net, Chunked(2), inputs, targets)
