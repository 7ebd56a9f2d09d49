"""Text reading, vocabularies, parallel streams, array batches, padding with masks."""

import numpy as np
import pytest

from bptt.data import (ArrayBatches, TextStreams, Vocabulary, eval_loss_per_token, pad_sequences, read_text,
                       split_ids)
from bptt.network import Network


def test_read_text_utf8_bom_and_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffh\u00e9llo".encode("utf-8"))
    assert read_text(good) == "h\u00e9llo"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("h\u00e9llo".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text \(byte 0xe9 at offset 1\)"):
        read_text(bad)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        read_text(empty)
    with pytest.raises(OSError):
        read_text(tmp_path / "missing.txt")


def test_char_vocabulary_sorted_deterministic_and_lossless():
    text = "hello world\nthe end"
    v = Vocabulary.build(text)
    assert v.tokens == sorted(set(text))
    assert Vocabulary.build(text[::-1]) == v                 # order of appearance does not matter
    ids = v.encode(text)
    assert ids.dtype == np.int64 and v.decode(ids) == text
    assert Vocabulary.from_json(v.to_json()) == v
    with pytest.raises(ValueError, match=r"2 characters not in the model's vocabulary: 'Z', 'q'"):
        v.encode("hello Zq")
    with pytest.raises(ValueError, match="ids must be in"):
        v.decode([len(v)])


def test_word_vocabulary_unknown_token_and_max_size():
    text = "the cat sat on the mat. the cat ran!"
    v = Vocabulary.build(text, "word")
    assert v.decode(v.encode(text)) == text                   # detokenised: spaces restored
    small = Vocabulary.build(text, "word", max_size=4)
    assert small.tokens[0] == "<unk>" and len(small) == 4
    assert small.tokens[1:] == sorted(small.tokens[1:])
    assert set(small.tokens[1:]) == {"the", "cat", "!"}       # the 3 most frequent (ties: "!" < ".")
    ids = small.encode("the dog")
    assert small.decode(ids) == "the <unk>"
    with pytest.raises(ValueError, match="token not in the model's vocabulary: 'dog'"):
        v.encode("the dog")


def test_split_and_streams_layout():
    ids = np.arange(100)
    train, val = split_ids(ids, 0.1)
    assert len(val) == 10 and np.array_equal(np.concatenate([train, val]), ids)
    data = TextStreams(train, batch=3, seq_len=4)            # 30 per stream -> (30-1)//4 = 7 batches
    assert data.batches_per_epoch == 7
    b0, b1 = data.batch(0), data.batch(1)
    assert b0.reset and not b1.reset
    assert b0.inputs.shape == (4, 3)
    np.testing.assert_array_equal(b0.inputs[:, 1], [30, 31, 32, 33])        # stream 1 starts at 30
    np.testing.assert_array_equal(b0.targets, b0.inputs + 1)                 # next token
    np.testing.assert_array_equal(b1.inputs[0], b0.inputs[-1] + 1)           # batch 1 continues batch 0
    assert data.batch(7).reset and np.array_equal(data.batch(7).inputs, b0.inputs)   # next epoch
    with pytest.raises(ValueError, match="the text is too short"):
        TextStreams(np.arange(10), batch=4, seq_len=4)
    with pytest.raises(ValueError, match="val_fraction must be < 1"):
        split_ids(ids, 1.0)


def test_array_batches_are_a_seeded_function_of_the_step():
    x = np.random.default_rng(0).standard_normal((5, 10, 2))
    y = np.arange(50).reshape(5, 10) % 3
    mask = np.ones((5, 10))
    a = ArrayBatches(x, y, mask, batch=4, seed=1)
    b = ArrayBatches(x, y, mask, batch=4, seed=1)
    assert a.batches_per_epoch == 2
    for step in range(5):
        np.testing.assert_array_equal(a.batch(step).inputs, b.batch(step).inputs)
    epoch0 = np.concatenate([a.batch(0).targets[0], a.batch(1).targets[0]])
    assert len(set(epoch0.tolist())) <= 3 and a.batch(0).inputs.shape == (5, 4, 2)
    assert not np.array_equal(a.batch(0).inputs, a.batch(2).inputs)          # reshuffled next epoch
    with pytest.raises(ValueError, match="mask must have shape"):
        ArrayBatches(x, y, np.ones((5, 9)))


def test_pad_sequences_with_mask_gives_the_unpadded_loss():
    net = Network(4, 5, 4, seed=1)
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 4, n) for n in (3, 6, 1)]
    inputs, mask = pad_sequences([s[:-1] if len(s) > 1 else s for s in seqs])
    assert inputs.shape == (5, 3) and mask.sum() == 2 + 5 + 1
    targets, _ = pad_sequences([s[1:] if len(s) > 1 else s for s in seqs])
    padded = net.loss_only(inputs, targets, mask)
    # each sequence alone (B=1), averaged over the batch of 3 as the loss convention says
    alone = sum(net.loss_only(inputs[:int(mask[:, b].sum()), b:b + 1], targets[:int(mask[:, b].sum()), b:b + 1])
                for b in range(3)) / 3
    assert padded == pytest.approx(alone, rel=1e-12)
    with pytest.raises(ValueError, match="at least one step"):
        pad_sequences([np.array([1]), np.array([], int)])


def test_eval_loss_per_token_of_an_untrained_model_is_near_log_vocab():
    net = Network(20, 8, 20, seed=0)
    ids = np.random.default_rng(0).integers(0, 20, 2000)
    loss = eval_loss_per_token(net, ids, batch=4, seq_len=50)
    assert abs(loss - np.log(20)) < 0.1
    # equals the direct computation on one stream
    direct = net.loss_only(ids[:-1, None][:1999], ids[1:, None][:1999]) / 1999
    one = eval_loss_per_token(net, ids, batch=1, seq_len=300)
    assert one == pytest.approx(direct, rel=1e-10)
