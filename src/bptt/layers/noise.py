"""Recurrent regularisers inside a layer's time loop: variational recurrent dropout and zoneout.

    recurrent dropout (Gal & Ghahramani 2016):  W h_{t-1}  ->  W (m ⊙ h_{t-1})
        m ~ Bernoulli(1 - p) / (1 - p), (B, H): one mask per sequence, the same at every step,
        on the h_{t-1} that enters the recurrent product(s) only (a GRU's (1 - z) ⊙ h_{t-1} and an
        LSTM's c_{t-1} are not masked); nothing at evaluation.
    zoneout (Krueger et al. 2017):  h_t = d_t ⊙ h_{t-1} + (1 - d_t) ⊙ h̃_t
        h̃_t is the cell's ordinary update, d_t ~ Bernoulli(p) per unit and step (1 = the unit keeps
        its previous value); at evaluation d_t is replaced by its expectation p. An LSTM zones out
        both of its states with masks of their own, as in the paper:
            c_t = d^c_t ⊙ c_{t-1} + (1 - d^c_t) ⊙ c̃_t,   c̃_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
            h_t = d^h_t ⊙ h_{t-1} + (1 - d^h_t) ⊙ o_t ⊙ tanh(c̃_t)

BPTT through them, for the drawn masks (so the gradient is exact, and finite differences under
the same masks check it):

    recurrent dropout:  dE/dW += da_t^T (m ⊙ h_{t-1});   dE/dh_{t-1} gets m ⊙ (da_t W)
    zoneout:            dE/dh̃_t = (1 - d_t) ⊙ dE/dh_t;   dE/dh_{t-1} gets d_t ⊙ dE/dh_t

``Network`` draws the masks (``recurrent_dropout=p``, ``zoneout=p``; from ``net.dropout_rng``,
training mode only) and hands each layer (each direction of a bidirectional one) a ``LayerNoise``
as its ``noise`` attribute for the length of one forward call; the layer keeps it in its cache for
backward. A layer with noise runs its reference loop (layers/), never a fast path: the kernels
know no masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerNoise:
    """The masks one layer's forward call uses (any of them may be off).

    recurrent: (B, H) inverted keep-mask in {0, 1/(1-p)} on h_{t-1} before W, or None.
    zoneout:   one (T, B, size) 0/1 array per state (the layer's ``state_names`` order: (h,) or
               (h, c)), 1 = keep the previous value; or None (no masks drawn: evaluation).
    zoneout_p: the zoneout rate p; with ``zoneout=None`` and p > 0 the layer uses d_t = p (the
               expectation, evaluation mode); 0.0 = no zoneout.
    """

    recurrent: np.ndarray | None = None
    zoneout: tuple | None = None
    zoneout_p: float = 0.0

    @property
    def active(self) -> bool:
        return self.recurrent is not None or self.zoneout is not None or self.zoneout_p > 0.0

    @property
    def has_zoneout(self) -> bool:
        return self.zoneout is not None or self.zoneout_p > 0.0

    def zone(self, state: int, t: int):
        """d_t of state ``state`` (0 = h, 1 = c) at step t: a (B, size) 0/1 array in training, the
        float p at evaluation, None without zoneout. ``d * h_prev + (1 - d) * h_new`` works for both."""
        if self.zoneout is not None:
            return self.zoneout[state][t]
        return self.zoneout_p if self.zoneout_p > 0.0 else None

    def take(self, start: int, stop: int, rows: np.ndarray) -> "LayerNoise":
        """The masks of time steps [start, stop) and batch rows ``rows`` (an index array), for one
        piece of a packed batch (layers/packed.py): the recurrent mask follows its sequence, the
        zoneout masks their steps."""
        recurrent = None if self.recurrent is None else self.recurrent[rows]
        zoneout = None if self.zoneout is None else tuple(np.ascontiguousarray(d[start:stop][:, rows])
                                                          for d in self.zoneout)
        return LayerNoise(recurrent, zoneout, self.zoneout_p)


# The four small pieces the reference loops of the LSTM family write their masks with.
def masked(m, v):
    """Recurrent dropout's m * v ((B, H) mask, broadcast over any leading axes); v without a mask."""
    return v if m is None else m * v


def zoned(d, prev, new):
    """Zoneout's d * prev + (1 - d) * new (d: a (B, H) 0/1 mask or the float p); ``new`` without zoneout."""
    return new if d is None else d * prev + (1 - d) * new


def unzoned(d, grad):
    """Zoneout's backward: dE/d(state_t) split into (its share to the previous state, its share to
    the cell's update) = (d * grad, (1 - d) * grad); (0, grad) without zoneout."""
    return (0.0, grad) if d is None else (d * grad, (1 - d) * grad)


def zone(noise: LayerNoise | None, state: int, t: int):
    """d_t of state 0 (h) or 1 (c) at step t, or None (no noise, or no zoneout)."""
    return None if noise is None else noise.zone(state, t)
