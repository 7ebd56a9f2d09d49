"""Selective copying (Gu & Dao 2023, "Mamba", sec. 3.1): remember the data tokens scattered among
noise tokens at random positions, and replay them in order after a delimiter.

    input  (length T + 2 K):  K data tokens at random positions of the first T steps (noise elsewhere),
                              then the delimiter, then K - 1 blanks and one more blank
    target (length T + 2 K):  blank for the first T + K steps, then the K data tokens in order

Vocabulary: a_0 blank, a_1 .. a_8 data symbols, a_9 noise, a_10 delimiter (one-hot, 11 symbols);
K = 4 by default. Unlike plain copying, where the data sit at fixed positions, the network must decide
from the content what to keep -- the "selection" that input-dependent gates (LSTM, GRU, minGRU's z_t)
can do and a fixed linear filter cannot. Cross-entropy at every step, mask all ones; bptt's loss is the
sum over steps, the score reports per-step numbers.

Memoryless baseline: blank for T + K steps, then a uniform guess over the 8 data symbols:
cross-entropy K log 8 / (T + 2 K) per step, accuracy 1/8 on the copied tokens. Solved (our criterion):
99% of the copied tokens right.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import copying
from ._common import make_rng, one_hot, seq_len

NUM_SYMBOLS = 11
BLANK, NOISE, DELIMITER = 0, 9, 10
COPY_LENGTH = 4


def length(T: int) -> int:
    return copying.length(T, COPY_LENGTH)


def generate(T: int, batch: int, seed=0):
    """-> inputs (T + 2K, B, 11) one-hot float, targets (T + 2K, B) ids, mask ones."""
    from .. import validation as check
    T = seq_len(T, COPY_LENGTH)
    B = check.positive_int("batch", batch)
    rng = make_rng(seed)
    total = length(T)
    data = rng.integers(1, 9, size=(COPY_LENGTH, B))
    ids = np.full((total, B), BLANK, dtype=np.intp)
    ids[:T] = NOISE
    for b in range(B):                                      # K distinct positions, kept in order
        positions = np.sort(rng.choice(T, size=COPY_LENGTH, replace=False))
        ids[positions, b] = data[:, b]
    ids[T] = DELIMITER
    targets = np.full((total, B), BLANK, dtype=np.intp)
    targets[T + COPY_LENGTH:] = data
    return one_hot(ids, NUM_SYMBOLS), targets, np.ones((total, B))


# Scoring, the memoryless predictor and its baseline are copying's, with K copied tokens.
score = partial(copying.score, copy_length=COPY_LENGTH)
trivial_outputs = partial(copying.trivial_outputs, copy_length=COPY_LENGTH, num_symbols=NUM_SYMBOLS)
baseline = partial(copying.baseline, copy_length=COPY_LENGTH)
solved = copying.solved                        # 99% of the copied tokens right
