"""LSTM with projection (torch's nn.LSTM(proj_size=P)): finite differences and float64 parity through
from_torch / to_torch / torch_names, with packed variable-length sequences."""

import itertools

import numpy as np
import pytest

import bptt
from bptt import Network
from bptt.gradcheck import check_network, random_lengths, random_problem, relative_error


@pytest.mark.parametrize("bidirectional,layers,lengths", list(itertools.product([False, True], [1, 2], [False, True])))
def test_finite_differences(bidirectional, layers, lengths):
    net = Network(5, 4, 3, num_layers=layers, cell="lstm", proj_size=2, bidirectional=bidirectional, seed=1)
    assert net.params["layers.0.W"].shape == (16, 2) and net.params["layers.0.W_hr"].shape == (2, 4)
    x, y, mask, h0 = random_problem(net, 6, 4, seed=2, masked=True)
    assert h0[0].shape == (layers * (2 if bidirectional else 1), 4, 2) and h0[1].shape[2] == 4
    errors = check_network(net, x, y, mask, h0, lengths=random_lengths(4, 6, seed=3) if lengths else None)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("bidirectional,layers", list(itertools.product([False, True], [1, 3])))
def test_torch_parity_packed(bidirectional, layers):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    torch.manual_seed(layers)
    lstm = torch.nn.LSTM(3, 6, num_layers=layers, proj_size=2, bidirectional=bidirectional).double()
    head = torch.nn.Linear(2 * (2 if bidirectional else 1), 4).double()
    net = bptt.from_torch(lstm, head=head)
    assert net.proj_size == 2
    rng = np.random.default_rng(0)
    T, B = 7, 5
    x = rng.standard_normal((T, B, 3))
    y = rng.integers(0, 4, (T, B))
    lengths = random_lengths(B, T, seed=1)
    D = 2 if bidirectional else 1
    up_h, up_c = rng.standard_normal((layers * D, B, 2)), rng.standard_normal((layers * D, B, 6))
    fwd = net.forward(x, lengths=lengths)
    loss, dz = net.output_loss(fwd, y)
    bwd = net.backward(fwd, dz, dfinal_state=(up_h, up_c))

    out, (h_n, c_n) = lstm(pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), enforce_sorted=False))
    out, _ = pad_packed_sequence(out, total_length=T)
    logits = head(out)
    valid = torch.from_numpy((np.arange(T)[:, None] < lengths).astype(float))
    ce = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), torch.from_numpy(y).reshape(-1),
                                           reduction="none").reshape(T, B)
    t_loss = (ce * valid).sum() / B
    (t_loss + (torch.from_numpy(up_h) * h_n).sum() + (torch.from_numpy(up_c) * c_n).sum()).backward()
    assert abs(loss - t_loss.item()) <= 1e-12 * abs(loss)
    assert relative_error(fwd.final_state[0], h_n.detach().numpy()) <= 1e-9
    assert relative_error(fwd.final_state[1], c_n.detach().numpy()) <= 1e-9
    mapped = bptt.torch_names(net, bwd.grads)
    named = dict(lstm.named_parameters()) | {f"head.{k}": v for k, v in head.named_parameters()}
    assert set(mapped) == set(named)
    for name, p in named.items():
        assert relative_error(mapped[name], p.grad.numpy()) <= 1e-9, name
    back, _ = bptt.to_torch(net)
    assert back.proj_size == 2
    np.testing.assert_array_equal(back.weight_hr_l0.detach().numpy(), lstm.weight_hr_l0.detach().numpy())


def test_bad_proj_size():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size=4"):
        Network(3, 4, 2, cell="lstm", proj_size=4)
    with pytest.raises(ValueError, match="needs cell='lstm'"):
        Network(3, 4, 2, cell="gru", proj_size=2)


@pytest.mark.parametrize("options", [dict(proj_size=2, bidirectional=True, num_layers=2), dict(layer_norm=True)])
def test_checkpoint_round_trip(tmp_path, options):
    from bptt.io.checkpoint import load_checkpoint, save_checkpoint
    net = Network(3, 4, 2, cell="lstm", seed=5, **options)
    back = load_checkpoint(save_checkpoint(str(tmp_path / "c.npz"), net)).network()
    assert back.config == net.config
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_array_equal(back.forward(x).outputs, net.forward(x).outputs)


def test_export_refuses_what_onnx_cannot_express(tmp_path):
    pytest.importorskip("onnx")
    from bptt.io.export import to_onnx
    for options, message in ((dict(proj_size=2), "projection"), (dict(layer_norm=True), "layer-normalised")):
        with pytest.raises(ValueError, match=message):
            to_onnx(Network(3, 4, 2, cell="lstm", **options), str(tmp_path / "m.onnx"))
        assert not (tmp_path / "m.onnx").exists()
