"""Compiled loops of the diagonal linear scan (layers/scan.py): h_t = a_t * h_{t-1} + b_t and its
reverse scan. Element-wise only, so one pass over (T, B, H) each way instead of T numpy calls.
The numpy loops in layers/scan.py are the reference (tests/test_min_cells.py); the same two
roundings per element (a product, then a sum: no fused multiply-add), so the same numbers."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def forward(a, b, h0, h):                       # a, b, h (T, B, H); h0 (B, H)
    T, B, H = a.shape
    for t in range(T):
        for i in range(B):
            for j in range(H):
                prev = h0[i, j] if t == 0 else h[t - 1, i, j]
                h[t, i, j] = a[t, i, j] * prev + b[t, i, j]


@numba.njit(cache=True)
def backward(a, dh, carry, g):                  # g_t = dh_t + a_{t+1} g_{t+1}; returns a_1 g_1 (B, H)
    T, B, H = a.shape
    c = carry.copy()
    for t in range(T - 1, -1, -1):
        for i in range(B):
            for j in range(H):
                gt = dh[t, i, j] + c[i, j]
                g[t, i, j] = gt
                c[i, j] = a[t, i, j] * gt
    return c
