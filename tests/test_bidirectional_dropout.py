"""Bidirectional layers (every cell) and dropout between stacked layers: finite differences
in float64 (under the forward pass's fixed dropout masks) and behaviour."""

import numpy as np
import pytest

import bptt
from bptt.gradcheck import check_network, random_problem
from bptt.layers.bidirectional import BidirectionalLayer
from bptt.layers.gru import GRULayer
from bptt.layers.lstm import LSTMLayer
from bptt.layers.rnn import RNNLayer
from gated_layer_check import layer_gradient_errors, random_layer_inputs

TOL = 1e-6
CELLS = [("rnn", "torch"), ("lstm", "torch"), ("gru", "torch"), ("gru", "cho")]


def make_net(cell, variant, layers, **kwargs):
    return bptt.Network(4, 3, 3, num_layers=layers, cell=cell, gru_variant=variant, seed=layers, **kwargs)


@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("layers,ids,masked", [(1, False, True), (2, True, False), (3, False, False)])
def test_bidirectional_gradients_match_finite_differences(cell, variant, layers, ids, masked):
    net = make_net(cell, variant, layers, bidirectional=True)
    inputs, targets, mask, h0 = random_problem(net, seq_len=4, batch=2, seed=5, token_ids=ids, masked=masked)
    errors = check_network(net, inputs, targets, mask, h0)
    assert {f"layers.{layers - 1}.U_reverse", f"layers.{layers - 1}.W_reverse", "h0"} <= set(errors)
    assert ("inputs" in errors) == (not ids) and ("c0" in errors) == (cell == "lstm")
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("bidirectional,ids", [(False, False), (True, True)])
def test_dropout_gradients_are_exact_under_fixed_masks(cell, variant, bidirectional, ids):
    net = make_net(cell, variant, 3, bidirectional=bidirectional, dropout=0.4)
    inputs, targets, mask, h0 = random_problem(net, seq_len=4, batch=2, seed=6, token_ids=ids, masked=True)
    fwd = net.forward(inputs, h0)
    assert len(fwd.dropout_masks) == 2                       # between layers 0-1 and 1-2, none after the top
    errors = check_network(net, inputs, targets, mask, h0)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("T,B", [(1, 1), (3, 2)])
@pytest.mark.parametrize("make", [
    lambda rng: RNNLayer(3, 4, rng=rng),
    lambda rng: LSTMLayer(3, 4, rng=rng),
    lambda rng: GRULayer(3, 4, variant="cho", rng=rng),
])
def test_bidirectional_layer_random_upstream(make, T, B, rng):
    layer = BidirectionalLayer(make(rng), make(rng))
    x, state0 = random_layer_inputs(layer, T, B, rng)
    assert all(s.shape == (2, B, 4) for s in state0)
    errors = layer_gradient_errors(layer, x, state0, seed=B)
    assert {"U", "W_reverse", "x", "h0"} <= set(errors)
    assert max(errors.values()) < TOL, errors


def test_reverse_direction_reads_the_sequence_backwards(rng):
    fwd_layer, rev_layer = LSTMLayer(3, 4, rng=rng), LSTMLayer(3, 4, rng=rng)
    layer = BidirectionalLayer(fwd_layer, rev_layer)
    x, state0 = random_layer_inputs(layer, 5, 2, rng)
    h, (hT, cT), _ = layer.forward(x, state0)
    h_f, (hf, cf), _ = fwd_layer.forward(x, (state0[0][0], state0[1][0]))
    h_r, (hr, cr), _ = rev_layer.forward(x[::-1].copy(), (state0[0][1], state0[1][1]))
    np.testing.assert_array_equal(h[:, :, :4], h_f)
    np.testing.assert_array_equal(h[:, :, 4:], h_r[::-1])   # h_t of the reverse direction lines up with x_t
    np.testing.assert_array_equal(hT, np.stack([hf, hr]))
    np.testing.assert_array_equal(cT, np.stack([cf, cr]))
    assert layer.params["U_reverse"] is rev_layer.params["U"]   # the arrays optimisers update in place


