"""Variable-length sequences, as PyTorch's packed sequences compute them.

A batch padded to T steps with ``lengths`` (B,): sequence b is its first L_b steps.

    h^b_t = cell(x^b_t, h^b_{t-1})      for t <= L_b          (its own steps only)
    h^b_t = 0 (output)                   for t >  L_b          (padding: no output, no loss)
    final state of b = its state at step L_b
    reverse direction: reads x^b_{L_b}, ..., x^b_1  (it starts at b's own last step)

How it is computed: sort the batch by length (longest first) and cut time where a sequence
ends. Between two cuts the same rows are active, so each piece is one ordinary whole-sequence
call of the cell (its hoisted GEMMs, its compiled kernels, everything), on the active rows
only -- padded steps cost nothing:

    lengths sorted  [6, 6, 4, 2]      pieces:  t in [0, 2) rows 0..3
                                              t in [2, 4) rows 0..2
                                              t in [4, 6) rows 0..1

Each piece starts from the state the previous piece ended in (its first rows), and a row's
final state is taken where its sequence ends. BPTT runs the pieces backwards: a piece's
dE/d(state at its end) is dE/dh0 of the piece after it for the rows that go on, and
dE/d(final state) for the rows that end there. The gradient is exact: it is the same chain
rule, cut at the points where the active batch changes (tests check it against finite
differences and against torch's ``pack_padded_sequence``).

Cuts are not free: each piece is one more call of the cell (a few dozen numpy calls). So
cuts are only made where they pay (``choose_pieces``: a small dynamic programme over the
distinct lengths weighing a piece's fixed cost against the row-steps it saves). A sequence
that ends inside a piece runs on to the piece's end on padding: those steps' outputs are set
to zero and receive no gradient, its final state is read at its own last step, and
dE/d(final h) enters there as part of dE/dh_t from above -- the steps after it then carry
exactly zero gradient, so the result is the same. The LSTM's cell state has no such entry
point, so where dE/d(final c) may be non-zero (``final_grad=True``), an LSTM cuts at every
length.

The reverse direction of a bidirectional layer reads each sequence reversed within its own
length (``reverse_within``), so it too is a forward pass over packed sequences.

Length 0 is allowed here (not at the public API): the sequence is not active at all and its
state passes through unchanged. Truncated BPTT uses it for sequences that ended in an earlier chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bidirectional import BidirectionalLayer
from .factory import output_width, state_sizes


def pieces(sorted_lengths: np.ndarray) -> list:
    """(start, stop, rows) for lengths sorted descending, cut at every distinct length: rows
    0..rows-1 are active in [start, stop)."""
    cuts = sorted(set(int(n) for n in sorted_lengths if n > 0))
    return _pieces_from_cuts(sorted_lengths, cuts)


def _pieces_from_cuts(sorted_lengths: np.ndarray, cuts: list) -> list:
    out, start = [], 0
    for stop in cuts:
        out.append((start, stop, int(np.count_nonzero(sorted_lengths > start))))
        start = stop
    return out


def choose_pieces(sorted_lengths: np.ndarray, piece_cost: float) -> list:
    """Pieces that minimise  sum over pieces of (piece_cost + active rows x steps), with cuts
    only at distinct lengths and always at the longest: ``piece_cost`` is a piece's fixed cost in
    row-steps. O(K^2) for K distinct lengths (K <= B)."""
    ends = sorted(set(int(n) for n in sorted_lengths if n > 0))
    if not ends:
        return []
    points = [0] + ends                                        # candidate cuts
    active = [int(np.count_nonzero(sorted_lengths > s)) for s in points]
    best = [0.0] + [np.inf] * len(ends)                        # best[j]: cost of covering [0, points[j])
    previous = [0] * len(points)
    for j in range(1, len(points)):
        for i in range(j):
            cost = best[i] + piece_cost + active[i] * (points[j] - points[i])
            if cost < best[j]:
                best[j], previous[j] = cost, i
    cuts, j = [], len(points) - 1
    while j > 0:
        cuts.append(points[j])
        j = previous[j]
    return _pieces_from_cuts(sorted_lengths, cuts[::-1])


def piece_cost_in_row_steps(layer) -> float:
    """A piece's fixed cost (~150 us of calls, small allocations and per-piece GEMMs, forward and
    backward) in units of one sequence's step of this layer (~ 6 G H (H + I) flops at ~50 GFLOP/s): a
    model used only to decide where cutting pays. Measured (float32, 1 thread, (65, 128, 32, 64),
    lengths uniform in [16, 64], quiet machine): 40 us made 7-11 pieces and cost 3-15% more than 150 us,
    which makes 3-5; far larger values fall back towards one piece of full length (+30-50%)."""
    flops = 6.0 * sum(p.size for p in layer.params.values())     # ~ 6 G H (H + I): U and W, forward + backward
    return 150e-6 * 50e9 / flops


def reverse_within(a: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """a (T, B, ...) with each sequence b's first L_b steps reversed (padding left where it is).
    Its own inverse."""
    T = a.shape[0]
    t = np.arange(T)[:, None]                                               # (T, 1)
    index = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)    # (T, B)
    index = index.reshape(index.shape + (1,) * (a.ndim - 2))                # broadcast over features
    return np.take_along_axis(a, index, axis=0)


def valid_mask(lengths: np.ndarray, T: int, dtype) -> np.ndarray:
    """(T, B): 1 where t < L_b, else 0."""
    return (np.arange(T)[:, None] < lengths[None, :]).astype(dtype)


@dataclass
class PackedCache:
    order: np.ndarray          # (B,) the batch sorted longest first: sorted row r is batch row order[r]
    lengths: np.ndarray        # (B,) sorted
    parts: list                # (start, stop, rows, layer cache) per piece
    x_dtype: np.dtype
    x_shape: tuple


class PackedLayer:
    """A unidirectional layer run over packed sequences; the layer protocol of ``layers/``:
    ``forward(x, state0)`` and ``backward(dh, dstate, cache, grads, ...)``, in the caller's batch order.
    ``final_grad=False`` promises that backward gets no dE/d(final state) (a training step): an
    LSTM may then let sequences end inside a piece too (see the module docstring)."""

    def __init__(self, layer, lengths: np.ndarray, final_grad: bool = True):
        self.layer = layer
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.state_names = layer.state_names
        self.hidden_size = layer.hidden_size
        self.final_grad = final_grad
        self.keep_dh = True             # False (the lean training step): dh_total is not assembled, None is returned

    def _pieces(self, lengths: np.ndarray) -> list:
        if self.final_grad and len(self.state_names) > 1:      # dE/dc_final needs a cut at every length
            return pieces(lengths)
        # A piece also costs about two whole-batch steps (its own weight-gradient GEMMs, W^T copies, a
        # kernel call each way): measured at H = 512, B = 64, where 24 pieces cost 1.37x of 3.
        return choose_pieces(lengths, piece_cost_in_row_steps(self.layer) + 2 * len(lengths))

    def forward(self, x: np.ndarray, state0: tuple):
        """x (T, B, I) or ids (T, B); state0 per state name (B, H).
        Returns h (T, B, H) (zeros at padded steps), final state (each row's at its own last step), cache."""
        layer = self.layer
        T, B = x.shape[:2]
        order = np.argsort(-self.lengths, kind="stable")        # sorted row r is the caller's row order[r]
        lengths = self.lengths[order]
        state = tuple(np.ascontiguousarray(s[order]) for s in state0)
        final = [np.array(s) for s in state0]                    # caller's order; length 0 keeps its state
        h = np.zeros((T, B, output_width(layer)), layer.dtype)   # caller's order: no un-sorting pass
        parts = []
        noise = getattr(layer, "noise", None)                    # recurrent dropout / zoneout (layers/noise.py)
        for start, stop, rows in self._pieces(lengths):
            active = order[:rows]                                # the caller's rows of this piece
            x_piece = x[start:stop, active]                      # gathered: a fresh contiguous array
            if noise is not None:                                # each sequence keeps its masks across pieces
                layer.noise = noise.take(start, stop, active)
            try:
                h_piece, state, cache = layer.forward(x_piece, tuple(s[:rows] for s in state))
            finally:
                if noise is not None:
                    layer.noise = noise
            h[start:stop, active] = h_piece
            parts.append((start, stop, rows, cache))
            ending = np.flatnonzero(lengths[:rows] <= stop)        # these rows' sequences end in this piece
            if len(ending):
                step = lengths[ending] - start - 1                  # their last step, piece-local
                for f, states in zip(final, _states_of_piece(layer, h_piece, cache)):
                    f[order[ending]] = states[step, ending]
                for r in ending[lengths[ending] < stop]:            # ended inside: padding steps ran,
                    h[lengths[r]:stop, order[r]] = 0.0              # and outputs at padded steps are zero
        return h, tuple(final), PackedCache(order, lengths, parts, x.dtype, x.shape)

    def backward(self, dh: np.ndarray, dstate, cache: PackedCache, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, H) = dE/dh_t from above, zero at padded steps (the Network zeroes dE/dz there,
        and a packed layer's dE/dx is zero there in turn); dstate per state name
        (B, H) = dE/d(final state) or None. Accumulates into grads; returns dx (T, B, I) (zeros at
        padded steps) or None, dE/dstate0, dh_total (T, B, H) (zeros at padded steps)."""
        layer = self.layer
        order, lengths = cache.order, cache.lengths
        T, B = cache.x_shape[:2]
        H = output_width(layer)
        sizes = state_sizes(layer)
        dtype = np.result_type(dh.dtype, layer.dtype)
        names = len(self.state_names)
        dfinal = [np.zeros((B, sizes[i]), dtype) if dstate is None or dstate[i] is None
                  else np.asarray(dstate[i], dtype)[order] for i in range(names)]      # sorted
        want_dx = input_grad and cache.x_dtype.kind not in "iu"
        dx = np.zeros(cache.x_shape, dtype) if want_dx else None                      # caller's order
        dh_total = np.zeros((T, B, H), dtype) if self.keep_dh else None               # caller's order
        carry = None                                              # dE/dstate0 of the piece after this one
        for start, stop, rows, piece_cache in reversed(cache.parts):
            active = order[:rows]
            dh_piece = np.asarray(dh[start:stop, active], dtype)    # gathered: a fresh array we may overwrite
            # dE/d(state at `stop`): rows going on get the later piece's dE/dstate0, rows ending at
            # `stop` get dE/d(final state); a row ending inside the piece gets dE/d(final h) at its
            # own last step, as part of dE/dh_t from above (and nothing at `stop`).
            dstate_piece = [np.zeros((rows, size), dtype) for size in sizes]
            at_stop = lengths[:rows] == stop
            for d, f in zip(dstate_piece, dfinal):
                d[at_stop] = f[:rows][at_stop]
            inside = np.flatnonzero(lengths[:rows] < stop)
            if len(inside):
                if names > 1 and np.any(dfinal[1][inside] != 0):
                    raise ValueError("dE/d(final c) is given, but this LSTM forward let sequences end inside a "
                                     "piece (final_grad=False): run forward with final_grad=True")
                dh_piece[lengths[inside] - start - 1, inside] += dfinal[0][inside]
            if carry is not None:
                going_on = carry[0].shape[0]
                for d, c in zip(dstate_piece, carry):
                    d[:going_on] = c
            dx_piece, carry, total = layer.backward(dh_piece, tuple(dstate_piece), piece_cache, grads,
                                                    input_grad=want_dx, overwrite_dh=True)
            if dh_total is not None:
                dh_total[start:stop, active] = total
            if want_dx:
                dx[start:stop, active] = dx_piece
        dstate0 = dfinal                                          # rows never active: passed through
        if carry is not None:
            first = carry[0].shape[0]
            for d, c in zip(dstate0, carry):
                d[:first] = c
        # Steps run on padding received no gradient from above and none from later steps (their rows'
        # state gradient entered at the last valid step), so their dE/dh_t and dE/dx_t are exactly 0.
        inverse = np.argsort(order)
        return dx, tuple(d[inverse] for d in dstate0), dh_total


def _states_of_piece(layer, h_piece: np.ndarray, cache) -> tuple:
    """Per state name, the state after each step of a piece, (steps, rows, H): h is the output;
    an LSTM's c is in its cache (cs[t+1] = c_t)."""
    out = []
    for name in layer.state_names:
        out.append(h_piece if name == "h" else getattr(cache, name + "s")[1:])
    return tuple(out)


class PackedBidirectional:
    """A bidirectional layer over packed sequences: the forward direction as ``PackedLayer``, the
    reverse direction as ``PackedLayer`` on each sequence reversed within its own length."""

    def __init__(self, layer: BidirectionalLayer, lengths: np.ndarray, final_grad: bool = True):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.forward_layer = PackedLayer(layer.forward_layer, self.lengths, final_grad)
        self.reverse_layer = PackedLayer(layer.reverse_layer, self.lengths, final_grad)
        self.state_names = layer.state_names
        self.hidden_size = output_width(layer)          # what each direction outputs per step
        self.layer = layer

    def forward(self, x: np.ndarray, state0: tuple):
        """state0 per name (2, B, H); returns h (T, B, 2H), final per name (2, B, H), cache."""
        h_fwd, final_fwd, cache_fwd = self.forward_layer.forward(x, tuple(s[0] for s in state0))
        x_rev = reverse_within(x, self.lengths)                   # b reads x_{L_b}, ..., x_1
        h_rev, final_rev, cache_rev = self.reverse_layer.forward(x_rev, tuple(s[1] for s in state0))
        h = np.concatenate([h_fwd, reverse_within(h_rev, self.lengths)], axis=2)
        final = tuple(np.stack([f, r]) for f, r in zip(final_fwd, final_rev))
        return h, final, (cache_fwd, cache_rev)

    def backward(self, dh: np.ndarray, dstate, cache: tuple, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        H = self.hidden_size
        cache_fwd, cache_rev = cache
        inner = self.layer
        grads_fwd = {name: grads[name] for name in inner.forward_layer.params}
        grads_rev = {name: grads[name + "_reverse"] for name in inner.reverse_layer.params}
        dstate_fwd = None if dstate is None else tuple(None if d is None else d[0] for d in dstate)
        dstate_rev = None if dstate is None else tuple(None if d is None else d[1] for d in dstate)
        dx_f, ds0_f, total_f = self.forward_layer.backward(dh[:, :, :H], dstate_fwd, cache_fwd, grads_fwd,
                                                           input_grad=input_grad)
        dh_rev = reverse_within(dh[:, :, H:], self.lengths)
        dx_r, ds0_r, total_r = self.reverse_layer.backward(dh_rev, dstate_rev, cache_rev, grads_rev,
                                                           input_grad=input_grad)
        dx = None if dx_f is None else dx_f + reverse_within(dx_r, self.lengths)
        dstate0 = tuple(np.stack([f, r]) for f, r in zip(ds0_f, ds0_r))
        dh_total = np.concatenate([total_f, reverse_within(total_r, self.lengths)], axis=2)
        return dx, dstate0, dh_total


def packed(layer, lengths: np.ndarray, final_grad: bool = True):
    """The layer, run over packed sequences of these lengths (``final_grad``: see ``PackedLayer``)."""
    if isinstance(layer, BidirectionalLayer):
        return PackedBidirectional(layer, lengths, final_grad)
    return PackedLayer(layer, lengths, final_grad)
