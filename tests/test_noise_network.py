"""Recurrent dropout and zoneout through Network (layers/noise.py): masks drawn per forward call in
training mode, exact gradients for the drawn masks (finite differences, float64, through packed
sequences, bidirectional and stacked layers), the expectation at evaluation, the CLI flags."""

import numpy as np
import pytest

from bptt import Network
from bptt.gradcheck import check_network, random_lengths, random_problem
from bptt.layers.noise import LayerNoise

TOL = 1e-6
CELLS = [("rnn", {}), ("lstm", {}), ("gru", {}), ("gru", {"gru_variant": "cho"}), ("mingru", {}),
         ("minlstm", {}), ("lstm", {"layer_norm": True}), ("lstm", {"proj_size": 3})]
WITH_W = [(c, o) for c, o in CELLS if c not in ("mingru", "minlstm")]


def worst(errors: dict) -> float:
    return max(errors.values())


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("cell,options", CELLS)
@pytest.mark.parametrize("training", [True, False])
def test_finite_differences_under_the_drawn_masks(cell, options, training):
    """Two stacked bidirectional layers over packed sequences, random dE/d(final state): every
    gradient against central differences under the same masks (training) or the expectation (eval)."""
    recurrent = 0.0 if cell in ("mingru", "minlstm") else 0.3
    net = Network(4, 5, 3, num_layers=2, cell=cell, bidirectional=True, recurrent_dropout=recurrent,
                  zoneout=0.35, seed=2, **options)
    net.train(training)
    x, y, mask, h0 = random_problem(net, 6, 4, seed=3, masked=True)
    fwd = net.forward(x, h0)
    assert (fwd.noise is not None) and len(fwd.noise) == 2 and all(len(n) == 2 for n in fwd.noise)
    if training:
        assert fwd.noise[0][0].zoneout is not None
    else:
        assert all(d.recurrent is None and d.zoneout is None and d.zoneout_p == 0.35 for n in fwd.noise for d in n)
    assert worst(check_network(net, x, y, mask, h0, lengths=random_lengths(4, 6, seed=5))) < TOL
    assert worst(check_network(net, x, y, mask, h0)) < TOL


def test_masks_are_drawn_per_call_and_replayed():
    net = Network(3, 6, 2, num_layers=2, cell="lstm", recurrent_dropout=0.5, zoneout=0.2, seed=0)
    x, y, mask, h0 = random_problem(net, 7, 5, seed=1)
    a = net.forward(x, h0)
    b = net.forward(x, h0)
    assert not np.array_equal(a.outputs, b.outputs)                 # new masks each call
    again = net.forward(x, h0, noise=a.noise)
    np.testing.assert_array_equal(again.outputs, a.outputs)          # the same masks, the same numbers
    m = a.noise[0][0].recurrent
    assert m.shape == (5, 6) and set(np.unique(m)) <= {0.0, 2.0}
    h_mask, c_mask = a.noise[1][0].zoneout                           # an LSTM zones out h and c, each its own
    assert h_mask.shape == c_mask.shape == (7, 5, 6) and not np.array_equal(h_mask, c_mask)
    assert 0.05 < h_mask.mean() < 0.4                                # p = 0.2 of 210 entries
    with pytest.raises(ValueError, match=r"noise\[0\]\.recurrent"):
        bad = [(LayerNoise(np.ones((5, 4)), None, 0.2),), a.noise[1]]
        net.forward(x, h0, noise=bad)
    with pytest.raises(ValueError, match="noise must be a ForwardPass's noise"):
        net.forward(x, h0, noise=[1, 2])


def test_rnn_by_hand_recurrent_mask_fixed_in_time_and_zoneout():
    """h_t = d_t h_{t-1} + (1 - d_t) tanh(U x_t + W (m h_{t-1}) + b), m one (B, H) mask for all t."""
    net = Network(3, 4, None, cell="rnn", recurrent_dropout=0.4, zoneout=0.3, seed=7)
    x, _, _, h0 = random_problem(net, 9, 2, seed=8)
    fwd = net.forward(x, h0)
    noise = fwd.noise[0][0]
    U, W, b = (net.params[f"layers.0.{n}"] for n in "UWb")
    h = h0[0] if h0.ndim == 3 else h0
    for t in range(9):
        update = np.tanh(x[t] @ U.T + (noise.recurrent * h) @ W.T + b)
        d = noise.zoneout[0][t]
        h = d * h + (1 - d) * update
        np.testing.assert_allclose(fwd.hidden[0][t], h, rtol=1e-12, atol=1e-14)
    net.eval()                                                        # evaluation: no mask, d = p
    fwd = net.forward(x, h0)
    h = h0[0] if h0.ndim == 3 else h0
    for t in range(9):
        h = 0.3 * h + 0.7 * np.tanh(x[t] @ U.T + h @ W.T + b)
        np.testing.assert_allclose(fwd.hidden[0][t], h, rtol=1e-12, atol=1e-14)


