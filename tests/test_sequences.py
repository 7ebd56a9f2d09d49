"""Sequences as users have them: variable lengths (packed), embeddings and weight tying, readout
modes (many-to-one), and the API traps of issue 13. Finite differences in float64 throughout."""

import itertools

import numpy as np
import pytest

from bptt import Network
from bptt.gradcheck import check_network, random_lengths, random_problem
from bptt.layers.packed import pieces, reverse_within
from bptt.training.train import Batch, Trainer
from bptt.training.optim import SGD
from bptt.training.truncation import TBPTT, Chunked, FullBPTT, Window

TOL = 1e-6   # worst relative error of a correct float64 gradient here is ~1e-8


def worst(errors):
    return max(errors.values())


# ------------------------------------------------------------------ finite differences
CASES = list(itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2, 3]))


@pytest.mark.parametrize("cell,bidirectional,layers", CASES)
def test_lengths_finite_differences_every_cell(cell, bidirectional, layers):
    # readout mode and input kind rotate with the case, so every combination meets every cell
    index = CASES.index((cell, bidirectional, layers))
    readout = ("all", "last", "mean")[index % 3]
    ids = index % 2 == 1
    net = Network(4, 3, 3, num_layers=layers, cell=cell, bidirectional=bidirectional, readout=readout, seed=index)
    x, y, mask, h0 = random_problem(net, 6, 5, seed=index, token_ids=ids, masked=index % 4 == 0)
    lengths = random_lengths(5, 6, seed=index)
    assert 1 in lengths and 6 in lengths
    errors = check_network(net, x, y, mask, h0, lengths=lengths)
    assert worst(errors) < TOL, errors


@pytest.mark.parametrize("readout", ["all", "last", "mean"])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("cell,bidirectional", [("rnn", False), ("lstm", True), ("gru", False)])
def test_embedding_and_tying_finite_differences(readout, tie, cell, bidirectional):
    width = 3 * (2 if bidirectional else 1)
    net = Network(5, 3, 5, num_layers=2, cell=cell, bidirectional=bidirectional, embedding_size=width,
                  tie_weights=tie, readout=readout, seed=3)
    assert ("V" in net.params) != tie and "embedding" in net.params
    x, y, mask, h0 = random_problem(net, 5, 4, seed=1, token_ids=True)
    x[0, :] = x[1, :]                             # repeated ids: their rows' gradients must add up
    errors = check_network(net, x, y, mask, h0, lengths=random_lengths(4, 5, seed=2))
    assert worst(errors) < TOL, errors


def test_gru_cho_and_mse_with_lengths():
    net = Network(3, 4, 2, cell="gru", gru_variant="cho", bidirectional=True, loss="mse", seed=5)
    x, y, mask, h0 = random_problem(net, 7, 4, seed=5, masked=True)
    assert worst(check_network(net, x, y, mask, h0, lengths=random_lengths(4, 7, seed=5))) < TOL


def test_a_wrong_gradient_is_caught(monkeypatch):
    """The check can fail: a packed backward that drops dE/d(final state) of the sequences that
    end early (the gradient injected at each sequence's own last step) is caught."""
    from bptt.layers.packed import PackedLayer
    net = Network(3, 3, 2, cell="lstm", seed=0)
    x, y, _, h0 = random_problem(net, 5, 3, seed=0)
    lengths = np.array([5, 2, 3])
    assert worst(check_network(net, x, y, None, h0, lengths=lengths)) < TOL
    original = PackedLayer.backward
    monkeypatch.setattr(PackedLayer, "backward",
                        lambda self, dh, dstate, *a, **k: original(self, dh, None, *a, **k))
    assert worst(check_network(net, x, y, None, h0, lengths=lengths)) > 1e-3


