"""Parity: the running XOR of a bit stream, at every step.

    input  x_t ∈ {0, 1}  (one-hot, 2 symbols)          target  y_t = x_1 xor ... xor x_t

State tracking in its simplest form. A recurrence with a nonlinearity in the loop (tanh RNN, LSTM,
GRU) can carry the parity bit for any T; a diagonal linear recurrence with non-negative weights --
minGRU's and minLSTM's h_t = a_t h_{t-1} + b_t with a_t in (0, 1) -- provably cannot (Grazzi et al.
2024, "Unlocking state-tracking in linear RNNs through negative eigenvalues"): flipping the bit needs
a sign change that a_t in (0, 1) does not have. Cross-entropy at every step, mask all ones.

Memoryless baseline: the parity is a fair coin at every step but the first (where it equals x_1),
so a predictor without memory scores log 2 nats per step on T - 1 of the T steps. Solved (our
criterion): 99% of the held-out steps right.
"""

from __future__ import annotations

import numpy as np

from ._common import log_softmax, make_rng, one_hot, seq_len

NUM_SYMBOLS = 2


def generate(T: int, batch: int, seed=0):
    """-> inputs (T, B, 2) one-hot float, targets (T, B) ids (the running parity), mask (T, B) ones."""
    from .. import validation as check
    T = seq_len(T, 1)
    B = check.positive_int("batch", batch)
    bits = make_rng(seed).integers(0, 2, size=(T, B))
    return one_hot(bits, NUM_SYMBOLS), np.cumsum(bits, axis=0) % 2, np.ones((T, B))


def score(outputs, targets, mask) -> dict:
    """``error``: share of steps whose parity is predicted wrong (argmax); ``cross_entropy`` per step."""
    outputs, targets = np.asarray(outputs), np.asarray(targets).astype(np.intp)
    logp = log_softmax(outputs)
    picked = np.take_along_axis(logp, targets[..., None], axis=2)[..., 0]
    return {"error": float(np.mean(outputs.argmax(axis=2) != targets)), "cross_entropy": float(-picked.mean())}


def trivial_outputs(inputs, targets, mask) -> np.ndarray:
    """No memory: the input bit at step 1 (the parity there), a coin (equal logits) after it."""
    T, B = np.shape(targets)
    logits = np.zeros((T, B, NUM_SYMBOLS))
    logits[0] = 20.0 * (np.asarray(inputs)[0] - 0.5)
    return logits


def baseline(T: int) -> dict:
    """Error (T - 1) / (2 T); cross-entropy (T - 1) log 2 / T nats per step."""
    return {"error": (T - 1) / (2.0 * T), "cross_entropy": (T - 1) * float(np.log(2)) / T}


def solved(metrics: dict) -> bool:
    return metrics["error"] <= 0.01
