"""The copying memory problem: remember 10 symbols across a delay of T steps, then replay
them. Many-to-many, cross-entropy at every step.

Arjovsky, Shah & Bengio (2016), "Unitary Evolution Recurrent Neural Networks", sec. 4.1:
alphabet a_0 .. a_9 with a_0 the blank, a_1..a_8 the data symbols and a_9 the delimiter.

    input  (length T + 20):  s_1 .. s_10  a_0 x (T - 1)  a_9  a_0 x 10
    target (length T + 20):  a_0 x (T + 10)  s_1 .. s_10,      s_i ~ U{a_1, ..., a_8}

The loss is the cross-entropy averaged over all T + 20 steps. Memoryless baseline: blank for
the first T + 10 steps (no loss), then a uniform guess over the 8 data symbols:

    cross-entropy = 10 log 8 / (T + 20).

bptt sums the loss over time (and averages over the batch), so the paper's number is bptt's
loss divided by T + 20; ``score`` reports the paper's. Inputs are one-hot (T + 20, B, 10),
targets ids (T + 20, B), mask all ones.
"""

from __future__ import annotations

import numpy as np

from ._common import log_softmax, make_rng, one_hot, seq_len

NUM_SYMBOLS = 10          # a_0 blank, a_1..a_8 data, a_9 delimiter
BLANK, DELIMITER = 0, 9
COPY_LENGTH = 10          # symbols to remember


def length(T: int, copy_length: int = COPY_LENGTH) -> int:
    """Steps in a sequence with delay T: 10 symbols + (T - 1) blanks + delimiter + 10 blanks."""
    return T + 2 * copy_length


def generate(T: int, batch: int, seed=0):
    """-> inputs (T+20, B, 10) one-hot float, targets (T+20, B) int ids, mask (T+20, B) ones."""
    from .. import validation as check
    T = seq_len(T, 1)
    B = check.positive_int("batch", batch)
    rng = make_rng(seed)
    total = length(T)
    data = rng.integers(1, 9, size=(COPY_LENGTH, B))          # s_1..s_10 from a_1..a_8
    ids = np.full((total, B), BLANK, dtype=np.intp)
    ids[:COPY_LENGTH] = data
    ids[COPY_LENGTH + T - 1] = DELIMITER                      # after T - 1 blanks: "replay now"
    targets = np.full((total, B), BLANK, dtype=np.intp)
    targets[T + COPY_LENGTH:] = data                          # last 10 steps: the copy
    return one_hot(ids, NUM_SYMBOLS), targets, np.ones((total, B))


def score(outputs, targets, mask, copy_length: int = COPY_LENGTH) -> dict:
    """``cross_entropy``: nats per step averaged over all T + 20 steps (the paper's measure,
    = bptt loss / (T + 20)); ``accuracy``: share of the 10 copied symbols predicted right
    (argmax); ``sequence_accuracy``: share of sequences with all 10 right."""
    outputs, targets = np.asarray(outputs), np.asarray(targets).astype(np.intp)
    logp = log_softmax(outputs)                                # (T+20, B, 10)
    picked = np.take_along_axis(logp, targets[..., None], axis=2)[..., 0]
    right = outputs[-copy_length:].argmax(axis=2) == targets[-copy_length:]   # (10, B)
    return {"cross_entropy": float(-picked.mean()),
            "accuracy": float(right.mean()),
            "sequence_accuracy": float(right.all(axis=0).mean())}


def trivial_outputs(inputs, targets, mask, copy_length: int = COPY_LENGTH,
                    num_symbols: int = NUM_SYMBOLS) -> np.ndarray:
    """The memoryless strategy as logits: certain of the blank for T + 10 steps, then equal
    logits over a_1..a_8 (and effectively zero probability for a_0 and a_9)."""
    total, B = np.shape(targets)
    logits = np.full((total, B, num_symbols), -1e9)
    logits[:-copy_length, :, BLANK] = 0.0
    logits[-copy_length:, :, 1:9] = 0.0
    return logits


def baseline(T: int, copy_length: int = COPY_LENGTH) -> dict:
    """10 log 8 / (T + 20) nats per step; chance accuracy 1/8 on the copied symbols."""
    return {"cross_entropy": copy_length * float(np.log(8)) / length(T, copy_length), "accuracy": 1.0 / 8.0,
            "sequence_accuracy": (1.0 / 8.0) ** copy_length}


def solved(metrics: dict) -> bool:
    """Arjovsky et al. show learning curves, no threshold; we call it solved when 99% of the
    copied symbols are right (our criterion, stated as such)."""
    return metrics["accuracy"] >= 0.99
