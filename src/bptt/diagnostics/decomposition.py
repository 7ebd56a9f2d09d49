"""The lecture's decomposition of the gradient, term by term.

For one output step t and a recurrent parameter theta of a layer (W, U or b):

    dE_t/dtheta = sum_{k=0..t}  dE_t/dy^_t  dy^_t/dh_t  ( prod_{j=k+1..t} dh_j/dh_{j-1} )  d+h_k/dtheta

where d+h_k/dtheta is the *immediate* derivative (h_{k-1} held fixed): for the tanh RNN,
term k of dE_t/dW is  da_k (x) h_{k-1}  with da_k = dE_t/da_k. Term k is what the
weights used at step k contribute; the product of Jacobians in the middle is what makes
terms with a large lag tau = t - k vanish (or explode).

``step_contributions`` returns every term (their sum is the BPTT gradient of E_t to
float64 rounding); ``contribution_norms`` the T x T table ||term k of dE_t/dtheta||;
``lag_profile`` folds the table by lag; ``effective_memory`` reads off the lag at which
the profile has fallen below a fraction of its lag-0 value.

Cost: one term table for a single t is one backward pass over t+1 steps; the full table
is one such pass per step that carries loss, i.e. up to ~T backward passes (T(T+1)/2
single-step backwards). Keep T and B small (T <= a few hundred) for the full table.
Works for every cell (RNN, LSTM, GRU) and for stacked networks (pick ``layer``; default
the top one) through the layer protocol only -- see ``_steps.py``.
"""

from __future__ import annotations

import numpy as np

from . import _steps


def _terms_for_output(net, steps, dtop, t: int, name: str) -> np.ndarray:
    """Terms k = t, t-1, ..., 0 of dE_t/d(name), given dE_t/dh arriving from above (T, B, H)."""
    layer = net.layers[steps.index]
    terms = np.empty((t + 1,) + layer.params[name].shape, dtype=np.float64)
    carry = None                              # dE_t/dstate_k through steps > k: nothing yet at k = t
    for k in range(t, -1, -1):
        grads = _steps.scratch_grads(layer)
        _, carry, _ = layer.backward(dtop[k:k + 1], carry, steps.caches[k], grads)
        terms[k] = grads[name]                # immediate gradient of step k: term k
    return terms


def _prepare(net, inputs, targets, mask, h0, lengths=None):
    _steps.refuse_unsupported(net)
    fwd = _steps.eval_forward(net, inputs, h0)
    if lengths is not None:                   # padded steps: no loss (see _steps.lengths_as_mask)
        mask = _steps.lengths_as_mask(net, mask, lengths, *fwd.inputs.shape[:2])
    doutputs, step_weight = _steps.loss_gradient(net, fwd, targets, mask)
    return fwd, doutputs, step_weight


def step_contributions(net, inputs, targets, t, param, mask=None, h0=None, layer=-1, lengths=None) -> np.ndarray:
    """Terms of the lecture's sum for dE_t/dparam: array (t+1, *param.shape), row k = term k.

    ``param``: a recurrent-layer parameter name ('W', 'U', 'b', or a full name such as
    'layers.0.W', which also picks the layer); ``layer``: which layer for short names
    (default -1, the top). ``t`` may be negative (counted from the end). E_t follows the
    network's loss convention: the loss at step t, averaged over the batch, weighted by
    ``mask[t]``. ``C.sum(0)`` equals dE_t/dparam from BPTT. Cost: t+1 single-step
    backward passes. ``lengths`` (B,): variable-length sequences; E_t is 0 for a sequence whose
    length is <= t."""
    index, name = _steps.split_param(net, param, layer)
    fwd, doutputs, _ = _prepare(net, inputs, targets, mask, h0, lengths)
    T = doutputs.shape[0]
    t = _steps.check_time("t", t, T)
    only_t = np.zeros_like(doutputs)
    only_t[t] = doutputs[t]                   # dE_t/dz: the loss is a sum over steps
    steps = _steps.rerun_steps(net, fwd, h0, index)
    dtop = _steps.grads_from_above(net, fwd, only_t, index)
    return _terms_for_output(net, steps, dtop, t, name)


def contribution_norms(net, inputs, targets, param="W", mask=None, h0=None, layer=-1, lengths=None) -> np.ndarray:
    """The T x T table N[t, k] = ||term k of dE_t/dparam|| (Frobenius norm).

    NaN above the diagonal (k > t: a step cannot influence an earlier output) and on rows
    whose step carries no loss (mask[t] all zero, e.g. all but the last step of a
    many-to-one task; those rows are skipped, which also saves their cost). Cost: one
    backward pass of length t+1 per row with loss -- up to ~T backward passes.
    ``lengths`` (B,): variable-length sequences (padded steps carry no loss)."""
    index, name = _steps.split_param(net, param, layer)
    fwd, doutputs, step_weight = _prepare(net, inputs, targets, mask, h0, lengths)
    T = doutputs.shape[0]
    steps = _steps.rerun_steps(net, fwd, h0, index)
    table = np.full((T, T), np.nan)
    only_t = np.zeros_like(doutputs)
    for t in range(T):
        if step_weight[t] == 0:
            continue
        only_t[...] = 0
        only_t[t] = doutputs[t]
        dtop = _steps.grads_from_above(net, fwd, only_t, index)
        terms = _terms_for_output(net, steps, dtop, t, name)
        table[t, :t + 1] = np.sqrt(np.sum(terms.reshape(t + 1, -1) ** 2, axis=1))
    return table


def lag_profile(table: np.ndarray, reduce: str = "sum") -> np.ndarray:
    """Fold a T x T table by lag tau = t - k: profile[tau] = sum_t table[t, t - tau]
    (``reduce="mean"``: the mean over the rows that have a value at that lag, which does not
    penalise large lags for having fewer (t, k) pairs). NaN entries are skipped; a lag with
    no entry gives NaN."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != table.shape[1]:
        raise ValueError(f"table must be a square (T, T) array, got shape {table.shape}")
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be one of ('sum', 'mean'), got {reduce!r}")
    T = table.shape[0]
    profile = np.full(T, np.nan)
    for tau in range(T):
        diagonal = np.diagonal(table, offset=-tau)      # entries (t, t - tau)
        values = diagonal[~np.isnan(diagonal)]
        if values.size:
            profile[tau] = values.sum() if reduce == "sum" else values.mean()
    return profile


def effective_memory(profile: np.ndarray, fraction: float = 0.01):
    """The smallest lag tau with profile[tau] < fraction * profile[0]: how far back the
    gradient still reaches with at least ``fraction`` of its immediate (lag-0) strength.
    Returns None when the profile never falls that low within the sequence (the memory is
    at least as long as the sequence), and None when profile[0] is 0 or NaN."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.ndim != 1 or profile.size == 0:
        raise ValueError(f"profile must be a non-empty 1-D array, got shape {profile.shape}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}")
    if not np.isfinite(profile[0]) or profile[0] <= 0:
        return None
    below = np.flatnonzero(profile < fraction * profile[0])
    return int(below[0]) if below.size else None
