"""Losses over a whole sequence, each returning (loss, dE/doutputs).

Convention (used everywhere in bptt): the loss is **summed over time and averaged
over the batch**,

    E = (1/B) sum_b sum_t m_{t,b} E_t^{(b)},

as in the lecture's  E = sum_t E_t  for one example. ``mask`` (T, B) holds 0/1 (or any
non-negative) weights m_{t,b}: padded steps get 0, and many-to-one training (a loss at
the last step only) is a mask that is 1 at t = T-1 and 0 elsewhere.

- cross-entropy with softmax outputs: E_t = -log softmax(z_t)[y_t], and its gradient is
  the lecture's  dE_t/dz_t = y^_t - y_t  (y_t one-hot);
- squared error with identity outputs: E_t = 1/2 ||z_t - y_t||^2, gradient z_t - y_t.
  The 1/2 makes the two gradients the same "prediction minus target" form.
  (torch.nn.MSELoss averages over elements instead: multiply by 2/O to compare.)
"""

from __future__ import annotations

import numpy as np

from .functional import log_softmax

LOSSES = ("cross_entropy", "mse")


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None):
    """logits (T, B, O), targets int (T, B), mask (T, B) or None -> (E, dE/dlogits)."""
    T, B, O = logits.shape
    logp = log_softmax(logits)                                    # stable: log-sum-exp
    picked = np.take_along_axis(logp, targets[..., None], axis=2)[..., 0]   # log y^_t[y_t], (T, B)
    weights = np.full((T, B), 1.0 / B, logits.dtype) if mask is None else mask / B
    loss = -float(np.sum(weights * picked, dtype=np.float64))
    dlogits = np.exp(logp)                                        # y^_t = softmax(z_t)
    t_idx, b_idx = np.indices((T, B))
    dlogits[t_idx, b_idx, targets] -= 1.0                         # y^_t - y_t
    dlogits *= weights[..., None]
    return loss, dlogits


def squared_error(outputs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None):
    """outputs, targets (T, B, O), mask (T, B) or None -> (E, dE/doutputs)."""
    T, B, O = outputs.shape
    diff = outputs - targets                                      # z_t - y_t
    weights = np.full((T, B), 1.0 / B, outputs.dtype) if mask is None else mask / B
    loss = 0.5 * float(np.sum(weights[..., None] * diff * diff, dtype=np.float64))
    diff *= weights[..., None]
    return loss, diff


def compute_loss(kind: str, outputs, targets, mask=None):
    if kind == "cross_entropy":
        return softmax_cross_entropy(outputs, targets, mask)
    if kind == "mse":
        return squared_error(outputs, targets, mask)
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
