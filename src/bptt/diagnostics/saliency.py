"""How far back each prediction looks: the saliency of the inputs by time lag.

    S[t, k, b] = || dE_{t,b} / dx_{k,b} ||_2      k <= t   (0 for k > t: the network is causal)

E_{t,b} = m_{t,b} E_t of example b -- its loss at step t alone, *not* divided by the batch size, so
a column does not depend on what else is in the batch. x_k is what layer 0 reads:

- float inputs (T, B, I): x_k itself;
- token ids without an embedding: the one-hot vector of id_k, so dE_t/dx_k = U^T da_k (size V);
- token ids with an embedding (``Network(embedding_size=E)``): the embedding row E[id_k] (size E).

The gradient is the lecture's BPTT sum read off at the input: dE_t/dx_k = U^T diag(f'_k)
(prod_{j=k+1..t} dh_j/dh_{j-1})^T dE_t/dh_t for the tanh RNN; how fast it falls with the lag t - k
is how far back prediction t looks (Distill's "Visualizing memorization in RNNs" shows the same
magnitudes in context). ``saliency_matrix`` computes every t at once: the batch is repeated T
times and copy t back-propagates E_t alone -- one forward and one backward pass of batch T B.

``saliency_lags`` is the whole-text view: for every position t, the lag at which the saliency
first falls below ``threshold`` (1%) of its value at lag 0.

``lengths`` (packed sequences): a unidirectional network's valid steps never depend on padding, so
padded positions simply carry no loss (and no saliency).
"""

from __future__ import annotations

import numpy as np

from ..losses import compute_loss
from . import _steps


def _layer0_inputs(net, inputs):
    """What the forward pass runs on (one-hot floats for ids without an embedding) and T, B."""
    x = net.check_inputs(inputs)
    if x.dtype.kind in "iu" and net.embedding is None:
        onehot = np.zeros(x.shape + (net.input_size,), net.dtype)
        np.put_along_axis(onehot, x[..., None], 1.0, axis=-1)   # x_k = e_{id_k}: then U x_k is column id_k
        return onehot
    return x


def _check_net(net) -> None:
    _steps.refuse_unsupported(net)
    if net.pooled:
        raise ValueError(f"saliency needs one output per step; readout={net.readout_mode!r} has one per sequence")
    if net.embedding is not None and net.tie_weights and net.readout is None:   # pragma: no cover - not constructible
        raise ValueError("saliency needs a readout")


def saliency_matrix(net, inputs, targets, mask=None, lengths=None, h0=None) -> np.ndarray:
    """(T, T, B): S[t, k, b] = ||dE_{t,b}/dx_{k,b}||, zero for k > t and where m_{t,b} = 0 (or t >= L_b)."""
    _check_net(net)
    x = _layer0_inputs(net, inputs)
    T, B = x.shape[:2]
    targets = net.check_targets(targets, T, B)
    weights = _steps.lengths_as_mask(net, mask, lengths, T, B)           # (T, B) or None
    # copy t of the batch (columns t*B .. t*B+B-1) carries the loss at step t only
    reps = np.concatenate([x] * T, axis=1)                              # (T, T B, ...)
    h0_rep = None
    if h0 is not None:
        parts = net._split_state(h0, B)                                 # validated
        joined = [np.concatenate([np.stack([p[i] for p in parts])] * T, axis=1) for i in range(len(parts[0]))]
        h0_rep = joined[0] if len(joined) == 1 else tuple(joined)
    fwd = _steps.eval_forward(net, reps, h0_rep)
    step_weight = np.zeros((T, T, B), net.dtype)                         # [step, copy, b]
    for t in range(T):
        step_weight[t, t] = 1.0 if weights is None else weights[t]
    step_weight = step_weight.reshape(T, T * B)
    _, doutputs = compute_loss(net.loss, fwd.outputs, np.concatenate([targets] * T, axis=1), step_weight)
    doutputs *= T * B                                                   # undo the batch average: E_{t,b} itself
    dtop = _steps.grads_from_above(net, fwd, doutputs, 0)
    layer = net.layers[0]
    dx, _, _ = layer.backward(dtop, None, fwd.caches[0], _steps.scratch_grads(layer), input_grad=True)
    norms = np.sqrt(np.einsum("tbi,tbi->tb", dx, dx)).reshape(T, T, B)  # [k, copy t, b]
    S = np.transpose(norms, (1, 0, 2)).copy()                            # [t, k, b]
    S[np.triu(np.ones((T, T), bool), k=1)] = 0.0                        # causal: exactly 0 beyond t
    return S


def input_saliency(net, inputs, targets, t, mask=None, lengths=None, h0=None) -> np.ndarray:
    """(T, B): ||dE_t/dx_k|| for every input position k (0 for k > t). See the module docstring."""
    _check_net(net)
    x = net.check_inputs(inputs)
    T, B = x.shape[:2]
    t = _steps.check_time("t", t, T)
    # one row of saliency_matrix, without repeating the batch: only E_t back-propagates
    x = _layer0_inputs(net, inputs)
    targets = net.check_targets(targets, T, B)
    weights = _steps.lengths_as_mask(net, mask, lengths, T, B)
    fwd = _steps.eval_forward(net, x, h0)
    step_weight = np.zeros((T, B), net.dtype)
    step_weight[t] = 1.0 if weights is None else weights[t]
    _, doutputs = compute_loss(net.loss, fwd.outputs, targets, step_weight)
    doutputs *= B
    dtop = _steps.grads_from_above(net, fwd, doutputs, 0)
    layer = net.layers[0]
    dx, _, _ = layer.backward(dtop, None, fwd.caches[0], _steps.scratch_grads(layer), input_grad=True)
    S = np.sqrt(np.einsum("tbi,tbi->tb", dx, dx))
    S[t + 1:] = 0.0
    return S


def lags_below(S: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """From S (T, T, B): for every t, b the first lag l >= 1 with S[t, t-l] < threshold S[t, t].
    t + 1 (one past the start of the passage) where it never falls that low: a censored value."""
    T = S.shape[0]
    lags = np.empty((T, S.shape[2]), np.int64)
    for t in range(T):
        profile = S[t, t::-1]                                           # (t+1, B): lag 0, 1, ..., t
        below = profile < threshold * profile[:1]
        below[0] = False
        lags[t] = np.where(below.any(axis=0), below.argmax(axis=0), t + 1)
    return lags


def saliency_lags(net, inputs, targets, threshold: float = 0.01, mask=None, lengths=None) -> np.ndarray:
    """(T, B) ints: for every position t, the lag at which ||dE_t/dx_{t-lag}|| first falls below
    ``threshold`` times its lag-0 value ||dE_t/dx_t||; t + 1 where it never does within the passage."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
    return lags_below(saliency_matrix(net, inputs, targets, mask, lengths), threshold)
