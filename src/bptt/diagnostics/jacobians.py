"""Products of Jacobians: the lecture's  prod_{j=k+1..t} dh_j/dh_{j-1}.

For the tanh RNN one factor is

    dh_j/dh_{j-1} = diag(f'(a_j)) W          (H, H),   f'(a_j) = 1 - h_j^2

and ||dh_t/dh_k|| <= prod_j ||diag(f'(a_j))|| ||W|| <= ||W||^(t-k): with the largest
singular value of W below 1 the product must vanish (Pascanu, Mikolov & Bengio 2013,
sec. 2.2); above 1 it may explode.

For cells with more than one state (LSTM: s = (h, c), 2H numbers) the factor is the
Jacobian of the *full* state, ds_j/ds_{j-1} (2H, 2H): the gradient flows back through both
h and c, and the c -> c block diag(f_j) is what lets the LSTM keep it from vanishing.

``state_jacobians`` gives every factor for every example, ``jacobian_norms`` the T x T table
of batch-mean norms of their products. Factors come from the layer protocol (a length-1
forward/backward with one basis vector per state unit, stacked along the batch), so every
cell is covered; the tanh/ReLU RNN uses the closed form above. Cost of the table: about
T^2/2 batched (S x S) matrix products (S = state size) plus one norm each -- the spectral
norm (``ord=2``) is an SVD, Frobenius (``ord="fro"``) is cheap. Use small B and T, or pick
one row with ``t=``.
"""

from __future__ import annotations

import numpy as np

from ..functional import activation_grad_from_output
from . import _steps


def _rnn_factors(layer, steps) -> np.ndarray:
    """Closed form diag(f'(a_j)) W for every j and example: (T, B, H, H)."""
    W = layer.params["W"]
    fprime = np.stack([activation_grad_from_output(s[0], layer.nonlinearity) for s in steps.states[1:]])
    return fprime[..., :, None] * W                          # row i of diag(f') W is f'_i W[i]


def _scan_factors(layer, steps) -> np.ndarray:
    """Closed form for the diagonal recurrences (minGRU, minLSTM): ds_j/ds_{j-1} = diag(a_j), (T, B, H, H)."""
    _, _, cache = layer.forward(steps.layer_input, steps.states[0])
    a = layer.recurrence_weights(cache)                       # (T, B, H): a_j
    return a[..., :, None] * np.eye(layer.hidden_size)


def _protocol_factors(layer, steps) -> np.ndarray:
    """ds_j/ds_{j-1} for any cell, from the layer's own backward: (T, B, S, S).

    For basis vector e_i of the state at step j (batched: example b, unit i sits at row
    b*S + i), backward returns e_i^T ds_j/ds_{j-1} = row i of the Jacobian."""
    x = steps.layer_input
    T, B = x.shape[:2]
    sizes = [s.shape[1] for s in steps.states[0]]          # e.g. (H,) or (H, H) for (h, c)
    S = sum(sizes)
    basis = np.tile(np.eye(S), (B, 1))                      # (B*S, S)
    dstate = tuple(np.ascontiguousarray(part)
                   for part in np.split(basis, np.cumsum(sizes)[:-1], axis=1))
    H = layer.hidden_size
    factors = np.empty((T, B, S, S))
    for j in range(T):
        xj = np.repeat(x[j:j + 1], S, axis=1)               # (1, B*S, ...): each example S times
        state = tuple(np.repeat(s, S, axis=0) for s in steps.states[j])
        _, _, cache = layer.forward(xj, state)
        dh_above = np.zeros((1, B * S, sizes[0]), dtype=steps.states[0][0].dtype)   # h's width (P with a projection)
        _, dstate0, _ = layer.backward(dh_above, dstate, cache, _steps.scratch_grads(layer))
        factors[j] = np.concatenate(dstate0, axis=1).reshape(B, S, S)
    return factors


def state_jacobians(net, inputs, h0=None, layer=-1, method="auto") -> np.ndarray:
    """Every one-step Jacobian D_j = ds_j/ds_{j-1} of layer ``layer``: (T, B, S, S).

    S = H for the RNN and GRU, 2H for the LSTM (state (h, c), h first). ``method``:
    "closed_form" (RNN: diag(f') W; minGRU/minLSTM: diag(a_j)), "protocol" (any cell, via the
    layer's backward) or "auto"."""
    _steps.refuse_unsupported(net)
    index = _steps.layer_index(net, layer)
    if method not in ("auto", "closed_form", "protocol"):
        raise ValueError(f"method must be one of ('auto', 'closed_form', 'protocol'), got {method!r}")
    fwd = _steps.eval_forward(net, inputs, h0)
    steps = _steps.rerun_steps(net, fwd, h0, index)
    target = net.layers[index]
    is_rnn = getattr(target, "cell", None) == "rnn"
    is_scan = hasattr(target, "recurrence_weights")
    if method == "closed_form" and not (is_rnn or is_scan):
        raise ValueError(f"method='closed_form' is for cells 'rnn', 'mingru', 'minlstm', "
                         f"got cell {getattr(target, 'cell', None)!r}")
    if is_rnn and method != "protocol":
        return _rnn_factors(target, steps)
    if is_scan and method != "protocol":
        return _scan_factors(target, steps)
    return _protocol_factors(target, steps)


def _norms(P: np.ndarray, ord) -> np.ndarray:
    if ord == "fro":
        return np.sqrt(np.einsum("bij,bij->b", P, P))
    return np.linalg.svd(P, compute_uv=False)[:, 0]          # largest singular value


def products_norms(factors: np.ndarray, ord=2, t=None) -> np.ndarray:
    """J[t, k] = mean over the batch of ||D_t D_{t-1} ... D_{k+1}|| (= ||ds_t/ds_k||), k <= t;
    J[t, t] = ||I||. NaN above the diagonal, and on every row but ``t`` when t is given."""
    if ord not in (2, "fro"):
        raise ValueError(f"ord must be 2 (spectral) or 'fro' (Frobenius), got {ord!r}")
    T, B, S, _ = factors.shape
    J = np.full((T, T), np.nan)
    rows = range(T) if t is None else [_steps.check_time("t", t, T)]
    for row in rows:
        P = np.broadcast_to(np.eye(S), (B, S, S)).copy()    # ds_t/ds_t = I
        J[row, row] = _norms(P, ord).mean()
        for k in range(row - 1, -1, -1):
            P = P @ factors[k + 1]                           # ds_t/ds_k = ds_t/ds_{k+1} ds_{k+1}/ds_k
            J[row, k] = _norms(P, ord).mean()
    return J


def jacobian_norms(net, inputs, h0=None, layer=-1, ord=2, t=None, method="auto") -> np.ndarray:
    """(T, T): J[t, k] = batch mean of ||dh_t/dh_k|| for k <= t, NaN above the diagonal.

    ``ord=2`` is the spectral norm (largest singular value), ``"fro"`` the Frobenius norm
    (cheaper). For the LSTM the Jacobian is that of the full state (h, c). ``t``: compute
    only row t (the others stay NaN) -- T products instead of T^2/2. ``method``: as
    ``state_jacobians`` ("closed_form" for rnn/minGRU/minLSTM, "protocol" through the layer's backward)."""
    if ord not in (2, "fro"):
        raise ValueError(f"ord must be 2 (spectral) or 'fro' (Frobenius), got {ord!r}")
    factors = state_jacobians(net, inputs, h0, layer, method=method)
    return products_norms(factors, ord, t)
