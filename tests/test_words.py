"""Word level reads like words: whitespace is never a token, punctuation is split by the documented
rule, and tokenize -> detokenize gives ordinary text back (sampling included)."""

import json

import numpy as np
import pytest

import bptt
from bptt.data import EOL, Vocabulary, detokenize, tokenize
from bptt.sample import sample_ids, sample_text

PROSE = ('The cat sat on the mat. It didn\'t move (not once), then said: "hello, world!"\n'
         "A well-known fact; 3.14 is pi? [Yes] 10,000 items cost $5 -- or 50%.\n"
         "\n"
         "New paragraph... and 'quoted' words, with dots at the end.")

ORDINARY = [
    PROSE,
    "One line without an end",
    "Wait!!! Really?? Yes: 12:30, in the U.K. (near London).\n",
    'He said "no" and left.\nShe said "yes", twice.',
    "x",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_round_trips(text):
    tokens = tokenize(text, "word")
    assert detokenize(tokens) == text
    vocab = Vocabulary.build(text, "word")
    assert vocab.decode(vocab.encode(text)) == text
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))   # as stored in a checkpoint
    assert again == vocab and again.word_rule == "simple" and again.decode(vocab.encode(text)) == text


def test_the_rule_splits_punctuation_and_keeps_words_whole():
    assert tokenize(PROSE, "word")[:24] == [
        "The", "cat", "sat", "on", "the", "mat", ".", "It", "didn't", "move", "(", "not", "once", ")", ",",
        "then", "said", ":", '"', "hello", ",", "world", "!", '"']
    assert tokenize("a well-known 3.14, 10,000... done--ok", "word") == [
        "a", "well-known", "3.14", ",", "10,000", "...", "done", "--", "ok"]
    assert tokenize("two\n\nlines\r\nend", "word") == ["two", EOL, EOL, "lines", EOL, "end"]
    ptb = " the <unk> fell N points \n"                          # a Penn Treebank line, as the files have it
    assert tokenize(ptb, "word") == ["the", "<unk>", "fell", "N", "points", EOL]
    assert tokenize("in the U.K., e.g. here", "word") == ["in", "the", "U.K.", ",", "e.g.", "here"]


def test_no_whitespace_token_in_the_vocabulary():
    from bptt.corpus import builtin_text

    text = builtin_text()[:60000] + "\t tabs\u00a0and\u2003odd spaces \r\n"
    vocab = Vocabulary.build(text, "word")
    assert EOL in vocab.tokens
    assert not [t for t in vocab.tokens if not t or any(c.isspace() for c in t)]
    assert vocab.tokens == sorted(vocab.tokens)
    capped = Vocabulary.build(text, "word", max_size=50)
    assert not [t for t in capped.tokens if any(c.isspace() for c in t)]
    with pytest.raises(ValueError, match="no words"):
        Vocabulary.build(" \t ", "word")


def test_spacing_is_normalised_not_kept():
    # indentation and runs of spaces are not tokens: the text comes back with single spaces
    assert detokenize(tokenize("  indented   words ,here", "word")) == "indented words, here"


def test_old_word_vocabularies_keep_their_lossless_rule():
    saved = {"level": "word", "tokens": [" ", ".", "a", "b"], "unk": None}    # as written before the simple rule
    vocab = Vocabulary.from_json(saved)
    assert vocab.word_rule == "lossless"
    assert vocab.decode(vocab.encode("a b. a")) == "a b. a"


def test_word_samples_are_detokenised():
    text = "the cat sat on the mat.\nthe dog ran to the cat!\n" * 20
    vocab = Vocabulary.build(text, "word")
    net = bptt.Network(len(vocab), 16, len(vocab), seed=3)
    sample = sample_text(net, vocab, 60, seed=1)
    tokens = [vocab.tokens[i] for i in sample_ids(net, 60, seed=1, start_id=vocab.index[EOL])]  # the same draw
    assert EOL in tokens and "<eol>" not in sample and "  " not in sample and " ." not in sample
    assert sample.count("\n") == tokens.count(EOL)                 # every <eol> the model wrote is a newline
    assert sample.split() == [t for t in detokenize(tokens).split()] and len(sample.split()) > 10
    assert sample == detokenize(tokens)
    primed = sample_text(net, vocab, 5, prime="the cat", seed=1)
    generated = primed[len("the cat"):]
    assert primed.startswith("the cat")
    first = vocab.tokens[int(vocab.encode(generated)[0])] if generated.strip() else EOL
    assert generated[:1] in ("\n", " ") or first in ".!"           # spaced after the prime unless punctuation


def test_vocab_must_be_a_vocabulary():
    from bptt.io.checkpoint import save_checkpoint

    net = bptt.Network(3, 4, 3, seed=0)
    with pytest.raises(TypeError, match="vocab must be a bptt.data.Vocabulary .*got list"):
        sample_text(net, ["a", "b", "c"], 5)
    with pytest.raises(TypeError, match="vocab must be a bptt.data.Vocabulary .*got list"):
        save_checkpoint("never-written", net, vocab=["a", "b", "c"])
    import os
    assert not os.path.exists("never-written")


def test_word_level_training_from_the_cli(tmp_path, capsys):
    from bptt.cli import main
    from bptt.io.checkpoint import load_checkpoint

    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat. The dog ran, fast!\n" * 30, encoding="utf-8")
    assert main(["train", "--text", str(path), "--level", "word", "--steps", "3", "--hidden", "8", "--seq-len", "8",
                 "--batch", "2", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    vocab = load_checkpoint(tmp_path / "run").vocabulary()
    assert vocab.word_rule == "simple" and not [t for t in vocab.tokens if t.isspace()]
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--length", "30", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "<eol>" not in out and "  " not in out and " ." not in out and " ," not in out
    words = [chunk.rstrip(",.!") for chunk in out.split()]        # punctuation attached to the word before it
    assert len(words) >= 10 and all(w in vocab.index for w in words if w)
