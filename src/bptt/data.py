"""Data for training: text read as UTF-8, vocabularies, batches of parallel streams, masks.

    text   = read_text("input.txt")                  # UTF-8 or a clear ValueError (empty file too)
    vocab  = Vocabulary.build(text, level="char")    # sorted, deterministic; saved with the model
    ids    = vocab.encode(text)                      # (N,) int; unknown characters -> ValueError naming them
    train, val = split_ids(ids, val_fraction=0.05)   # the last 5% is the validation text
    data   = TextStreams(train, batch=32, seq_len=64)
    batch  = data.batch(step)                        # inputs (T, B), targets (T, B) = next tokens

``TextStreams`` is char-rnn's layout: the token stream is cut into B equal contiguous
streams, and batch i holds positions [iT, (i+1)T) of every stream, so the hidden state
at the end of batch i is the right start for batch i+1 (``Batch.reset`` is False except
at the start of each epoch). ``batch(step)`` depends on the step number only, so a
resumed run sees exactly the batches an uninterrupted run would.

Word level (``level="word"``) splits like a standard simple tokenizer (the rule is
``WORD_RULE``): a word is a run of letters, digits and underscores, kept whole across an
inner apostrophe or hyphen ("don't", "well-known"); a number keeps its inner "." "," ":"
("3.14", "10,000"); an abbreviation of single letters with dots is one token ("U.K.", "e.g."), and so is a marker
in angle brackets ("<unk>", as in the Penn Treebank files);
every other visible character is a token of its own ("(", ",", "!"), a
run of the same one a single token ("...", "--");
spaces and tabs are not tokens; each line break is the token ``EOL`` (``"<eol>"``, the
Penn Treebank language models' end-of-line marker), so a blank line is two. ``detokenize``
joins tokens with one space, none before closing punctuation (``. , ; : ! ? ) ] } % ...``) or
after opening brackets, quotes paired per line, ``EOL`` back to a newline: ordinary
prose round-trips exactly; indentation and runs of spaces do not.

``ArrayBatches`` serves fixed arrays (inputs, targets, mask) as minibatches along the
batch axis, reshuffled each epoch by a seeded generator; ``pad_sequences`` turns
variable-length sequences into a (T, B) array plus a mask.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from . import validation as check
from .losses import softmax_cross_entropy
from .training.train import Batch

LEVELS = ("char", "word")
WORD_RULES = ("simple", "lossless")
EOL = "<eol>"                                        # a line break at word level
# The word rule, first match wins: a marker like <unk> | an abbreviation of single letters and dots | a number with inner . , : | a word with inner ' or - |
# any other visible character (a run of the same one, "..." or "--", is one token).
# Whitespace matches nothing (line breaks are handled before: each becomes EOL).
WORD_RULE = r"<\w+>|(?:[^\W\d_]\.){2,}|\d+(?:[.,:]\d+)+|\w+(?:['\u2019-]\w+)*|([^\w\s])\1*"
_WORD_RE = re.compile(WORD_RULE)
# Vocabularies saved before the simple rule kept whitespace runs as tokens ("".join(tokens) ==
# text); their checkpoints still load and decode with that rule ("lossless").
_LOSSLESS_RE = re.compile(r"\w+|\s+|[^\w\s]")
CLOSING = ".,;:!?)]}%\u2019\u201d\u00bb"           # no space before these (or a run of one: "...")
OPENING = "([{$#\u2018\u201c\u00ab"                # no space after these
_QUOTES = {'"', "'", "`"}                            # the same mark opens and closes: paired per line


def read_text(path, max_bytes: int | None = None) -> str:
    """The whole file as text; ValueError if it is not UTF-8, binary, empty, not a regular file (a FIFO,
    a device) or larger than ``max_bytes`` (bptt.io.files.MAX_TEXT_BYTES), OSError if it cannot be read."""
    from .io.files import MAX_TEXT_BYTES, read_text_file     # the one bounded reader (bptt.io.files)

    return read_text_file(path, MAX_TEXT_BYTES if max_bytes is None else max_bytes)


def tokenize(text: str, level: str, word_rule: str = "simple") -> list:
    """Tokens of ``text``: its characters (``"char"``), or its words, punctuation and ``EOL``
    for each line break (``"word"``, the rule in the module docstring)."""
    if level == "char":
        return list(text)
    if word_rule == "lossless":
        return _LOSSLESS_RE.findall(text)
    tokens = []
    for i, line in enumerate(text.replace("\r\n", "\n").split("\n")):
        if i:
            tokens.append(EOL)
        tokens += [match.group(0) for match in _WORD_RE.finditer(line)]
    return tokens


def _run_of(token: str, marks: str) -> bool:
    return token[:1] in marks and token == token[0] * len(token)


def closes(token: str) -> bool:
    """Whether ``token`` is closing punctuation, written without a space before it."""
    return _run_of(token, CLOSING)


def detokenize(tokens, level: str = "word", word_rule: str = "simple") -> str:
    """Text from tokens: the inverse of ``tokenize`` on ordinary prose (words separated by one
    space, punctuation attached, no indentation). Char level (and the legacy lossless word
    rule) simply joins."""
    tokens = list(tokens)
    if level == "char" or word_rule == "lossless":
        return "".join(tokens)
    out, glue, open_quote = [], True, False          # glue: no space before the next token
    for token in tokens:
        if token == EOL:
            out.append("\n")
            glue, open_quote = True, False
            continue
        if token in _QUOTES:
            opening = not open_quote
            open_quote = opening
            if not (glue or not opening):
                out.append(" ")
            out.append(token)
            glue = opening                           # an opening quote sticks to what follows
            continue
        if not glue and not closes(token):
            out.append(" ")
        out.append(token)
        glue = _run_of(token, OPENING)
    return "".join(out)


class Vocabulary:
    """Tokens <-> ids. Sorted, so the same text always gives the same ids.

    Word level may keep only the ``max_size`` most frequent tokens (ties broken
    alphabetically, then sorted); the rest map to ``unk`` (id 0), as in the WildML tutorial.
    ``word_rule`` is how words are split: ``"simple"`` (the module docstring's rule; what
    ``build`` uses) or ``"lossless"`` (whitespace runs as tokens: vocabularies saved before)."""

    def __init__(self, tokens, level: str = "char", unk: str | None = None, word_rule: str = "simple"):
        self.level = check.one_of("level", level, LEVELS)
        self.word_rule = check.one_of("word_rule", word_rule, WORD_RULES)
        tokens = list(tokens)
        if not tokens:
            raise ValueError("a vocabulary needs at least one token")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.tokens = tokens
        self.unk = unk
        if unk is not None and tokens[0] != unk:
            raise ValueError(f"the unknown token {unk!r} must be token 0")
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, text: str, level: str = "char", max_size: int | None = None, unk: str = "<unk>") -> "Vocabulary":
        level = check.one_of("level", level, LEVELS)
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        counts = Counter(tokenize(text, level))
        if not counts:
            raise ValueError("text has no words (only whitespace); use level='char' or a longer text")
        if max_size is None or len(counts) <= max_size:
            return cls(sorted(counts), level)
        max_size = check.positive_int("max_size", max_size)
        if max_size < 2:
            raise ValueError(f"max_size must be >= 2 (one slot is the unknown token), got {max_size}")
        kept = sorted(counts, key=lambda t: (-counts[t], t))[:max_size - 1]
        return cls([unk] + sorted(kept), level, unk)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (N,) as int64. Unknown tokens: ``unk`` if the vocabulary has one, else a
        ValueError that names them."""
        tokens = tokenize(text, self.level, self.word_rule)
        if self.unk is not None:
            return np.array([self.index.get(t, 0) for t in tokens], np.int64)
        try:
            return np.array([self.index[t] for t in tokens], np.int64)
        except KeyError:
            unknown = sorted({t for t in tokens if t not in self.index})
            shown = ", ".join(repr(t) for t in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            kind = "character" if self.level == "char" else "token"
            raise ValueError(f"text has {len(unknown)} {kind}{'s' if len(unknown) > 1 else ''} not in the "
                             f"model's vocabulary: {shown}") from None

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.tokens)):
            raise ValueError(f"ids must be in [0, {len(self.tokens)}), got {int(ids.min())}..{int(ids.max())}")
        return detokenize((self.tokens[int(i)] for i in ids.ravel()), self.level, self.word_rule)

    def to_json(self) -> dict:
        data = {"level": self.level, "tokens": self.tokens, "unk": self.unk}
        if self.level == "word":
            data["word_rule"] = self.word_rule
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        if not isinstance(data, dict) or "tokens" not in data:
            raise ValueError("vocabulary must be a dict with 'tokens'")
        # a word vocabulary saved without a rule predates the simple one: it kept whitespace tokens
        level = data.get("level", "char")
        return cls(data["tokens"], level, data.get("unk"),
                   data.get("word_rule", "lossless" if level == "word" else "simple"))

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.to_json() == other.to_json()


