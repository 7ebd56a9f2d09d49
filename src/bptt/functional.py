"""Pure math: activations, their derivatives written in terms of their outputs, and
a numerically stable softmax. No parameters live here.

Derivatives are expressed through the *output* of the activation, because the forward
pass keeps the outputs anyway (h_t for tanh, the gates for sigmoid):

    tanh'(a)    = 1 - tanh(a)^2        = 1 - h^2
    sigmoid'(a) = s (1 - s)
    relu'(a)    = 1[a > 0]             = 1[h > 0]

Both tanh' and sigmoid' are bounded (by 1 and 1/4): that bound is why the lecture's
product of Jacobians  prod_j dh_j/dh_{j-1}  tends to vanish.
"""

from __future__ import annotations

import numpy as np

NONLINEARITIES = ("tanh", "relu")


def sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid, computed as (1 + tanh(a/2)) / 2 so it never overflows."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def activate(a: np.ndarray, nonlinearity: str, out: np.ndarray | None = None) -> np.ndarray:
    """f(a) for the recurrent nonlinearity f in {"tanh", "relu"} (in place when out is a)."""
    if nonlinearity == "tanh":
        return np.tanh(a, out=out)
    if nonlinearity == "relu":
        return np.maximum(a, 0.0, out=out)
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")


def derivative_from_output(h: np.ndarray, nonlinearity: str, out: np.ndarray | None = None) -> np.ndarray:
    """f'(a) written through h = f(a): 1 - h^2 for tanh, 1[h > 0] for relu; in h's dtype,
    into ``out`` when given (two passes for tanh, one for relu, no temporaries)."""
    if out is None:
        out = np.empty_like(h)
    if nonlinearity == "tanh":
        np.multiply(h, h, out=out)          # h^2
        np.subtract(1.0, out, out=out)      # tanh' = 1 - h^2 (the Python float keeps out's dtype)
        return out
    if nonlinearity == "relu":
        np.greater(h, 0.0, out=out)         # relu' = 1[h > 0], cast to out's float dtype
        return out
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")


def activation_grad_from_output(h: np.ndarray, nonlinearity: str) -> np.ndarray:
    """f'(a) written through h = f(a): 1 - h^2 for tanh, 1[h > 0] for relu."""
    return derivative_from_output(h, nonlinearity)


