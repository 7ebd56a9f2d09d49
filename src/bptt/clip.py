"""Gradient clipping: the lecture's remedy for exploding gradients.

- ``clip_by_value``: cap every entry to [-limit, limit] (the lecture's "if the gradient
  exceeds 10, use 10"; min-char-rnn's ``np.clip(d, -5, 5)``).
- ``clip_by_global_norm``: Pascanu, Mikolov & Bengio (2013), Algorithm 1: if the norm
  g of all gradients together exceeds a threshold, rescale them all by threshold / g,
  keeping the direction. Same as ``torch.nn.utils.clip_grad_norm_``.

Both work in place and return what they measured, so training can log how often and
how hard clipping fired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import validation as check


@dataclass
class ClipReport:
    norm: float          # global L2 norm of the gradients before clipping
    clipped: bool        # did clipping change anything
    scale: float = 1.0   # factor applied (global norm); 1.0 when not clipped
    num_clipped: int = 0  # entries changed (by value)


def global_norm(grads: dict) -> float:
    """sqrt(sum over all parameters of sum g^2), accumulated in float64."""
    return float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values())))


def clip_by_global_norm(grads: dict, max_norm: float) -> ClipReport:
    max_norm = check.positive_float("max_norm", max_norm)
    norm = global_norm(grads)
    if not np.isfinite(norm) or norm <= max_norm:
        return ClipReport(norm, False)
    scale = max_norm / (norm + 1e-6)       # torch's clip_grad_norm_ uses the same 1e-6
    for g in grads.values():
        g *= scale
    return ClipReport(norm, True, scale)


def clip_by_value(grads: dict, limit: float) -> ClipReport:
    limit = check.positive_float("limit", limit)
    norm = global_norm(grads)
    changed = 0
    for g in grads.values():
        changed += int(np.count_nonzero(np.abs(g) > limit))
        np.clip(g, -limit, limit, out=g)
    return ClipReport(norm, changed > 0, 1.0, changed)
