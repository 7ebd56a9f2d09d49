"""Resources are counted and refused up front (bptt.training.memory), texts become compact ids
(bptt.textcodes), and sampling streams (bptt.sample.iter_sample_text)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bptt.data import Vocabulary
from bptt.network import Network
from bptt.textcodes import build_char_vocabulary, encode_compact, token_dtype
from bptt.training.memory import parameter_counts, refuse_if_too_big, run_needs, text_byte_limit


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (3, False), (2, True)])
def test_the_parameter_count_is_the_networks(cell, layers, bidirectional):
    net = Network(7, 5, 11, num_layers=layers, cell=cell, bidirectional=bidirectional, dtype="float32")
    count, largest = parameter_counts(cell, 7, 5, layers, 11, bidirectional)
    assert count == sum(p.size for p in net.params.values())
    assert largest == max(p.size for p in net.params.values())


def test_the_run_count_has_every_part_and_adam_doubles_the_slots():
    needs = run_needs(cell="lstm", vocab=65, hidden=512, layers=2, seq_len=100, batch=50, dtype="float32",
                      optimizer="adam", chars=10**6)
    count, largest = parameter_counts("lstm", 65, 512, 2, 65)
    assert needs["weights"] == needs["gradients"] == 4 * count
    assert needs["optimizer slots"] == 2 * 4 * count and needs["init draws"] == 8 * largest
    assert needs["activations"] == 100 * 50 * 4 * (2 * 512 * (3 * 4 + 4) + 3 * 65)
    assert needs["text"] == 8 * 10**6
    sgd = run_needs(cell="lstm", vocab=65, hidden=512, layers=2, seq_len=100, batch=50, dtype="float64",
                    optimizer="sgd")
    assert sgd["optimizer slots"] == 0 and sgd["weights"] == 8 * count and sgd["text"] == 0


def test_a_run_that_cannot_fit_is_refused_with_the_figure():
    needs = {"weights": 3 * 2**30, "init draws": 6 * 2**30, "text": 0}
    with pytest.raises(ValueError, match=r"this run needs about 9\.0 GiB of memory \(init draws 6\.0 GiB, weights "
                                         r"3\.0 GiB\), more than this machine's 8\.0 GiB"):
        refuse_if_too_big(needs, "this run", memory=8 * 2**30)
    refuse_if_too_big(needs, "this run", memory=10 * 2**30)          # fits: nothing


def test_the_text_limit_follows_memory():
    assert text_byte_limit("char", memory=64 * 2**30) == 512 * 2**20
    assert text_byte_limit("char", memory=2 * 2**30) == 256 * 2**20
    assert text_byte_limit("word", memory=2 * 2**30) == 64 * 2**20


@settings(derandomize=True, max_examples=60, deadline=None, database=None)
@given(st.text(min_size=1, max_size=300))
def test_compact_ids_equal_the_vocabularys(text):
    vocab = Vocabulary.build(text, "char")
    assert build_char_vocabulary(text) == vocab
    ids = encode_compact(vocab, text)
    assert ids.dtype == token_dtype(len(vocab)) and np.array_equal(ids, vocab.encode(text))


def test_compact_dtypes_and_chunks(monkeypatch):
    import bptt.textcodes as codes

    monkeypatch.setattr(codes, "CHUNK", 7)                          # many chunks, one text
    text = "".join(chr(0x100 + i) for i in range(300)) * 3 + "abc"
    vocab = build_char_vocabulary(text)
    ids = encode_compact(vocab, text)
    assert ids.dtype == np.uint16 and np.array_equal(ids, vocab.encode(text))
    assert token_dtype(256) == np.uint8 and token_dtype(257) == np.uint16 and token_dtype(70_000) == np.int32
    with pytest.raises(ValueError, match=r"1 character not in the model's vocabulary: 'z'"):
        encode_compact(vocab, "abcz")


def test_sampling_streams_the_same_text():
    from bptt.sample import iter_sample_text, sample_ids, sample_text

    vocab = Vocabulary.build("hello world\n", "char")
    net = Network(len(vocab), 8, len(vocab), seed=3)
    pieces = list(iter_sample_text(net, vocab, 50, prime="he", seed=5, chunk=7))
    assert [len(p) for p in pieces] == [2] + [7] * 7 + [1]
    ids = sample_ids(net, 50, prime_ids=vocab.encode("he"), seed=5, start_id=vocab.index["\n"])
    assert "".join(pieces) == "he" + vocab.decode(ids) == sample_text(net, vocab, 50, prime="he", seed=5)
