"""Compiled element-wise passes of minGRU and minLSTM (layers/mingru.py, layers/minlstm.py).

Their recurrence has no matrix, so after the one input GEMM a step is pure element-wise work:
numpy spends a dozen passes over (T, B, H) arrays on it (gates, the scan's a_t and b_t, the scan,
then as many backwards). Here each direction is one pass, the scan included. The gate sigmoids are
computed by numpy before the call (its SIMD tanh), so every number is formed by the same operations
in the same order as on the numpy path -- the same bits (tests/test_min_cells.py checks). ``one`` is
1 in the arrays' dtype: a float64 literal would promote float32 arithmetic to float64.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True)
def mingru_forward(z, A, h0, h, one):                 # z (T, B, H) = sigmoid(A_z); A (T, B, 2H); h (T, B, H)
    T, B, H = z.shape
    for t in range(T):
        for i in range(B):
            for j in range(H):
                prev = h0[i, j] if t == 0 else h[t - 1, i, j]
                zt = z[t, i, j]
                h[t, i, j] = (one - zt) * prev + zt * A[t, i, H + j]      # (1 - z) h_{t-1} + z h~


@numba.njit(cache=True)
def mingru_backward(z, A, h0, h, dh, carry, dA, g, one):
    """g_t = dh_t + (1 - z_{t+1}) g_{t+1}; dA = [dz z(1-z), g z]; returns dE/dh0 (B, H)."""
    T, B, H = z.shape
    c = carry.copy()
    for t in range(T - 1, -1, -1):
        for i in range(B):
            for j in range(H):
                gt = dh[t, i, j] + c[i, j]
                g[t, i, j] = gt
                zt = z[t, i, j]
                prev = h0[i, j] if t == 0 else h[t - 1, i, j]
                da = gt * prev
                dA[t, i, j] = (gt * A[t, i, H + j] - da) * zt * (one - zt)
                dA[t, i, H + j] = gt * zt
                c[i, j] = (one - zt) * gt
    return c


@numba.njit(cache=True)
def minlstm_forward(f, ig, A, h0, h, one):            # f, ig = sigmoid(A_f), sigmoid(A_i); A (T, B, 3H)
    T, B, H = f.shape
    for t in range(T):
        for i in range(B):
            for j in range(H):
                prev = h0[i, j] if t == 0 else h[t - 1, i, j]
                ft, it = f[t, i, j], ig[t, i, j]
                s = ft + it
                h[t, i, j] = (ft / s) * prev + (it / s) * A[t, i, 2 * H + j]   # f' h_{t-1} + i' h~


@numba.njit(cache=True)
def minlstm_backward(f, ig, A, h0, h, dh, carry, dA, g, one):
    T, B, H = f.shape
    c = carry.copy()
    for t in range(T - 1, -1, -1):
        for i in range(B):
            for j in range(H):
                gt = dh[t, i, j] + c[i, j]
                g[t, i, j] = gt
                ft, it = f[t, i, j], ig[t, i, j]
                s = ft + it
                prev = h0[i, j] if t == 0 else h[t - 1, i, j]
                da = gt * prev
                di_norm = gt * A[t, i, 2 * H + j]
                s2 = s * s
                dA[t, i, j] = (it / s2) * (da - di_norm) * ft * (one - ft)
                dA[t, i, H + j] = (ft / s2) * (di_norm - da) * it * (one - it)
                dA[t, i, 2 * H + j] = gt * (it / s)
                c[i, j] = (ft / s) * gt
    return c
