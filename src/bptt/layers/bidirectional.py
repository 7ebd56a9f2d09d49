"""A bidirectional layer: one layer reads the sequence forwards, a second one reads it
backwards, and their outputs are concatenated like PyTorch's ``bidirectional=True``:

    ->h_t = cell(x_t, ->h_{t-1})          t = 1 .. T     (parameters U, W, b, ...)
    <-h_t = cell(x_t, <-h_{t+1})          t = T .. 1     (parameters U_reverse, W_reverse, ...)
    h_t   = [->h_t ; <-h_t]               (T, B, 2H)

Any layer following the layer protocol (``RNNLayer``, ``LSTMLayer``, ``GRULayer``) can be
wrapped. The reverse layer is the same cell run on x[::-1]; its outputs are flipped back
so h_t lines up with x_t. Backward splits dE/dh_t into the two halves and runs each
direction's own BPTT; dE/dx_t is the sum of both directions' contributions.

State: each state array is (2, B, H) with index 0 the forward and 1 the reverse
direction -- the per-layer slice of torch's (num_layers * 2, B, H). Final states are
the forward direction's h_T and the reverse direction's state after reading x_1.
Parameter names: the forward layer's names, and the same names + ``_reverse`` for the
reverse layer (torch's suffix), e.g. ``U_reverse``. ``step()`` is not defined: a
bidirectional layer needs the whole sequence.
"""

from __future__ import annotations

import numpy as np

SUFFIX = "_reverse"


class BidirectionalLayer:
    """Two layers of the same cell, one per direction; outputs (T, B, 2H)."""

    def __init__(self, forward_layer, reverse_layer):
        self.forward_layer = forward_layer
        self.reverse_layer = reverse_layer
        self.cell = forward_layer.cell
        self.state_names = forward_layer.state_names
        self.hidden_size = forward_layer.hidden_size
        self.output_width = getattr(forward_layer, "output_width", forward_layer.hidden_size)   # per direction
        if hasattr(forward_layer, "state_sizes"):
            self.state_sizes = forward_layer.state_sizes
        self.input_size = forward_layer.input_size
        self.dtype = forward_layer.dtype
        # The same arrays the sub-layers compute with, so optimisers' in-place updates reach them.
        self.params = dict(forward_layer.params)
        self.params.update({name + SUFFIX: p for name, p in reverse_layer.params.items()})

    def zero_state(self, batch: int) -> tuple:
        return tuple(np.stack([f, r]) for f, r in zip(self.forward_layer.zero_state(batch),
                                                      self.reverse_layer.zero_state(batch)))

    def forward(self, x: np.ndarray, state0: tuple):
        """x (T, B, I) or ids (T, B); state0: per state name an array (2, B, H).
        Returns h (T, B, 2H), state_T (per name (2, B, H)), cache."""
        h_fwd, state_fwd, cache_fwd = self.forward_layer.forward(x, tuple(s[0] for s in state0))
        x_rev = np.ascontiguousarray(x[::-1])                          # the reverse layer reads x_T .. x_1
        h_rev, state_rev, cache_rev = self.reverse_layer.forward(x_rev, tuple(s[1] for s in state0))
        h = np.concatenate([h_fwd, h_rev[::-1]], axis=2)              # (T, B, 2H), h_rev flipped back
        final = tuple(np.stack([f, r]) for f, r in zip(state_fwd, state_rev))
        return h, final, (cache_fwd, cache_rev)

    def step(self, x_t, state):
        raise ValueError("step() needs the whole sequence for a bidirectional layer: use forward()")

    def backward(self, dh: np.ndarray, dstate: tuple | None, cache: tuple, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, 2H) = dE/dh_t; dstate per state name (2, B, H) (entries may be None) or None.
        Accumulates (+=) into grads (names with and without ``_reverse``).

        Returns dx (T, B, I) or None for ids, dstate0 (per name (2, B, H)), dh_total (T, B, 2H).
        ``input_grad=False`` skips dE/dx (returns None). ``overwrite_dh`` is accepted for the layer
        protocol; the halves below are this layer's own copies, so the directions always reuse them."""
        H = self.output_width                                         # each direction's share of dh
        cache_fwd, cache_rev = cache
        grads_fwd = {name: grads[name] for name in self.forward_layer.params}
        grads_rev = {name: grads[name + SUFFIX] for name in self.reverse_layer.params}
        if dstate is None:
            dstate_fwd = dstate_rev = None
        else:
            dstate_fwd = tuple(None if d is None else d[0] for d in dstate)
            dstate_rev = tuple(None if d is None else d[1] for d in dstate)
        # Fresh copies (.copy(), never a view even when T = B = 1), so each direction may overwrite its own.
        dh_fwd = dh[:, :, :H].copy()
        dh_rev = dh[::-1, :, H:].copy()                               # in the reverse layer's time order
        dx_fwd, ds0_fwd, total_fwd = self.forward_layer.backward(dh_fwd, dstate_fwd, cache_fwd, grads_fwd,
                                                                 input_grad=input_grad, overwrite_dh=True)
        dx_rev, ds0_rev, total_rev = self.reverse_layer.backward(dh_rev, dstate_rev, cache_rev, grads_rev,
                                                                 input_grad=input_grad, overwrite_dh=True)
        dx = None if dx_fwd is None else dx_fwd + dx_rev[::-1]        # x_t feeds both directions
        dstate0 = tuple(np.stack([f, r]) for f, r in zip(ds0_fwd, ds0_rev))
        dh_total = np.concatenate([total_fwd, total_rev[::-1]], axis=2)
        return dx, dstate0, dh_total