def require_vocabulary(vocab, name: str = "vocab") -> "Vocabulary":
    """``vocab`` itself if it is a Vocabulary, else a TypeError naming the argument (a list of
    tokens is the usual mistake: wrap it as Vocabulary(tokens) or use Vocabulary.build(text))."""
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"{name} must be a bptt.data.Vocabulary (Vocabulary.build(text) or Vocabulary(tokens)), "
                        f"got {type(vocab).__name__}")
    return vocab


def split_ids(ids: np.ndarray, val_fraction: float = 0.05):
    """(train, validation): the validation part is the last ``val_fraction`` of the stream
    (contiguous, so it is text the model never saw; 0 gives an empty validation part)."""
    val_fraction = check.positive_float("val_fraction", val_fraction, allow_zero=True)
    if val_fraction >= 1:
        raise ValueError(f"val_fraction must be < 1, got {val_fraction}")
    n_val = int(round(len(ids) * val_fraction))
    return ids[:len(ids) - n_val], ids[len(ids) - n_val:]


class TextStreams:
    """B parallel contiguous streams of a token sequence, served T steps at a time."""

    def __init__(self, ids, batch: int, seq_len: int):
        self.batch_size = check.positive_int("batch", batch)
        self.seq_len = check.positive_int("seq_len", seq_len)
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
        per_stream = len(ids) // self.batch_size
        self.batches_per_epoch = (per_stream - 1) // self.seq_len
        if self.batches_per_epoch < 1:
            raise ValueError(f"the text is too short: {len(ids)} tokens give {per_stream} per stream for "
                             f"batch={self.batch_size}, fewer than seq_len+1={self.seq_len + 1}; "
                             f"use a smaller --batch or --seq-len")
        # (B, per_stream): row b is stream b
        self.streams = np.ascontiguousarray(ids[:per_stream * self.batch_size].reshape(self.batch_size, per_stream))

    @property
    def tokens_per_epoch(self) -> int:
        return self.batches_per_epoch * self.seq_len * self.batch_size

    def batch(self, step: int) -> Batch:
        i = step % self.batches_per_epoch
        t0 = i * self.seq_len
        chunk = self.streams[:, t0:t0 + self.seq_len + 1].T            # (T+1, B)
        return Batch(np.ascontiguousarray(chunk[:-1]), np.ascontiguousarray(chunk[1:]), None, reset=(i == 0))

    def __iter__(self):
        """One epoch, in order."""
        for step in range(self.batches_per_epoch):
            yield self.batch(step)


