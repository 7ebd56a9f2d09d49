"""Why the product of Jacobians vanishes or explodes: spectra, saturation, gates.

- ``singular_values(W)``, ``spectral_radius(W)``: for the linearised RNN the factor
  dh_j/dh_{j-1} = diag(f') W has norm <= sigma_max(W) (f' <= 1 for tanh), so sigma_max < 1
  is sufficient for vanishing; rho(W) > 1 is necessary for exploding (Pascanu et al. 2013,
  sec. 2.2, with gamma = 1 for tanh).
- ``spectrum(net)``: both for every layer and every H x H gate block of W.
- ``saturation``: the share of units whose activation derivative is below ``threshold`` of
  its maximum (tanh' <= 1, sigmoid' <= 1/4): saturated units pass no gradient back (for ReLU,
  the dead units, f' = 0).
- ``gate_means``: for the LSTM the mean input/forget/cell/output gate over batch and units at
  every step (the forget gate is the c -> c factor: f near 1 keeps the gradient alive); for
  the GRU the mean reset/update gate (z near 1 copies the old state and its gradient).
"""

from __future__ import annotations

import numpy as np

from ..init import spectral_radius as _spectral_radius
from . import _steps

GATE_NAMES = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "candidate")}


def singular_values(W: np.ndarray) -> np.ndarray:
    """Singular values of W, largest first."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be a matrix, got shape {W.shape}")
    return np.linalg.svd(W, compute_uv=False)


def spectral_radius(W: np.ndarray) -> float:
    """max |eigenvalue| of a square matrix."""
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be a square matrix, got shape {W.shape}")
    return _spectral_radius(W)


def spectrum(net) -> dict:
    """{"layers.l.W": {"spectral_radius": [...per gate block], "max_singular": [...],
    "min_singular": [...], "blocks": gate names}} for every layer's recurrent W."""
    summary = {}
    for index, layer in enumerate(net.layers):
        for name, W in layer.params.items():
            if name not in ("W", "W_reverse"):
                continue
            H = layer.hidden_size if hasattr(layer, "hidden_size") else W.shape[1]   # rows per gate block
            blocks = [W[s:s + H] for s in range(0, W.shape[0], H)]
            svals = [singular_values(block) for block in blocks]
            summary[f"layers.{index}.{name}"] = {
                "blocks": list(GATE_NAMES.get(getattr(layer, "cell", ""), ("W",)))[:len(blocks)],
                # a block is H x P for an LSTM with projection: no eigenvalues of a non-square map
                "spectral_radius": [spectral_radius(block) if block.shape[0] == block.shape[1] else float("nan")
                                    for block in blocks],
                "max_singular": [float(s[0]) for s in svals],
                "min_singular": [float(s[-1]) for s in svals],
            }
    return summary


def _derivatives(layer, cache, h: np.ndarray) -> np.ndarray:
    """Activation derivatives relative to their maximum, stacked on the last axis."""
    cell = getattr(layer, "cell", None)
    if cell == "rnn":
        if layer.nonlinearity == "tanh":
            return 1.0 - h * h                                   # tanh' / 1
        return (h > 0).astype(np.float64)                        # relu': 0 for dead units
    if cell == "mingru":                                          # its only nonlinearity: the update gate
        return 4 * cache.z * (1 - cache.z)
    if cell == "minlstm":
        return np.concatenate([4 * cache.f * (1 - cache.f), 4 * cache.i * (1 - cache.i)], axis=-1)
    gates = cache.gates                                          # post-nonlinearity values
    H = layer.hidden_size
    if cell == "lstm":
        i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
        return np.concatenate([4 * i * (1 - i), 4 * f * (1 - f), 1 - g * g, 4 * o * (1 - o)], axis=-1)
    if cell == "gru":
        r, z, n = (gates[..., k * H:(k + 1) * H] for k in range(3))
        return np.concatenate([4 * r * (1 - r), 4 * z * (1 - z), 1 - n * n], axis=-1)
    raise ValueError(f"saturation: unknown cell {cell!r}")


def saturation(net, inputs, h0=None, layer=-1, threshold: float = 0.1) -> float:
    """Share of (step, example, unit) activations whose derivative is below ``threshold``
    times its maximum (every gate counts for gated cells)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
    _steps.refuse_unsupported(net)
    index = _steps.layer_index(net, layer)
    fwd = _steps.eval_forward(net, inputs, h0)
    d = _derivatives(net.layers[index], fwd.caches[index], fwd.hidden[index])
    return float(np.mean(d < threshold))


def gate_means(net, inputs, h0=None, layer=-1) -> dict:
    """{gate name: (T,) mean over batch and units} for LSTM/GRU layers; {} for the RNN."""
    _steps.refuse_unsupported(net)
    index = _steps.layer_index(net, layer)
    target = net.layers[index]
    cell = getattr(target, "cell", None)
    if cell not in GATE_NAMES:
        return {}
    fwd = _steps.eval_forward(net, inputs, h0)
    gates = fwd.caches[index].gates                              # (T, B, G*H)
    H = target.hidden_size
    return {name: gates[..., k * H:(k + 1) * H].mean(axis=(1, 2)) for k, name in enumerate(GATE_NAMES[cell])}
