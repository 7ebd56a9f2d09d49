"""Readout "last" and "mean": one output per sequence (many-to-one), and its adjoint.

    last:  p_b = h_{L_b, b}          (bidirectional: [->h at step L_b ; <-h at step 1], torch's h_n convention)
    mean:  p_b = (1/L_b) sum_{t <= L_b} h_{t, b}

h (T, B, W) with zeros at padded steps, lengths L (B,) or None (all T); p (B, W) goes to the readout.
``unpool`` sends dE/dp back to dE/dh_t: at step L_b (and step 1 for the reverse half), or 1/L_b at
every valid step.
"""

from __future__ import annotations

import numpy as np

from .packed import valid_mask


def pool(h: np.ndarray, lengths, mode: str, bidirectional: bool) -> np.ndarray:
    """h (T, B, W) -> (B, W) over each sequence's valid steps."""
    T, B, W = h.shape
    ends = np.full(B, T) if lengths is None else lengths
    if mode == "mean":
        return h.sum(axis=0) / ends[:, None].astype(h.dtype)      # padded steps of h are zero
    last = h[np.maximum(ends - 1, 0), np.arange(B)]               # h at each sequence's last valid step
    if bidirectional:                                             # reverse direction: its state after reading x_1
        H = W // 2
        last[:, H:] = h[0, :, H:]
    return last


def unpool(dpooled: np.ndarray, T: int, lengths, mode: str, bidirectional: bool) -> np.ndarray:
    """dE/d(pooled) (B, W) -> dE/dh_t (T, B, W) for the top layer (the adjoint of ``pool``)."""
    B, W = dpooled.shape
    ends = np.full(B, T) if lengths is None else lengths
    dh = np.zeros((T, B, W), dpooled.dtype)
    if mode == "mean":
        dh += dpooled / ends[:, None].astype(dpooled.dtype)
        if lengths is not None:
            dh *= valid_mask(lengths, T, dh.dtype)[:, :, None]
        return dh
    rows = np.arange(B)
    if bidirectional:
        H = W // 2
        dh[ends - 1, rows, :H] = dpooled[:, :H]
        dh[0, :, H:] += dpooled[:, H:]
    else:
        dh[ends - 1, rows] = dpooled
    return dh
