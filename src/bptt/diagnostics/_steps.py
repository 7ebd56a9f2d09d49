"""Shared plumbing for the diagnostics: pick a layer, rerun it one step at a time.

The diagnostics never look inside a cell. They only use the layer protocol every cell
obeys (``forward(x, state0) -> (h, state_T, cache)``, ``backward(dh, dstate_T, cache,
grads) -> (dx, dstate0, dh_total)``) on sequences of length 1. Running a layer on step k
alone, from the state it reached at step k-1, reproduces step k of the full forward pass
exactly, and its backward then gives

- the gradient that reaches state_{k-1} through step k alone (the lecture's dh_k/dh_{k-1}),
- the *immediate* parameter gradient of step k (the lecture's dh_k/dW with h_{k-1} fixed).

So the same code serves the RNN, LSTM and GRU layers (and any later cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def layer_index(net, layer) -> int:
    """``layer`` as a non-negative index into ``net.layers`` (negative counts from the top)."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise ValueError(f"layer must be an integer, got {layer!r}")
    L = len(net.layers)
    if not -L <= layer < L:
        raise ValueError(f"layer must be in [{-L}, {L}) for a network with {L} layers, got {layer}")
    return int(layer) % L


def split_param(net, param, layer) -> tuple[int, str]:
    """Accept 'W' (with ``layer``) or a full name 'layers.0.W'. Returns (layer index, short name)."""
    if not isinstance(param, str):
        raise ValueError(f"param must be a parameter name such as 'W' or 'layers.0.W', got {param!r}")
    if param.startswith("layers."):
        parts = param.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"param must look like 'layers.<index>.<name>', got {param!r}")
        index, name = layer_index(net, int(parts[1])), parts[2]
    else:
        index, name = layer_index(net, layer), param
    names = tuple(net.layers[index].params)
    if name not in names:
        raise ValueError(f"param must be a recurrent-layer parameter, one of {names} "
                         f"(or 'layers.{index}.<name>'), got {param!r}")
    return index, name


def refuse_unsupported(net) -> None:
    """Bidirectional layers run half of their work backwards in time: the per-step view
    here (state_{k-1} -> state_k) does not apply to them."""
    if getattr(net, "bidirectional", False):
        raise ValueError("diagnostics need a unidirectional network, got bidirectional=True")


def eval_forward(net, inputs, h0):
    """net.forward without dropout (diagnostics describe the deterministic network)."""
    training = getattr(net, "training", None)
    if training:
        net.training = False
    try:
        return net.forward(inputs, h0)
    finally:
        if training:
            net.training = training


@dataclass
class Steps:
    """Layer ``index`` rerun one step at a time: caches[k] reproduces step k exactly."""

    index: int
    layer_input: np.ndarray   # (T, B, I) or ids (T, B): what the layer read
    states: list              # states[k] = state tuple after step k-1 (states[0] = initial state)
    caches: list              # caches[k]: cache of the length-1 forward of step k


def layer_input(fwd, index: int) -> np.ndarray:
    return fwd.inputs if index == 0 else fwd.hidden[index - 1]


def initial_state(net, h0, batch: int, index: int) -> tuple:
    return net._split_state(h0, batch)[index]


def rerun_steps(net, fwd, h0, index: int) -> Steps:
    """Run layer ``index`` step by step over the sequence the full forward pass saw."""
    x = layer_input(fwd, index)
    T, B = x.shape[:2]
    layer = net.layers[index]
    state = initial_state(net, h0, B, index)
    states, caches = [state], []
    for k in range(T):
        _, state, cache = layer.forward(x[k:k + 1], state)
        caches.append(cache)
        states.append(state)
    return Steps(index, x, states, caches)


def scratch_grads(layer) -> dict:
    return {name: np.zeros_like(p) for name, p in layer.params.items()}


def grads_from_above(net, fwd, doutputs: np.ndarray, index: int) -> np.ndarray:
    """dE/dh^l_t arriving at layer ``index`` from above (the readout, or the layer above),
    for every t: (T, B, H). Runs the top of the network backwards, weights untouched."""
    if net.readout is not None:
        dtop = net.readout.backward(doutputs, fwd.hidden[-1], {k: np.zeros_like(v)
                                                               for k, v in net.readout.params.items()})
    else:
        dtop = doutputs
    for upper in range(len(net.layers) - 1, index, -1):
        layer = net.layers[upper]
        dtop, _, _ = layer.backward(dtop, None, fwd.caches[upper], scratch_grads(layer))
    return dtop


def lengths_as_mask(net, mask, lengths, T: int, B: int):
    """Variable lengths in a per-step view: padded steps carry no loss, and a unidirectional network's
    valid steps never depend on padding (causality), so lengths act as the mask times the valid steps."""
    mask = net.check_mask(mask, T, B)
    lengths = net.check_lengths(lengths, T, B)
    if lengths is None:
        return mask
    valid = (np.arange(T)[:, None] < lengths[None, :]).astype(net.dtype)
    return valid if mask is None else mask * valid


def loss_gradient(net, fwd, targets, mask) -> tuple[np.ndarray, np.ndarray]:
    """(doutputs, step_weight): dE/dz_t for every t, and how much loss each step carries (T,)."""
    from ..losses import compute_loss                      # the loss is a sum over t: E_t's part is row t

    T, B = fwd.inputs.shape[:2]
    if getattr(net, "pooled", False):
        raise ValueError(f"diagnostics by time lag need one output per step; readout={net.readout_mode!r} "
                         f"has one per sequence")
    targets = net.check_targets(targets, T, B)
    mask = net.check_mask(mask, T, B)
    _, doutputs = compute_loss(net.loss, fwd.outputs, targets, mask)
    weight = np.ones(T) if mask is None else mask.sum(axis=1)
    return doutputs, weight


def check_time(name: str, t, T: int) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise ValueError(f"{name} must be an integer time step, got {t!r}")
    if not -T <= t < T:
        raise ValueError(f"{name} must be in [{-T}, {T}) for a sequence of length {T}, got {t}")
    return int(t) % T
