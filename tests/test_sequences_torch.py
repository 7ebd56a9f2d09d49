"""PyTorch float64 parity for variable-length sequences: bptt's ``lengths=`` against
``pack_padded_sequence(..., enforce_sorted=False)`` + nn.RNN/LSTM/GRU (+ nn.Embedding, a tied
nn.Linear head), random unsorted lengths including 1 and T; loss, every gradient, final states and
outputs at valid steps, relative error <= 1e-9. Also readout "last"/"mean" and from_torch's options."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bptt  # noqa: E402
from bptt.gradcheck import random_lengths, relative_error  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TOL = 1e-9


def torch_reference(net, x, y, lengths, upstream):
    """Loss + <upstream, final state> through torch, packed; returns (loss, outputs, finals, grads by torch name)."""
    modules = bptt.to_torch(net)
    module, head = modules[0], modules[1]
    embedding = modules[2] if len(modules) == 3 else None
    named = {f"head.{k}": v for k, v in head.named_parameters()} if head is not None else {}
    named.update(dict(module.named_parameters()))
    if embedding is not None:
        named["embedding.weight"] = embedding.weight
    xt = torch.from_numpy(x)
    features = embedding(xt) if embedding is not None else xt
    packed = pack_padded_sequence(features, torch.from_numpy(lengths), enforce_sorted=False)
    out, final = module(packed)
    out, _ = pad_packed_sequence(out, total_length=x.shape[0])         # (T, B, D H), zeros when padded
    finals = final if isinstance(final, tuple) else (final,)
    T, B = x.shape[:2]
    L = torch.from_numpy(lengths)
    if net.readout_mode == "all":
        logits = head(out)
        valid = (torch.arange(T)[:, None] < L[None, :]).double()
        ce = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), torch.from_numpy(y).reshape(-1),
                                               reduction="none").reshape(T, B)
        loss = (ce * valid).sum() / B
    else:
        if net.readout_mode == "last":
            pooled = out[L - 1, torch.arange(B)].clone()
            if net.bidirectional:
                H = net.hidden_size
                pooled = torch.cat([pooled[:, :H], out[0, :, H:]], dim=1)
        else:
            pooled = out.sum(0) / L[:, None].double()
        logits = head(pooled)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), reduction="sum") / B
    objective = loss + sum((torch.from_numpy(g) * f).sum() for g, f in zip(upstream, finals))
    objective.backward()
    grads = {name: p.grad.numpy() for name, p in named.items()}
    return loss.item(), logits.detach().numpy(), [f.detach().numpy() for f in finals], grads


CASES = list(itertools.product(["rnn", "lstm", "gru"], [1, 2, 3], [False, True]))


@pytest.mark.parametrize("cell,layers,bidirectional", CASES)
def test_packed_parity_with_torch(cell, layers, bidirectional):
    index = CASES.index((cell, layers, bidirectional))
    embed = index % 3                                       # 0: ids straight into U, 1: embedding, 2: tied
    readout = ("all", "all", "last", "mean")[index % 4]
    H, V = 4, 6
    width = H * (2 if bidirectional else 1)
    net = bptt.Network(V, H, V, num_layers=layers, cell=cell, bidirectional=bidirectional, seed=index,
                       embedding_size=None if embed == 0 else width, tie_weights=embed == 2, readout=readout)
    if embed == 0:                                          # torch needs features: one-hot them
        net = bptt.Network(V, H, V, num_layers=layers, cell=cell, bidirectional=bidirectional, seed=index,
                           readout=readout)
    rng = np.random.default_rng(index)
    T, B = 7, 5
    lengths = random_lengths(B, T, seed=index)
    if embed == 0:
        x = rng.standard_normal((T, B, V))
    else:
        x = rng.integers(0, V, (T, B))
    y = rng.integers(0, V, (T, B) if readout == "all" else (B,))
    D = 2 if bidirectional else 1
    shape = (layers * D, B, H)
    upstream = [rng.standard_normal(shape) for _ in net.state_names]
    fwd = net.forward(x, lengths=lengths)
    loss, doutputs = net.output_loss(fwd, y)
    bwd = net.backward(fwd, doutputs, dfinal_state=tuple(upstream) if len(upstream) > 1 else upstream[0])
    t_loss, t_logits, t_finals, t_grads = torch_reference(net, x, y, lengths, upstream)
    assert abs(loss - t_loss) <= TOL * abs(t_loss)
    if readout == "all":
        valid = np.arange(T)[:, None] < lengths
        assert relative_error(fwd.outputs[valid], t_logits[valid]) <= TOL
    else:
        assert relative_error(fwd.outputs, t_logits) <= TOL
    finals = fwd.final_state if isinstance(fwd.final_state, tuple) else (fwd.final_state,)
    for mine, theirs in zip(finals, t_finals):
        assert relative_error(mine, theirs) <= TOL
    mapped = bptt.torch_names(net, bwd.grads)
    assert set(mapped) == set(t_grads)
    for name, g in t_grads.items():
        assert relative_error(mapped[name], g) <= TOL, name


def test_from_torch_accepts_every_bias_combination_and_an_embedding():
    torch.manual_seed(0)
    for rnn_bias, head_bias in itertools.product([False, True], repeat=2):
        rnn = torch.nn.RNN(3, 4, bias=rnn_bias).double()
        head = torch.nn.Linear(4, 2, bias=head_bias).double()
        net = bptt.from_torch(rnn, head=head)
        assert net.bias == rnn_bias and net.readout_bias == head_bias
        x = np.random.default_rng(0).standard_normal((5, 2, 3))
        out, _ = rnn(torch.from_numpy(x))
        np.testing.assert_allclose(net.forward(x).outputs, head(out).detach().numpy(), rtol=1e-12, atol=1e-14)
        back, back_head = bptt.to_torch(net)
        assert (back_head.bias is not None) == head_bias and back.bias == rnn_bias
    embedding = torch.nn.Embedding(7, 4).double()
    lstm = torch.nn.LSTM(4, 4).double()
    tied = torch.nn.Linear(4, 7).double()
    tied.weight = embedding.weight
    net = bptt.from_torch(lstm, head=tied, embedding=embedding)
    assert net.tie_weights and net.embedding_size == 4 and "V" not in net.params
    module, head, emb = bptt.to_torch(net)
    assert head.weight is emb.weight
    untied = bptt.from_torch(lstm, head=torch.nn.Linear(4, 7).double(), embedding=embedding)
    assert not untied.tie_weights and "V" in untied.params
    with pytest.raises(ValueError, match="embedding_dim must equal the module's input_size 4, got 3"):
        bptt.from_torch(lstm, embedding=torch.nn.Embedding(7, 3))
    with pytest.raises(ValueError, match="embedding must be a torch.nn.Embedding"):
        bptt.from_torch(lstm, embedding=tied)
