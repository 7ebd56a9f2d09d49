"""numba kernels for one LSTM time step's element-wise work (see bptt/layers/lstm.py for the
equations and the numpy reference). Each kernel replaces ~10 numpy calls per step with one
pass over the step's (B, H) units; the step's GEMM stays in numpy.

Layout as in the numpy path: gate rows (B, 4H) = [i, f, g, o], torch's order. Each row is cut
into one 1-D view per gate and the inner loop indexes those views with the loop counter alone:
with computed offsets (``a[b, H + j]``) numba's negative-index check stopped LLVM from
vectorising, and the step ran 4x slower than numpy.
"""

from __future__ import annotations

from .common import jit, one, sigmoid, tanh


@jit
def forward_step(a, recurrent, c_prev, c, tanh_c, h):
    """a (B, 4H): U x_t + b on entry, the gates [i, f, g, o] on exit (kept for backward);
    recurrent (B, 4H) = h_{t-1} W^T; c_prev (B, H) = c_{t-1}. Writes c_t, tanh(c_t), h_t (B, H)."""
    B, H = c.shape
    for b in range(B):
        a_i, a_f, a_g, a_o = a[b, :H], a[b, H:2 * H], a[b, 2 * H:3 * H], a[b, 3 * H:]
        r_i, r_f, r_g, r_o = (recurrent[b, :H], recurrent[b, H:2 * H], recurrent[b, 2 * H:3 * H],
                              recurrent[b, 3 * H:])
        c_prev_b, c_b, tanh_c_b, h_b = c_prev[b], c[b], tanh_c[b], h[b]
        for j in range(H):                      # contiguous units: LLVM vectorises this loop
            i = sigmoid(a_i[j] + r_i[j])        # input gate
            f = sigmoid(a_f[j] + r_f[j])        # forget gate
            g = tanh(a_g[j] + r_g[j])           # candidate cell
            o = sigmoid(a_o[j] + r_o[j])        # output gate
            a_i[j], a_f[j], a_g[j], a_o[j] = i, f, g, o
            c_t = f * c_prev_b[j] + i * g       # c_t = f c_{t-1} + i g
            c_b[j] = c_t
            tc = tanh(c_t)
            tanh_c_b[j] = tc
            h_b[j] = o * tc                     # h_t = o tanh(c_t)


@jit
def backward_step(dh_above, dh_next, dc, gates, c_prev, tanh_c, dh_total, da):
    """One step of the LSTM's BPTT, element-wise part.

    dh_above (B, H): dE/dh_t from the readout or the layer above; dh_next (B, H): dE/dh_t
    through step t+1 (the previous step's ``da @ W``); dc (B, H): dE/dc_t through step t+1 on
    entry, dE/dc_{t-1} on exit. Writes dh_total = dE/dh_t (all paths) and da (B, 4H) = dE/da_t
    for [i, f, g, o]; the caller then computes dE/dh_{t-1} = da @ W."""
    B, H = dc.shape
    for b in range(B):
        i_, f_, g_, o_ = gates[b, :H], gates[b, H:2 * H], gates[b, 2 * H:3 * H], gates[b, 3 * H:]
        da_i, da_f, da_g, da_o = da[b, :H], da[b, H:2 * H], da[b, 2 * H:3 * H], da[b, 3 * H:]
        above, through_next, dc_b, total = dh_above[b], dh_next[b], dc[b], dh_total[b]
        c_prev_b, tanh_c_b = c_prev[b], tanh_c[b]
        for j in range(H):
            dht = above[j] + through_next[j]                    # dE/dh_t, all paths
            total[j] = dht
            i, f, g, o, tc = i_[j], f_[j], g_[j], o_[j], tanh_c_b[j]
            dct = dc_b[j] + dht * ((one(tc) - tc * tc) * o)     # dE/dc_t = dc_next + dh_t o (1 - tanh^2 c_t)
            da_i[j] = ((one(i) - i) * i * g) * dct              # da_i = dc_t g i (1 - i)
            da_f[j] = ((one(f) - f) * f * c_prev_b[j]) * dct    # da_f = dc_t c_{t-1} f (1 - f)
            da_g[j] = ((one(g) - g * g) * i) * dct              # da_g = dc_t i (1 - g^2)
            da_o[j] = ((one(o) - o) * o * tc) * dht             # da_o = dh_t tanh(c_t) o (1 - o)
            dc_b[j] = dct * f                                   # dE/dc_{t-1} = dc_t f