class ArrayBatches:
    """Minibatches along the batch axis of fixed arrays, reshuffled every epoch (seeded by
    (seed, epoch), so ``batch(step)`` needs no saved state)."""

    def __init__(self, inputs, targets, mask=None, batch: int = 32, seed: int = 0, shuffle: bool = True,
                 lengths=None):
        self.inputs, self.targets, self.mask = np.asarray(inputs), np.asarray(targets), mask
        self.lengths = None if lengths is None else np.asarray(lengths)     # (B,): packed sequences
        n = self.inputs.shape[1] if self.inputs.ndim >= 2 else 0
        if n == 0 or np.shape(targets)[:2] != self.inputs.shape[:2]:
            raise ValueError(f"inputs and targets must share (T, B) with B >= 1, got {self.inputs.shape} and "
                             f"{np.shape(targets)}")
        if mask is not None and np.shape(mask) != self.inputs.shape[:2]:
            raise ValueError(f"mask must have shape {self.inputs.shape[:2]}, got {np.shape(mask)}")
        if self.lengths is not None:
            check.lengths_array("lengths", self.lengths, n, self.inputs.shape[0])
        self.batch_size = min(check.positive_int("batch", batch), n)
        self.n, self.seed, self.shuffle = n, int(seed), bool(shuffle)
        self.batches_per_epoch = n // self.batch_size

    def batch(self, step: int) -> Batch:
        epoch, i = divmod(step, self.batches_per_epoch)
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        pick = order[i * self.batch_size:(i + 1) * self.batch_size]
        mask = None if self.mask is None else np.asarray(self.mask)[:, pick]
        lengths = None if self.lengths is None else self.lengths[pick]
        return Batch(self.inputs[:, pick], self.targets[:, pick], mask, reset=True, lengths=lengths)