def test_bidirectional_network_shapes_and_names():
    net = bptt.Network(4, 3, 2, num_layers=2, cell="lstm", bidirectional=True)
    h0, c0 = net.zero_state(5)
    assert h0.shape == c0.shape == (4, 5, 3)                 # (L * 2, B, H) like torch
    assert net.params["layers.1.U"].shape == (12, 6)         # layer 1 reads both directions: 2H inputs
    assert net.params["V"].shape == (2, 6)
    assert "layers.0.b_reverse" in net.params
    fwd = net.forward(np.zeros((7, 5, 4)), (h0, c0))
    assert fwd.outputs.shape == (7, 5, 2) and fwd.final_state[1].shape == (4, 5, 3)
    with pytest.raises(ValueError, match="bidirectional"):
        net.step(np.zeros((5, 4)), (h0, c0))
    with pytest.raises(ValueError, match=r"h0 must have shape \(4, 5, 3\)"):
        net.forward(np.zeros((7, 5, 4)), (np.zeros((2, 5, 3)), c0))


def test_dh_total_of_a_bidirectional_layer_holds_both_directions():
    net = bptt.Network(4, 3, 2, num_layers=2, cell="gru", bidirectional=True, seed=1)
    inputs, targets, mask, h0 = random_problem(net, 5, 2, seed=1)
    result = net.forward_backward(inputs, targets, mask, h0)
    assert [d.shape for d in result.dh] == [(5, 2, 6), (5, 2, 6)]
    # dE/dh_T of the top layer's forward half, and dE/dh_1 of its reverse half, come from the
    # readout alone (no later step in that direction): V^T (y^ - y) / B at that step.
    probs = np.exp(result.outputs - result.outputs.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    dz = probs.copy()
    t_idx, b_idx = np.indices(targets.shape)
    dz[t_idx, b_idx, targets] -= 1.0
    dz /= 2                                                  # batch of 2
    from_readout = dz @ net.params["V"]                      # (T, B, 2H)
    np.testing.assert_allclose(result.dh[1][-1, :, :3], from_readout[-1, :, :3], rtol=1e-12)
    np.testing.assert_allclose(result.dh[1][0, :, 3:], from_readout[0, :, 3:], rtol=1e-12)
    assert not np.allclose(result.dh[1][0, :, :3], from_readout[0, :, :3])   # later steps add to the others


def test_dropout_masks_inverted_seeded_and_training_only():
    kw = dict(num_layers=3, cell="lstm", dropout=0.25, seed=7)
    x = np.random.default_rng(0).standard_normal((50, 8, 4))
    a, b = bptt.Network(4, 16, 2, **kw), bptt.Network(4, 16, 2, **kw)
    fa, fb = a.forward(x), b.forward(x)
    for ma, mb in zip(fa.dropout_masks, fb.dropout_masks):
        np.testing.assert_array_equal(ma, mb)                 # same seed, same masks: runs repeat
    m = np.concatenate([mask.ravel() for mask in fa.dropout_masks])
    assert set(np.unique(m)) == {0.0, 1 / 0.75}              # inverted scaling: kept units * 1/(1-p)
    assert abs(np.mean(m == 0) - 0.25) < 0.02                # 12800 draws: ~0.004 standard deviation
    again = a.forward(x)
    assert not np.array_equal(again.dropout_masks[0], fa.dropout_masks[0])   # fresh masks each call
    np.testing.assert_array_equal(a.forward(x, dropout_masks=fa.dropout_masks).outputs, fa.outputs)
    # eval mode: no dropout, identical to a network built without it
    no_dropout = bptt.Network(4, 16, 2, num_layers=3, cell="lstm", seed=7)
    a.eval()
    fe = a.forward(x)
    assert fe.dropout_masks is None and not a.training
    np.testing.assert_array_equal(fe.outputs, no_dropout.forward(x).outputs)
    assert not np.allclose(fa.outputs, fe.outputs)
    a.train()
    assert a.forward(x).dropout_masks is not None


def test_dropout_masks_the_input_of_the_next_layer_only(rng):
    """Dropout acts on layer l's output as layer l+1 reads it; ForwardPass.hidden keeps the
    undropped h, and the top layer feeds the readout undropped."""
    net = bptt.Network(4, 5, 3, num_layers=2, cell="gru", dropout=0.5, seed=2)
    x = rng.standard_normal((6, 3, 4))
    fwd = net.forward(x)
    manual_h1, _, _ = net.layers[1].forward(fwd.hidden[0] * fwd.dropout_masks[0], net.layers[1].zero_state(3))
    np.testing.assert_array_equal(fwd.hidden[1], manual_h1)
    np.testing.assert_allclose(fwd.outputs, net.readout.forward(manual_h1), rtol=1e-14)


def test_dropout_validation_and_single_layer_warning():
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="dropout must"):
            bptt.Network(3, 4, 2, num_layers=2, dropout=bad)
    with pytest.raises(ValueError, match="dropout must be a number, got 'x'"):
        bptt.Network(3, 4, 2, num_layers=2, dropout="x")
    with pytest.raises(ValueError, match="bidirectional must be True or False, got 1"):
        bptt.Network(3, 4, 2, bidirectional=1)
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        net = bptt.Network(3, 4, 2, dropout=0.5)
    assert net.forward(np.zeros((2, 1, 3))).dropout_masks is None


