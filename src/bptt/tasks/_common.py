"""Helpers every task generator shares: seeding, argument checks, many-to-one masks,
and reading the network's answer at each sequence's last step.

Format (bptt's, time-major like torch): inputs (T, B, I) float, targets (T, B) int ids
for cross-entropy or (T, B, O) float for squared error, mask (T, B) with 1 where a loss
is taken. Many-to-one tasks put a single 1 in each mask column: at the sequence's end.
"""

from __future__ import annotations

import numpy as np

from .. import validation as check


def make_rng(seed) -> np.random.Generator:
    """A Generator from an int seed (runs repeat) or a Generator passed through."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def seq_len(value, minimum: int) -> int:
    """T: a positive int at least ``minimum`` (tasks need room for their markers)."""
    T = check.positive_int("T", value)
    if T < minimum:
        raise ValueError(f"T must be >= {minimum} for this task, got {T}")
    return T


def last_step_mask(ends: np.ndarray, length: int) -> np.ndarray:
    """mask (length, B): 1.0 at t = ends[b] for each column b, 0 elsewhere."""
    B = ends.shape[0]
    mask = np.zeros((length, B))
    mask[ends, np.arange(B)] = 1.0
    return mask


def final_outputs(outputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The network's answer in each column at its (single) masked step: (T, B, O) -> (B, O)."""
    ends = np.asarray(mask).argmax(axis=0)                # (B,): first t with mask 1
    return np.asarray(outputs)[ends, np.arange(ends.shape[0])]


def final_targets(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Targets at each column's masked step: (T, B[, O]) -> (B[, O])."""
    ends = np.asarray(mask).argmax(axis=0)
    return np.asarray(targets)[ends, np.arange(ends.shape[0])]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_hot(ids: np.ndarray, size: int) -> np.ndarray:
    """ids (T, B) -> float (T, B, size)."""
    out = np.zeros(ids.shape + (size,))
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out
