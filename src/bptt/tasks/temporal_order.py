"""The temporal order problem: classify the ORDER of two symbols far apart. Many-to-one,
cross-entropy over 4 classes.

Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", sec. 5.6 Experiment 6a: sequences
of random symbols from {a, b, c, d}, starting with E and ending with the trigger B, except two
positions t1 in [10, 20] and t2 in [50, 60] (of a length 100-110) holding X or Y. The class is
the order: XX -> Q, XY -> R, YX -> S, YY -> U. Pascanu, Mikolov & Bengio (2013), "On the
difficulty of training recurrent neural networks", sec. 4.1, use the length-T version of
Martens & Sutskever (2011): the relevant positions scale with T. Here

    t1 ~ U{floor(0.1 T), ..., floor(0.2 T)},   t2 ~ U{floor(0.5 T), ..., floor(0.6 T)},

the H&S positions for T = 100. Inputs are one-hot over 8 symbols (``SYMBOLS``); the target
(class id 0..3, in the order XX, XY, YX, YY) is read at the last step.

Success (Pascanu et al. 2013): fewer than 1% misclassified on fresh sequences.
Trivial baseline: the uniform guess, cross-entropy log 4 ~ 1.386 and 75% misclassified.
"""

from __future__ import annotations

import numpy as np

from ._common import final_outputs, final_targets, last_step_mask, log_softmax, make_rng, one_hot, seq_len

SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")      # input one-hot order
CLASSES = ("XX", "XY", "YX", "YY")
NUM_CLASSES = len(CLASSES)
SUCCESS_ERROR = 0.01                                     # Pascanu et al. 2013: < 1% misclassified
_X, _Y, _B, _E = 4, 5, 6, 7


def positions(T: int) -> tuple:
    """(lo1, hi1, lo2, hi2): the inclusive ranges of the two relevant positions."""
    return int(0.1 * T), int(0.2 * T), int(0.5 * T), int(0.6 * T)


def generate(T: int, batch: int, seed=0):
    """-> inputs (T, B, 8) one-hot float, targets (T, B) int class ids (read at t = T-1), mask (T, B)."""
    from .. import validation as check
    T = seq_len(T, 10)                         # room for E ... t1 ... t2 ... B
    B = check.positive_int("batch", batch)
    rng = make_rng(seed)
    lo1, hi1, lo2, hi2 = positions(T)
    ids = rng.integers(0, 4, size=(T, B))      # distractors a..d
    ids[0] = _E                                # start symbol
    ids[T - 1] = _B                            # trigger: answer now
    t1 = rng.integers(max(lo1, 1), hi1 + 1, size=B)
    t2 = rng.integers(lo2, min(hi2, T - 2) + 1, size=B)
    first_is_y = rng.integers(0, 2, size=B)
    second_is_y = rng.integers(0, 2, size=B)
    cols = np.arange(B)
    ids[t1, cols] = _X + first_is_y
    ids[t2, cols] = _X + second_is_y
    targets = np.zeros((T, B), dtype=np.intp)
    targets[T - 1] = 2 * first_is_y + second_is_y          # XX=0, XY=1, YX=2, YY=3
    return one_hot(ids, len(SYMBOLS)), targets, last_step_mask(np.full(B, T - 1), T)


def score(outputs, targets, mask) -> dict:
    """``error``: share misclassified (argmax of the logits at the end); ``cross_entropy``
    at the end in nats (= bptt's loss here, one masked step per sequence)."""
    logits = final_outputs(outputs, mask)                  # (B, 4)
    want = final_targets(targets, mask).astype(np.intp)    # (B,)
    logp = log_softmax(logits)
    return {"error": float(np.mean(logits.argmax(axis=1) != want)),
            "cross_entropy": float(-np.mean(logp[np.arange(want.shape[0]), want]))}


def trivial_outputs(inputs, targets, mask) -> np.ndarray:
    """Equal logits for the 4 classes (ties break to class 0 for the argmax)."""
    T, B = np.shape(targets)
    return np.zeros((T, B, NUM_CLASSES))


def baseline(T: int) -> dict:
    """The uniform guess: cross-entropy log 4; misclassified 3/4 (classes are equally likely)."""
    return {"error": 0.75, "cross_entropy": float(np.log(NUM_CLASSES))}


def solved(metrics: dict) -> bool:
    return metrics["error"] < SUCCESS_ERROR