def pad_sequences(sequences, pad_value=0, dtype=None):
    """Variable-length sequences (each (T_b,) ids or (T_b, I) features) -> (T_max, B[, I]) array and a
    (T_max, B) 0/1 mask (1 on real steps). The mask is enough for the loss of a unidirectional network;
    for a bidirectional one, the final states or readout "last"/"mean", pass the lengths
    (``lengths=mask.sum(axis=0).astype(int)``) to the network, ``Batch`` or ``ArrayBatches``."""
    sequences = [np.asarray(s) for s in sequences]
    if not sequences:
        raise ValueError("sequences must not be empty")
    lengths = [len(s) for s in sequences]
    if min(lengths) < 1:
        raise ValueError(f"every sequence needs at least one step, got lengths {lengths}")
    tail = sequences[0].shape[1:]
    if any(s.shape[1:] != tail for s in sequences):
        raise ValueError("sequences must share their feature shape")
    T, B = max(lengths), len(sequences)
    out = np.full((T, B) + tail, pad_value, dtype or sequences[0].dtype)
    mask = np.zeros((T, B))
    for b, s in enumerate(sequences):
        out[:len(s), b] = s
        mask[:len(s), b] = 1.0
    return out, mask


def eval_loss_per_token(net, ids, batch: int = 16, seq_len: int = 256) -> float:
    """Mean cross-entropy in nats per token of ``net`` predicting ``ids[1:]`` from ``ids[:-1]``,
    run as B streams with the hidden state carried across chunks (evaluation mode: no dropout)."""
    ids = np.asarray(ids)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 tokens to evaluate, got {len(ids)}")
    B = max(1, min(batch, (len(ids) - 1) // 2))
    per_stream = (len(ids) - 1) // B
    x = ids[:per_stream * B].reshape(B, per_stream).T                  # (N/B, B)
    y = ids[1:per_stream * B + 1].reshape(B, per_stream).T
    was_training = getattr(net, "training", False)
    if hasattr(net, "eval"):
        net.eval()
    try:
        state, total = None, 0.0
        for t0 in range(0, per_stream, seq_len):
            fwd = net.forward(x[t0:t0 + seq_len], state)
            loss, _ = softmax_cross_entropy(fwd.outputs, y[t0:t0 + seq_len])
            total += loss * B                                          # summed over tokens
            state = fwd.final_state
    finally:
        if was_training:
            net.train()
    return total / (per_stream * B)