def test_lstm_zoneout_by_hand_krueger_form():
    """c_t = d^c c_{t-1} + (1-d^c) c~_t, h_t = d^h h_{t-1} + (1-d^h) o tanh(c~_t) (Krueger et al. 2017)."""
    net = Network(3, 4, None, cell="lstm", zoneout=0.5, seed=1)
    x, _, _, (h0, c0) = random_problem(net, 6, 3, seed=2)
    fwd = net.forward(x, (h0, c0))
    dh, dc = fwd.noise[0][0].zoneout
    U, W, b = (net.params[f"layers.0.{n}"] for n in "UWb")
    h, c = h0[0], c0[0]
    H = 4
    for t in range(6):
        a = x[t] @ U.T + h @ W.T + b
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c_new = f * c + i * g
        h = dh[t] * h + (1 - dh[t]) * o * np.tanh(c_new)
        c = dc[t] * c + (1 - dc[t]) * c_new
        np.testing.assert_allclose(fwd.hidden[0][t], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fwd.final_state[1][0], c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell,options", WITH_W)
def test_evaluation_without_zoneout_is_the_plain_network(cell, options):
    """Recurrent dropout acts in training only: at evaluation the network is the un-regularised one, bit for bit."""
    plain = Network(3, 5, 2, num_layers=2, cell=cell, seed=4, **options).eval()
    dropped = Network(3, 5, 2, num_layers=2, cell=cell, seed=4, recurrent_dropout=0.5, **options).eval()
    x, _, _, h0 = random_problem(plain, 6, 3, seed=5)
    np.testing.assert_array_equal(dropped.forward(x, h0).outputs, plain.forward(x, h0).outputs)
    assert dropped.forward(x, h0).noise is None


def test_packed_sequences_keep_each_sequence_mask():
    """With lengths, the batch runs in pieces (layers/packed.py); each sequence keeps its own recurrent
    mask and zoneout steps across the pieces: row b equals the same row run alone on its own L_b steps."""
    net = Network(3, 5, None, cell="gru", recurrent_dropout=0.5, zoneout=0.3, seed=9)
    x, _, _, h0 = random_problem(net, 8, 4, seed=10)
    lengths = np.array([8, 3, 6, 1])
    fwd = net.forward(x, h0, lengths=lengths)
    noise = fwd.noise[0][0]
    for b, L in enumerate(lengths):
        alone = [(noise.take(0, L, np.array([b])),)]
        single = net.forward(x[:L, b:b + 1], h0[:, b:b + 1], noise=alone)
        np.testing.assert_allclose(fwd.hidden[0][:L, b], single.hidden[0][:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell,options", [("rnn", {}), ("lstm", {}), ("gru", {}), ("mingru", {}),
                                          ("lstm", {"layer_norm": True}), ("lstm", {"proj_size": 3})])
def test_sampling_step_uses_the_expectation(cell, options):
    """net.step (generation) mixes p h_{t-1} + (1 - p) h~_t, as forward does at evaluation."""
    net = Network(4, 5, 4, num_layers=2, cell=cell, zoneout=0.4, seed=3, **options).eval()
    ids = np.random.default_rng(0).integers(0, 4, size=(7, 2))
    outputs = net.forward(ids).outputs
    state = net.zero_state(2)
    for t in range(7):
        out, state = net.step(ids[t], state)
        np.testing.assert_allclose(out, outputs[t], rtol=1e-11, atol=1e-13)


def test_bad_rates_and_cells_are_refused():
    with pytest.raises(ValueError, match=r"recurrent_dropout must be in \[0, 1\), got 1.0"):
        Network(3, 4, 2, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match=r"zoneout must be in \[0, 1\), got 1.5"):
        Network(3, 4, 2, zoneout=1.5)
    with pytest.raises(ValueError, match="zoneout"):
        Network(3, 4, 2, zoneout=-0.1)
    with pytest.raises(ValueError, match=r"cell='mingru' has no W.*use zoneout"):
        Network(3, 4, 2, cell="mingru", recurrent_dropout=0.2)


def test_config_round_trip_and_exports_refuse_zoneout(tmp_path):
    from bptt.io.checkpoint import load_checkpoint, save_checkpoint
    from bptt.io.export import exportable
    net = Network(3, 4, 2, cell="lstm", recurrent_dropout=0.25, zoneout=0.1, seed=1)
    save_checkpoint(tmp_path / "c.npz", net)
    back = load_checkpoint(tmp_path / "c.npz").network()
    assert (back.recurrent_dropout, back.zoneout) == (0.25, 0.1)
    with pytest.raises(ValueError, match=r"ONNX export: zoneout=0.1"):
        exportable(net)
    exportable(Network(3, 4, 2, cell="lstm", recurrent_dropout=0.25))     # nothing at evaluation: exportable


def test_cli_train_flags_and_a_bad_rate(tmp_path, capsys):
    from bptt.cli import main
    from bptt.io.checkpoint import load_checkpoint
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    small = ["--hidden", "8", "--seq-len", "6", "--batch", "3", "--no-progress", "--eval-every", "2"]
    out = str(tmp_path / "run")
    assert main(["train", "--text", str(text), "--steps", "4", "--out", out, "--cell", "lstm",
                 "--recurrent-dropout", "0.2", "--zoneout", "0.1"] + small) == 0
    net = load_checkpoint(out).network()
    assert (net.cell, net.recurrent_dropout, net.zoneout) == ("lstm", 0.2, 0.1)
    assert main(["sample", out, "--length", "20", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--text", str(text), "--steps", "2", "--out", str(tmp_path / "bad"),
                 "--zoneout", "1.5"] + small) != 0
    err = capsys.readouterr().err
    assert "zoneout must be in [0, 1), got 1.5" in err and "Traceback" not in err
    assert main(["train", "--text", str(text), "--steps", "2", "--out", str(tmp_path / "bad2"),
                 "--cell", "minlstm", "--recurrent-dropout", "0.3"] + small) != 0
    assert "has no W" in capsys.readouterr().err


def test_train_first_line_says_the_reference_loops_run():
    from bptt.cli.train import path_note
    assert "reference loops" in path_note(Network(3, 4, 3, cell="gru", zoneout=0.1))
    assert "reference loops" in path_note(Network(3, 4, 3, cell="lstm", recurrent_dropout=0.1))
    assert path_note(Network(3, 4, 3, cell="lstm", weight_dropout=0.1)) == ""     # DropConnect keeps the fast path