def backprop_activation(dh: np.ndarray, h: np.ndarray, nonlinearity: str, out: np.ndarray) -> np.ndarray:
    """da = dh * f'(a), with f'(a) taken from the output h. Writes into ``out``."""
    if nonlinearity == "tanh":
        np.multiply(h, h, out=out)          # h^2
        np.subtract(1.0, out, out=out)      # tanh' = 1 - h^2
        out *= dh
        return out
    if nonlinearity == "relu":
        np.multiply(dh, h > 0, out=out)     # relu' = 1[h > 0]
        return out
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax(z) by log-sum-exp: subtract the max first so exp never overflows."""
    shifted = z - z.max(axis=axis, keepdims=True)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    shifted -= np.log(total, out=total)
    return shifted


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """softmax(z) = exp(z) / sum exp(z), stable for large |z|."""
    e = np.subtract(z, z.max(axis=axis, keepdims=True))
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


ONE_HOT_MAX_VOCAB = 256      # scatter_add_columns: one-hot GEMM up to this many columns, sort + reduceat beyond


def scatter_add_columns(target: np.ndarray, ids: np.ndarray, values: np.ndarray) -> None:
    """target[:, ids[n]] += values[n] for every n, repeated ids accumulating.

    This is the gradient of a column lookup ``U[:, id]`` (= U times a one-hot x):
    the lecture's ``dE/dU = sum_t da_t (x) x_t`` with x_t one-hot touches one column.
    target (H, V), ids (N,), values (N, H).
    """
    V = target.shape[1]
    if V <= ONE_HOT_MAX_VOCAB:
        # Small vocabularies (characters): the one-hot GEMM values^T onehot(ids) is one BLAS call and
        # beats gathering and reducing (N, H) rows: measured 2.3 -> 0.9 ms at N = 2048, H = 256, V = 65,
        # 13 -> 1.6 ms at H = 512 (float32, 1 thread); from V ~ 1000 the sort below wins (25 vs 73 ms).
        onehot = np.zeros((ids.shape[0], V), values.dtype)
        onehot[np.arange(ids.shape[0]), ids] = 1
        target += np.dot(values.T, onehot)
        return
    # Sorting groups equal ids so one reduceat sums each group: much faster than
    # np.add.at and never builds an (N, V) one-hot matrix.
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    sums = np.add.reduceat(values[order], starts, axis=0)      # (n_unique, H)
    target[:, sorted_ids[starts]] += sums.T


def accumulate_matmul(target: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """target += a @ b (the shared-weight gradient sum_t of outer products, as one GEMM).

    When target is still all zeros -- the usual case, a fresh gradient -- the GEMM writes
    straight into it: no (m, n) temporary and no extra pass. The product keeps target's
    dtype (float32 stays float32)."""
    if target.flags.c_contiguous and target.dtype == a.dtype == b.dtype and not target.any():
        np.dot(a, b, out=target)
    else:
        target += a @ b


def gate_tanh_scale(blocks: str, hidden_size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (scale, shift) that turn one tanh into every gate nonlinearity at once.

    sigmoid(a) = (1 + tanh(a/2)) / 2: pre-multiplying a sigmoid gate's pre-activation by
    1/2 (exact in floating point) and mapping tanh's output t to t/2 + 1/2 gives exactly the
    bits of ``sigmoid`` above. ``blocks`` names each H-wide block "s" (sigmoid) or "t" (tanh),
    e.g. "ssts" for LSTM's [i, f, g, o]. Returns two (len(blocks) H,) vectors:
    scale (1/2 or 1) and shift (1/2 or 0); the post-tanh map is t * scale + shift."""
    scale = np.concatenate([np.full(hidden_size, 0.5 if kind == "s" else 1.0, dtype) for kind in blocks])
    shift = np.concatenate([np.full(hidden_size, 0.5 if kind == "s" else 0.0, dtype) for kind in blocks])
    return scale, shift


# Rows (time steps x batch) per chunk of a backward pass's weight-gradient GEMMs: enough for
# BLAS to run near its peak, few enough that dE/da for one chunk is a fraction of all T steps'.
CHUNK_ROWS = 1024


def chunk_steps(seq_len: int, batch: int, saved_per_row: int, scratch_size: int) -> int:
    """Time steps per backward chunk: about CHUNK_ROWS rows, or the whole sequence when chunking
    would save (``saved_per_row`` floats for every row not held at once) less than the
    ``scratch_size`` floats of the reused products it needs."""
    steps = min(seq_len, max(1, -(-CHUNK_ROWS // batch)))
    if (seq_len - steps) * batch * saved_per_row <= scratch_size:
        return seq_len
    return steps


def column_sums(matrix: np.ndarray) -> np.ndarray:
    """matrix.sum(axis=0) for an (N, M) matrix, as ones(N) @ matrix: a bias gradient sum_t dE/da_t.
    numpy's sum over the first axis runs ~2-4x slower than the BLAS matrix-vector product at the
    shapes of a training step (e.g. 24 vs 7 us for 1024 x 128 float32); both add each column's
    entries in a plain running sum, so the accuracy is of the same kind."""
    return np.ones(matrix.shape[0], matrix.dtype) @ matrix


def accumulate_chunk(grads: dict, name: str, a: np.ndarray, b: np.ndarray, scratch: dict) -> None:
    """grads[name] += a @ b, chunk after chunk: the first product goes straight into a fresh
    gradient (``accumulate_matmul``), later ones through one reused scratch array (no new
    (m, n) array per chunk). ``scratch`` is a dict the caller keeps for one backward pass."""
    target = grads[name]
    if name not in scratch:                        # first chunk
        accumulate_matmul(target, a, b)
        scratch[name] = None                       # allocated only if a second chunk comes
        return
    if scratch[name] is None:
        scratch[name] = np.empty(target.shape, np.result_type(a, b))
    np.dot(a, b, out=scratch[name])
    target += scratch[name]



# The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t of minGRU/minLSTM and its reverse scan live
# beside those cells (layers/scan.py, which needs only numpy and bptt.kernels); exported here as math.
from .layers.scan import linear_scan, linear_scan_backward  # noqa: E402,F401