@pytest.mark.parametrize("cell,variant", CELLS)
def test_config_round_trip_rebuilds_the_same_network(cell, variant):
    net = bptt.Network(4, 3, 2, num_layers=2, cell=cell, gru_variant=variant, bidirectional=True,
                       dropout=0.1, forget_bias=0.5, seed=3)
    config = net.config
    assert {config[k] for k in ("bidirectional", "dropout", "gru_variant", "forget_bias")} >= {True, 0.1, 0.5}
    again = bptt.Network.from_config(config)
    assert set(again.params) == set(net.params)
    for name in net.params:
        np.testing.assert_array_equal(again.params[name], net.params[name])


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "bptt", "gradcheck", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args,names", [
    (("--cell", "lstm", "--bidirectional", "--dropout", "0.3", "--layers", "2", "--mask", "--forget-bias", "0.5",
      "--hidden", "3", "--seq-len", "3", "--batch", "2"),
     ("layers.1.U_reverse", "c0", "inputs")),
    (("--cell", "gru", "--gru-variant", "cho", "--ids", "--layers", "1"), ("layers.0.W", "h0")),
    (("--cell", "gru", "--layers", "2", "--seq-len", "1", "--batch", "1"), ("layers.1.b_hn",)),
])
def test_cli_gradcheck_covers_gated_options(args, names):
    run = _cli(*args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout
    for name in names:
        assert f"\n{name} " in run.stdout, run.stdout


@pytest.mark.parametrize("args,fragment", [
    (("--dropout", "1.5"), "dropout must be in [0, 1), got 1.5"),
    (("--cell", "lstm", "--forget-bias", "inf"), "forget_bias must be a finite number, got inf"),
])
def test_cli_gradcheck_bad_gated_options(args, fragment):
    run = _cli(*args)
    assert run.returncode == 2 and fragment in run.stderr and "Traceback" not in run.stderr


def test_given_dropout_masks_are_validated():
    net = bptt.Network(3, 4, 2, num_layers=2, dropout=0.5)
    x = np.zeros((3, 2, 3))
    with pytest.raises(ValueError, match=r"dropout_masks\[0\] must have shape \(3, 2, 4\), got \(3, 2, 5\)"):
        net.forward(x, dropout_masks=[np.ones((3, 2, 5))])
    with pytest.raises(ValueError, match="dropout_masks must be a list of 1 arrays .* got ndarray"):
        net.forward(x, dropout_masks=np.ones((3, 2, 4)))
