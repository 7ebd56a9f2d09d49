"""Gradient checking: hand-derived BPTT against float64 central differences.

    dE/dtheta_i  ~  (E(theta + eps e_i) - E(theta - eps e_i)) / (2 eps)      (error O(eps^2))

The objective checked is the loss plus a random linear function of the final state,
<G, h_T>, so the path out of the last state is exercised too (a random upstream
gradient, never all ones). Errors are relative to the size of the gradient array:

    rel = max_i |analytic_i - numeric_i| / max(max_i |analytic_i|, max_i |numeric_i|)

which is 0 when both are exactly zero (0/0-safe) and ~1e-9 or below for a correct float64
gradient with eps = 1e-6.
"""

from __future__ import annotations

import numpy as np

from . import validation as check


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(analytic - numeric))) / scale


def numerical_gradient(f, array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to ``array``, perturbed in place
    (and always restored)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)          # a view: writing it perturbs the array f() reads
    if not np.shares_memory(flat, array):
        raise ValueError("numerical_gradient needs a contiguous array to perturb in place")
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = f()
        flat[i] = original - eps
        minus = f()
        flat[i] = original
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def random_problem(net, seq_len: int, batch: int, seed: int = 0, token_ids: bool = False, masked: bool = False):
    """Random inputs, targets, mask and a random (non-zero) initial state for ``net``
    (targets (B,) / (B, O) for readout "last"/"mean"). See ``random_lengths`` for variable lengths."""
    rng = np.random.default_rng(seed)
    T = check.positive_int("seq_len", seq_len)
    B = check.positive_int("batch", batch)
    if token_ids:
        inputs = rng.integers(0, net.input_size, size=(T, B))
    else:
        inputs = rng.standard_normal((T, B, net.input_size))
    width = net.output_size if net.output_size is not None else net.output_width
    lead = (B,) if getattr(net, "pooled", False) else (T, B)
    if net.loss == "cross_entropy":
        targets = rng.integers(0, width, size=lead)
    else:
        targets = rng.standard_normal(lead + (width,))
    mask = None
    if masked:
        mask = (rng.random(lead) < 0.7).astype(np.float64)
        mask[-1] = 1.0                  # keep something counted (per sequence: its last step)
    zero = net.zero_state(B)
    h0 = tuple(0.5 * rng.standard_normal(s.shape) for s in _as_tuple(zero))
    h0 = h0 if isinstance(zero, tuple) else h0[0]
    return inputs, targets, mask, h0


def random_lengths(batch: int, seq_len: int, seed: int = 0) -> np.ndarray:
    """Random sequence lengths in [1, T], with 1 and T among them when B >= 2 (unsorted)."""
    rng = np.random.default_rng([seed, 7])
    lengths = rng.integers(1, seq_len + 1, size=batch)
    if batch >= 2:
        lengths[rng.permutation(batch)[:2]] = (1, seq_len)
    return lengths


def check_network(net, inputs, targets, mask=None, h0=None, eps: float = 1e-6, seed: int = 0,
                  lengths=None) -> dict:
    """Worst relative error for every parameter, for ``inputs`` (float inputs only) and
    for each initial state array (``h0``, and ``c0`` for the LSTM). The network must be float64.
    ``lengths`` (B,): variable-length sequences (the final state is then each sequence's own)."""
    if net.dtype != np.float64:
        raise ValueError(f"gradient checks need dtype float64, the network has {net.dtype.name}")
    rng = np.random.default_rng(seed)
    inputs = net.check_inputs(inputs)
    T, B = inputs.shape[:2]
    targets = net.check_targets(targets, T, B)
    mask = net.check_mask(mask, T, B)
    lengths = net.check_lengths(lengths, T, B)
    if h0 is None:
        h0 = net.zero_state(B)
    h0 = tuple(np.array(s, dtype=np.float64) for s in _as_tuple(h0)) if isinstance(h0, tuple) else np.array(h0, dtype=np.float64)
    upstream = tuple(rng.standard_normal(s.shape) for s in _as_tuple(h0))   # random dE/d(final state)
    upstream_state = upstream if isinstance(h0, tuple) else upstream[0]

    fwd = net.forward(inputs, h0, lengths=lengths, validate=False)
    masks = fwd.dropout_masks          # dropout: differentiate under the same fixed masks
    weight_masks = getattr(fwd, "weight_masks", None)       # and DropConnect's on W
    noise = getattr(fwd, "noise", None)                     # and recurrent dropout's / zoneout's

    def objective() -> float:
        fwd = net.forward(inputs, h0, lengths=lengths, validate=False, dropout_masks=masks,
                          weight_masks=weight_masks, noise=noise)
        loss, _ = net.output_loss(fwd, targets, mask)
        final = _as_tuple(fwd.final_state)
        return loss + sum(float(np.sum(g * s)) for g, s in zip(upstream, final))

    _, doutputs = net.output_loss(fwd, targets, mask)
    bwd = net.backward(fwd, doutputs, dfinal_state=upstream_state)

    errors = {}
    for name, param in net.params.items():
        errors[name] = relative_error(bwd.grads[name], numerical_gradient(objective, param, eps))
    if inputs.dtype.kind == "f":
        errors["inputs"] = relative_error(bwd.dinputs, numerical_gradient(objective, inputs, eps))
    for state_name, s, ds in zip(net.state_names, _as_tuple(h0), _as_tuple(bwd.dh0)):
        errors[f"{state_name}0"] = relative_error(ds, numerical_gradient(objective, s, eps))
    return errors
