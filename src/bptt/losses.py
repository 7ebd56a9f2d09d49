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

LOSSES = ("cross_entropy", "mse")


# A logit spread (max - min over the whole batch) within which one shared shift is safe: every
# exp(z - max) is then >= e^-30 ~ 1e-13, far from underflow in float32, and the loss loses at most
# ~30 eps of absolute precision. Wider spreads take the per-row shift.
SHARED_SHIFT_SPREAD = 30.0


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
                          overwrite_logits: bool = False):
    """logits (T, B, O), targets int (T, B), mask (T, B) or None -> (E, dE/dlogits).

    All T*B rows at once, with one exp per logit: the exponentials serve both the
    log-sum-exp of the loss and the softmax of the gradient, which is built in that same
    buffer (no second exp, no (T, B, O) temporaries beyond the returned gradient).
    ``overwrite_logits=True`` builds the gradient in the (C-contiguous) logits array itself."""
    T, B, O = logits.shape
    N = T * B
    z = logits.reshape(N, O)
    rows = np.arange(N)
    target_ids = targets.reshape(N)
    in_place = overwrite_logits and logits.flags.c_contiguous     # then z is a view of logits
    # Subtract a shift before exp so it never overflows (log-sum-exp). The row maxima are the
    # textbook shift, but a max along each short row is a slow numpy reduction (~90 us for 2048 x 65
    # float32 here); one shared max is ~7 us and equally safe while the logits' spread is modest.
    top, bottom = z.max(), z.min()
    if top - bottom <= SHARED_SHIFT_SPREAD:
        shift = top
    else:
        shift = z.max(axis=1, keepdims=True)                      # (N, 1): per row
    probs = np.subtract(z, shift, out=z if in_place else None)    # z - max z: stable
    picked = probs[rows, target_ids]                               # shifted z_t[y_t], (N,)
    np.exp(probs, out=probs)
    # Row sums as a matrix-vector product: numpy's sum along short rows is another slow reduction.
    total = probs @ np.ones(O, probs.dtype)                        # sum exp, (N,)
    log_picked = picked - np.log(total)                           # log y^_t[y_t] (log-sum-exp)
    if mask is None:                                              # w = 1/B: a scalar, fewer passes
        weights = 1.0 / B                                         # average over the batch
        loss = -float(np.sum(log_picked, dtype=np.float64)) * weights
    else:
        weights = (mask / B).reshape(N)                           # (N,)
        loss = -float(np.sum(weights * log_picked, dtype=np.float64))
    probs *= np.divide(weights, total)[:, None]                   # w * y^_t  (softmax, weighted)
    probs[rows, target_ids] -= weights                            # w * (y^_t - y_t)
    return loss, probs.reshape(T, B, O)


def squared_error(outputs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None):
    """outputs, targets (T, B, O), mask (T, B) or None -> (E, dE/doutputs)."""
    T, B, O = outputs.shape
    diff = outputs - targets                                      # z_t - y_t
    weights = np.full((T, B), 1.0 / B, outputs.dtype) if mask is None else mask / B
    loss = 0.5 * float(np.sum(weights[..., None] * diff * diff, dtype=np.float64))
    diff *= weights[..., None]
    return loss, diff


def compute_loss(kind: str, outputs, targets, mask=None, overwrite_outputs: bool = False):
    """(E, dE/doutputs); ``overwrite_outputs=True`` lets cross-entropy reuse the outputs' array."""
    if kind == "cross_entropy":
        return softmax_cross_entropy(outputs, targets, mask, overwrite_logits=overwrite_outputs)
    if kind == "mse":
        return squared_error(outputs, targets, mask)
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