# ------------------------------------------------------------------ semantics
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_batch_equals_each_sequence_alone(cell, bidirectional):
    """The issue's measurement: a length-4 sequence padded to 6 must give what it gives unpadded --
    loss, gradients, final state -- whatever the padding holds."""
    rng = np.random.default_rng(0)
    net = Network(3, 4, 5, num_layers=2, cell=cell, bidirectional=bidirectional, seed=1)
    T, lengths = 6, np.array([4, 6, 1])
    x = rng.standard_normal((T, 3, 3))
    y = rng.integers(0, 5, (T, 3))
    garbage = x.copy()
    for b, L in enumerate(lengths):
        garbage[L:, b] = 100 * rng.standard_normal((T - L, 3))
    padded = net.forward_backward(garbage, y, lengths=lengths)
    loss_sum, grads_sum = 0.0, {k: np.zeros_like(v) for k, v in net.params.items()}
    for b, L in enumerate(lengths):
        alone = net.forward_backward(x[:L, b:b + 1], y[:L, b:b + 1])
        loss_sum += alone.loss
        for k in grads_sum:
            grads_sum[k] += alone.grads[k]
        finals = padded.final_state if isinstance(padded.final_state, tuple) else (padded.final_state,)
        alone_finals = alone.final_state if isinstance(alone.final_state, tuple) else (alone.final_state,)
        for f, a in zip(finals, alone_finals):
            np.testing.assert_allclose(f[:, b], a[:, 0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(padded.outputs[:L, b], alone.outputs[:, 0], rtol=1e-12, atol=1e-14)
        assert np.all(padded.outputs[L:, b] == 0)                       # outputs at padded steps are zero
    assert padded.loss == pytest.approx(loss_sum / 3, rel=1e-12)         # loss: mean over the batch
    for k in grads_sum:
        np.testing.assert_allclose(padded.grads[k], grads_sum[k] / 3, rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_all_T_is_bit_identical(cell, bidirectional):
    net = Network(4, 6, 5, num_layers=2, cell=cell, bidirectional=bidirectional, dtype="float32", seed=2)
    x, y, mask, _ = random_problem(net, 7, 3, seed=2, token_ids=True)
    full = np.full(3, 7)
    a = net.loss_and_grads(x, y)
    b = net.loss_and_grads(x, y, lengths=full)
    assert a[0] == b[0]
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    np.testing.assert_array_equal(net.forward(x).outputs, net.forward(x, lengths=full).outputs)


def test_mask_and_lengths_multiply():
    net = Network(3, 4, 3, seed=0)
    x, y, _, _ = random_problem(net, 5, 2, seed=0)
    mask = np.random.default_rng(1).uniform(0.5, 2.0, (5, 2))
    lengths = np.array([3, 5])
    valid = (np.arange(5)[:, None] < lengths).astype(float)
    with_lengths = net.forward_backward(x, y, mask, lengths=lengths)
    # for a unidirectional net the valid steps do not depend on padding: mask * valid is the same loss
    as_mask = net.forward_backward(x, y, mask * valid)
    assert with_lengths.loss == pytest.approx(as_mask.loss, rel=1e-13)
    for k in as_mask.grads:
        np.testing.assert_allclose(with_lengths.grads[k], as_mask.grads[k], rtol=1e-11, atol=1e-14)


def test_pieces_and_reverse_within():
    assert pieces(np.array([6, 6, 4, 2])) == [(0, 2, 4), (2, 4, 3), (4, 6, 2)]
    assert pieces(np.array([3, 0])) == [(0, 3, 1)]
    a = np.arange(12).reshape(4, 3)
    r = reverse_within(a, np.array([4, 2, 1]))
    np.testing.assert_array_equal(r[:, 0], [9, 6, 3, 0])
    np.testing.assert_array_equal(r[:, 1], [4, 1, 7, 10])              # padding stays where it is
    np.testing.assert_array_equal(reverse_within(r, np.array([4, 2, 1])), a)


def test_readout_last_and_mean_read_the_right_steps():
    rng = np.random.default_rng(3)
    lengths = np.array([2, 5, 3])
    x = rng.standard_normal((5, 3, 2))
    for bidirectional in (False, True):
        kwargs = dict(bidirectional=bidirectional, seed=4)
        per_step = Network(2, 3, None, **kwargs)
        h = per_step.forward(x, lengths=lengths).outputs                 # (T, B, D H), zero when padded
        last = Network(2, 3, None, readout="last", **kwargs).forward(x, lengths=lengths).outputs
        mean = Network(2, 3, None, readout="mean", **kwargs).forward(x, lengths=lengths).outputs
        for b, L in enumerate(lengths):
            expected = h[L - 1, b].copy()
            if bidirectional:
                expected[3:] = h[0, b, 3:]                               # reverse state after reading x_1
            np.testing.assert_allclose(last[b], expected, rtol=1e-14)
            np.testing.assert_allclose(mean[b], h[:L, b].mean(axis=0), rtol=1e-13)


def test_predict_proba_is_softmax_of_the_logits():
    net = Network(4, 5, 6, seed=1)
    x, _, _, _ = random_problem(net, 4, 3, seed=1, token_ids=True)
    p = net.predict_proba(x, lengths=np.array([4, 1, 2]))
    z = net.forward(x, lengths=np.array([4, 1, 2])).outputs
    np.testing.assert_allclose(p[:1, 1], np.exp(z[:1, 1]) / np.exp(z[:1, 1]).sum(-1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(p[0].sum(-1), 1.0, rtol=1e-13)
    assert np.all(p[1:, 1] == 0)
    with pytest.raises(ValueError, match="cross_entropy"):
        Network(2, 3, 2, loss="mse").predict_proba(np.zeros((2, 1, 2)))


# ------------------------------------------------------------------ truncation, trainer
@pytest.mark.parametrize("mode", [Chunked(3), Window(2)])
def test_truncated_loss_and_grads_with_lengths_equals_a_direct_computation(mode):
    """Chunk boundaries (multiples of k) and each output's window (its k last steps) do not depend
    on T, so each sequence alone, unpadded, must give its share of the padded batch's gradient."""
    net = Network(3, 4, 3, cell="lstm", seed=6)
    x, y, mask, _ = random_problem(net, 8, 4, seed=6, token_ids=True)
    lengths = np.array([8, 3, 5, 1])
    loss, grads = net.loss_and_grads(x, y, lengths=lengths, truncation=mode)
    # the same mode on each sequence alone, unpadded: per-sequence gradients, averaged over the batch
    loss_sum, grad_sum = 0.0, {k: np.zeros_like(v) for k, v in net.params.items()}
    for b, L in enumerate(lengths):
        l, g = net.loss_and_grads(x[:L, b:b + 1], y[:L, b:b + 1], truncation=mode)
        loss_sum += l
        for k in g:
            grad_sum[k] += g[k]
    assert loss == pytest.approx(loss_sum / 4, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], grad_sum[k] / 4, rtol=1e-10, atol=1e-13, err_msg=k)


def test_tbptt_with_lengths_equals_the_valid_steps_as_a_mask():
    """TBPTT's windows are placed from T, so compare on the same padded batch: for a unidirectional
    network the valid steps never depend on padding, so lengths must act as the mask of valid steps."""
    net = Network(3, 4, 3, cell="gru", seed=6)
    x, y, _, _ = random_problem(net, 8, 4, seed=6, token_ids=True)
    lengths = np.array([8, 3, 5, 1])
    valid = (np.arange(8)[:, None] < lengths).astype(float)
    loss, grads = net.loss_and_grads(x, y, lengths=lengths, truncation=TBPTT(2, 4))
    loss_m, grads_m = net.loss_and_grads(x, y, valid, truncation=TBPTT(2, 4))
    assert loss == pytest.approx(loss_m, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_m[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_truncation_full_equals_plain_and_chunked_T_equals_full():
    net = Network(3, 4, 3, seed=7)
    x, y, mask, _ = random_problem(net, 6, 2, seed=7, masked=True)
    plain = net.loss_and_grads(x, y, mask)
    for mode in (FullBPTT(), Chunked(6)):
        loss, grads = net.loss_and_grads(x, y, mask, truncation=mode)
        assert loss == pytest.approx(plain[0], rel=1e-13)
        for k in grads:
            np.testing.assert_allclose(grads[k], plain[1][k], rtol=1e-12, atol=1e-15)


def test_truncation_entry_point_validates_like_every_other():
    net = Network(5, 4, 5, seed=0)
    ids = [[0, 1], [2, 3]]                                            # a Python list
    loss, _ = net.loss_and_grads(ids, ids, truncation=Chunked(1))     # accepted, converted
    assert np.isfinite(loss)
    with pytest.raises(ValueError, match="token id 9"):
        net.loss_and_grads([[0, 9]], [[0, 1]], truncation=Chunked(1))
    with pytest.raises(ValueError, match="truncation must be"):
        net.loss_and_grads(ids, ids, truncation="chunked")
    with pytest.raises(ValueError, match="lengths"):
        net.loss_and_grads(ids, ids, lengths=[3, 1], truncation=Chunked(1))


def test_trainer_with_lengths_trains_a_many_to_one_classifier():
    """Sequence classification through the Trainer: is the first symbol of a variable-length
    sequence a 1? (Only the reverse direction's last state and the forward first step see it.)"""
    rng = np.random.default_rng(0)
    net = Network(3, 8, 2, cell="lstm", bidirectional=True, readout="last", seed=0)

    def batch(step):
        r = np.random.default_rng(step)
        lengths = r.integers(2, 9, size=16)
        x = r.integers(1, 3, size=(8, 16))
        x[0] = r.integers(1, 3, size=16)
        x[np.arange(8)[:, None] >= lengths] = 0                      # padding token
        return Batch(x, (x[0] == 1).astype(np.int64), lengths=lengths)

    trainer = Trainer(net, SGD(net.params, lr=0.5))
    first = net.loss_only(batch(10_000).inputs, batch(10_000).targets, lengths=batch(10_000).lengths)
    summaries = [trainer.train_step(batch(s)) for s in range(150)]
    test = batch(10_000)
    last = net.loss_only(test.inputs, test.targets, lengths=test.lengths)
    accuracy = np.mean(net.forward(test.inputs, lengths=test.lengths).outputs.argmax(-1) == test.targets)
    assert summaries[0].tokens == 16                                   # one output per sequence
    assert last < 0.5 * first and accuracy >= 0.9, (first, last, accuracy)
    del rng


# ------------------------------------------------------------------ API traps
def test_params_assignment_copies_into_the_live_array():
    net = Network(3, 4, 2, seed=0)
    x = np.ones((2, 1, 3))
    before = net.forward(x).outputs.copy()
    live = net.params["layers.0.W"]
    net.params["layers.0.W"] = np.zeros((4, 4))
    assert net.params["layers.0.W"] is live and np.all(live == 0)
    assert not np.allclose(net.forward(x).outputs, before)             # the layer computes with it
    with pytest.raises(ValueError, match=r"'layers.0.W' must have shape \(4, 4\), got \(4, 3\)"):
        net.params["layers.0.W"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match="float array"):
        net.params["layers.0.W"] = np.zeros((4, 4), dtype=object)
    with pytest.raises(KeyError, match="no parameter 'layers.0.Q'"):
        net.params["layers.0.Q"] = np.zeros(3)


def test_state_dict_round_trip_and_strictness():
    a, b = Network(3, 4, 2, cell="gru", seed=0), Network(3, 4, 2, cell="gru", seed=1)
    state = a.state_dict()
    state["V"][...] = 7.0                                               # a copy: a is untouched
    assert not np.all(a.params["V"] == 7.0)
    assert b.load_state_dict(a.state_dict()) == ([], [])
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    bad = a.state_dict()
    del bad["c"]
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['c'\] and unexpected \['extra'\]"):
        b.load_state_dict(bad)
    assert b.load_state_dict(bad, strict=False) == (["c"], ["extra"])
    wrong = a.state_dict()
    wrong["layers.0.W"] = np.zeros((2, 2))
    before = b.params["V"].copy()
    b.params["V"][...] += 1
    snapshot = {k: v.copy() for k, v in b.params.items()}
    with pytest.raises(ValueError, match=r"'layers.0.W' must have shape \(12, 4\), got \(2, 2\)"):
        b.load_state_dict(wrong)
    for k in snapshot:                                                  # nothing copied when one is wrong
        np.testing.assert_array_equal(b.params[k], snapshot[k])
    ints = a.state_dict()
    ints["c"] = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="'c' must be a float array"):
        b.load_state_dict(ints)
    del before


def test_readout_bias_is_independent():
    net = Network(3, 4, 2, bias=False, readout_bias=True)
    assert "c" in net.params and "layers.0.b" not in net.params
    net = Network(3, 4, 2, bias=True, readout_bias=False)
    assert "c" not in net.params and "layers.0.b" in net.params
    assert Network(3, 4, 2, bias=False).config["readout_bias"] is False
    x, y, _, h0 = random_problem(net, 4, 2)
    assert worst(check_network(net, x, y, None, h0)) < TOL


@pytest.mark.parametrize("kwargs,message", [
    (dict(tie_weights=True), "needs an embedding"),
    (dict(embedding_size=4, tie_weights=True), r"embedding_size == the top layer's output width \(hidden_size = 3\), got embedding_size=4"),
    (dict(embedding_size=3, tie_weights=True, output_size=4), r"output_size == input_size"),
    (dict(embedding_size=0), "embedding_size must be >= 1, got 0"),
    (dict(readout="first"), "readout must be one of"),
    (dict(readout_bias="yes"), "readout_bias must be True, False or None"),
    (dict(tie_weights=1), "tie_weights must be True or False"),
])
def test_bad_network_options_name_the_value(kwargs, message):
    options = dict(input_size=5, hidden_size=3, output_size=5)
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Network(**options)


@pytest.mark.parametrize("lengths,message", [
    ([0, 3], r"lengths\[0\] = 0 is outside \[1, 4\]"),
    ([2, 5], r"lengths\[1\] = 5 is outside \[1, 4\] \(the padded length T = 4\)"),
    ([2, 3, 4], r"lengths must have shape \(2,\) \(one length per sequence\), got \(3,\)"),
    ([[2, 3]], r"lengths must have shape \(2,\)"),
    ([2.0, 3.0], "lengths must be an integer array of shape"),
    ([True, True], "lengths must be an integer array"),
])
def test_bad_lengths_name_the_value(lengths, message):
    net = Network(3, 4, 2)
    x = np.zeros((4, 2, 3))
    y = np.zeros((4, 2), dtype=int)
    for call in (lambda: net.forward(x, lengths=lengths), lambda: net.loss_and_grads(x, y, lengths=lengths),
                 lambda: net.forward_backward(x, y, lengths=lengths)):
        with pytest.raises(ValueError, match=message):
            call()


def test_input_messages_that_help():
    net = Network(3, 4, 2)
    with pytest.raises(ValueError, match=r"integer inputs are token ids of shape \(T, B\).*pass float one-hot"):
        net.forward(np.zeros((2, 1, 3), dtype=np.int64))
    emb = Network(3, 4, 2, embedding_size=2)
    with pytest.raises(ValueError, match=r"must be integer token ids .*\(embedding_size=2\)"):
        emb.forward(np.zeros((2, 1, 3)))
    last = Network(3, 4, 2, readout="last")
    with pytest.raises(ValueError, match=r"targets must have shape \(1,\), got \(2, 1\)"):
        last.forward_backward(np.zeros((2, 1, 3)), np.zeros((2, 1), dtype=int))


@pytest.mark.parametrize("options", [dict(embedding_size=4, tie_weights=True, cell="lstm"),
                                     dict(embedding_size=3, readout="last", bidirectional=True, cell="gru"),
                                     dict(readout="mean", bias=False, readout_bias=True)])
def test_checkpoint_round_trip_keeps_the_new_options(tmp_path, options):
    from bptt.io.checkpoint import load_checkpoint, save_checkpoint
    net = Network(6, 4, 6, seed=3, **options)
    path = save_checkpoint(str(tmp_path / "c.npz"), net)
    back = load_checkpoint(path).network()
    assert back.config == net.config
    for k in net.params:
        np.testing.assert_array_equal(back.params[k], net.params[k])
    if net.tie_weights:
        assert back.readout.params["V"] is back.params["embedding"]
    x = np.random.default_rng(0).integers(0, 6, (5, 2))
    lengths = np.array([5, 2])
    np.testing.assert_array_equal(back.forward(x, lengths=lengths).outputs, net.forward(x, lengths=lengths).outputs)


def test_dropout_with_lengths_finite_differences():
    net = Network(3, 4, 3, num_layers=3, cell="lstm", bidirectional=True, dropout=0.3, seed=8)
    x, y, mask, h0 = random_problem(net, 6, 4, seed=8)
    assert worst(check_network(net, x, y, mask, h0, lengths=random_lengths(4, 6, seed=8))) < TOL


def test_gradient_flow_by_lag_with_lengths():
    """contribution_norms with lengths: rows t >= L_b carry no loss for sequence b, so (for a
    unidirectional network) the table equals the one for the mask of valid steps."""
    from bptt import diagnostics as D
    net = Network(3, 4, 3, num_layers=2, seed=9)
    x, y, _, h0 = random_problem(net, 6, 3, seed=9)
    lengths = np.array([6, 2, 4])
    valid = (np.arange(6)[:, None] < lengths).astype(float)
    with_lengths = D.contribution_norms(net, x, y, "W", h0=h0, lengths=lengths)
    as_mask = D.contribution_norms(net, x, y, "W", mask=valid, h0=h0)
    np.testing.assert_allclose(with_lengths, as_mask, rtol=1e-12, equal_nan=True)
    plain = D.contribution_norms(net, x, y, "W", h0=h0)
    assert not np.allclose(with_lengths[5], plain[5], equal_nan=True)   # lengths changed the last row


def test_array_batches_carry_lengths_to_the_trainer():
    from bptt.data import ArrayBatches, pad_sequences
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 4, size=n) for n in (5, 2, 7, 3)]
    x, mask = pad_sequences(seqs)
    lengths = mask.sum(axis=0).astype(int)
    data = ArrayBatches(x, x, batch=2, seed=0, lengths=lengths)
    batch = data.batch(0)
    assert batch.lengths is not None and batch.lengths.shape == (2,)
    for b in range(2):
        column = int(np.flatnonzero((x == batch.inputs[:, b:b + 1]).all(axis=0) & (lengths == batch.lengths[b]))[0])
        assert lengths[column] == batch.lengths[b]
    with pytest.raises(ValueError, match=r"lengths\[0\] = 9 is outside \[1, 7\]"):
        ArrayBatches(x, x, lengths=[9, 1, 1, 1])
    net = Network(4, 5, 4, bidirectional=True, seed=0)
    summary = Trainer(net, SGD(net.params, lr=0.1)).train_step(batch)
    assert summary.tokens == batch.lengths.sum()


def test_weight_dropout_dropconnect_on_W():
    """DropConnect on W (AWD-LSTM): one mask per forward pass, net.params untouched, exact gradients for
    the drawn mask, nothing at evaluation."""
    for cell in ("rnn", "lstm", "gru"):
        net = Network(4, 5, 3, num_layers=2, cell=cell, bidirectional=True, weight_dropout=0.4, seed=3)
        x, y, mask, h0 = random_problem(net, 6, 3, seed=4, masked=True)
        assert worst(check_network(net, x, y, mask, h0, lengths=random_lengths(3, 6, seed=5))) < TOL
        W = net.params["layers.1.W_reverse"].copy()
        fwd = net.forward(x, h0)
        assert set(fwd.weight_masks) == {"layers.0.W", "layers.0.W_reverse", "layers.1.W", "layers.1.W_reverse"}
        m = fwd.weight_masks["layers.0.W"]
        assert set(np.unique(m)) == {0.0, 1 / 0.6} and 0.2 < np.mean(m == 0) < 0.6      # p = 0.4 of 100 entries
        np.testing.assert_array_equal(net.params["layers.1.W_reverse"], W)          # the live array is untouched
        assert not np.array_equal(net.forward(x, h0).weight_masks["layers.0.W"], m)  # a new mask per pass
        net.eval()
        assert net.forward(x, h0).weight_masks is None
    with pytest.raises(ValueError, match=r"weight_dropout must be in \[0, 1\), got 1.0"):
        Network(3, 4, 2, weight_dropout=1.0)
