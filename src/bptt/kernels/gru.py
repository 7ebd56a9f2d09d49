"""numba kernels for one GRU time step's element-wise work, torch variant (see bptt/layers/gru.py
for the equations and the readable reference loops; kernels/gru_layer.py for the tuned numpy path
these are tested against and the dispatch that calls them). They replace the ~13 numpy calls of a forward step,
and the ~5 per step plus per-chunk factors of a backward step, by one pass over the step's
(B, H) units; the step's GEMM stays numpy's BLAS (np.dot from Python, or numpy's gemm called
from the whole-loop kernels at the end of this file: kernels/gemm.py).

Layout as in the numpy path: gate rows (B, 3H) = [r, z, n], torch's order; every product is
formed in the numpy path's order.

Forward, by dtype (kernels/gru_layer.py ``_forward_kernel`` picks):
  float32  ``forward_step``: everything in one pass, with kernels/common.py's rational tanh
           (vectorised; a few ulp from numpy's, so results agree to a few ulp per step).
  float64  ``forward_gates`` and ``forward_state`` around two np.tanh calls: common.py's float64
           tanh is libm's, a scalar call ~6x slower per element than numpy's SIMD tanh, which
           made a one-pass float64 step slower than the numpy path (a layer forward at
           (I, H, B, T) = (65, 128, 32, 64), one BLAS thread: 18.5 ms one-pass, 12.8 ms numpy);
           this way it takes 11.2 ms and is bit-identical to the numpy path.
Backward (``backward_step``) has no tanh: one pass for both dtypes.

The Cho variant keeps the numpy path: its reset gate sits between two GEMMs (r * h_{t-1} is the
input of W_n), so a step would need kernels on both sides of the second GEMM; it is not the
default and not benchmarked.
"""

from __future__ import annotations

import numba

from .common import jit, one, sigmoid, tanh
from .gemm import matmul_into

# A helper inlined into its caller at numba's IR level, so each call site is optimised with the
# caller's own arguments (the caller's compile options, error_model included, apply).
inline = numba.njit(inline="always")


@jit
def forward_step(t, gates, bias, gh, hs, b_hn, extra):
    """Step t (0-based) of the forward recurrence. gates (T, B, 3H): row t holds U x_t on
    entry (b, the (3H,) ``bias``, is added here: (U x_t + b) + W h_{t-1}, the numpy path's order)
    and [r, z, n] on exit (kept for backward); gh (B, 3H) = h_{t-1} W^T (all three gates,
    one GEMM); hs (T+1, B, H): reads hs[t] = h_{t-1}, writes hs[t+1] = h_t; b_hn (H,) (zeros
    without bias); writes extra[t] = hn = W_n h_{t-1} + b_hn (kept for backward).
    Whole arrays and t rather than (B, .) rows: at B = 1 slicing them in Python costs as much as
    the kernel call itself (~0.8 us a step)."""
    a, h_prev, h, hn = gates[t], hs[t], hs[t + 1], extra[t]
    B, H = h.shape
    b_r, b_z, b_n = bias[:H], bias[H:2 * H], bias[2 * H:]
    for b in range(B):
        # One (H,) view per gate block, so each store goes to its own pointer, whose ranges LLVM's
        # runtime overlap check compares and finds disjoint. Stores into one array at a[b, j],
        # a[b, H + j], ... (offsets a run-time H apart) fail that check: the scalar loop runs,
        # ~9x slower (65 vs 7 us at B = 32, H = 128 float32; reads at such offsets are harmless).
        a_r, a_z, a_n = a[b, :H], a[b, H:2 * H], a[b, 2 * H:]
        gh_r, gh_z, gh_n = gh[b, :H], gh[b, H:2 * H], gh[b, 2 * H:]
        hp_b, hn_b, h_b = h_prev[b], hn[b], h[b]
        for j in range(H):                      # inner loop over contiguous units: vectorised
            r = sigmoid((a_r[j] + b_r[j]) + gh_r[j])                 # r_t = sigmoid(U_r x + W_r h + b_r)
            z = sigmoid((a_z[j] + b_z[j]) + gh_z[j])                 # z_t = sigmoid(U_z x + W_z h + b_z)
            hn_t = gh_n[j] + b_hn[j]                                 # hn = W_n h_{t-1} + b_hn
            n = tanh((a_n[j] + b_n[j]) + r * hn_t)                   # n_t = tanh(U_n x + b_n + r hn)
            a_r[j] = r
            a_z[j] = z
            a_n[j] = n
            hn_b[j] = hn_t
            h_b[j] = (hp_b[j] - n) * z + n                           # h_t = (1 - z) n + z h_{t-1}


@jit
def forward_gates(t, gates, gh, b_hn, extra):
    """float64 forward, middle of step t, between the two np.tanh calls (see the module docstring).
    gates[t] (B, 3H) on entry: [tanh(a_r/2 + (W_r h)/2), tanh(a_z/2 + (W_z h)/2), U_n x + b_n]
    (the numpy path's halved pre-activations); on exit [r, z, U_n x + b_n + r hn], the last
    block still to go through tanh. gh (B, 3H) = h_{t-1} W'^T; writes extra[t] = hn (B, H)."""
    a, hn = gates[t], extra[t]
    B, H = hn.shape
    for b in range(B):
        a_r, a_z, a_n = a[b, :H], a[b, H:2 * H], a[b, 2 * H:]              # (H,) views: see forward_step
        gh_n, hn_b = gh[b, 2 * H:], hn[b]
        for j in range(H):
            r = a_r[j] * 0.5 + 0.5                                   # r = sigmoid(.) = tanh(./2)/2 + 1/2
            a_r[j] = r
            a_z[j] = a_z[j] * 0.5 + 0.5                              # z, likewise
            hn_t = gh_n[j] + b_hn[j]                                 # hn = W_n h_{t-1} + b_hn
            hn_b[j] = hn_t
            a_n[j] = a_n[j] + r * hn_t                               # U_n x + b_n + r hn


@jit
def forward_state(t, gates, hs):
    """float64 forward, end of step t: h_t = (1 - z) n + z h_{t-1}, computed as (h_{t-1} - n) z + n
    from gates[t] = [r, z, n]; reads hs[t] = h_{t-1}, writes hs[t+1] = h_t."""
    a, h_prev, h = gates[t], hs[t], hs[t + 1]
    B, H = h.shape
    for b in range(B):
        z_b, n_b, hp_b, h_b = a[b, H:2 * H], a[b, 2 * H:], h_prev[b], h[b]
        for j in range(H):
            n = n_b[j]
            h_b[j] = (hp_b[j] - n) * z_b[j] + n


@jit
def backward_step(t, k, dh, dh_total, direct, through, gates, hs, extra, da, dgh):
    """Step t of the torch-variant GRU's BPTT, element-wise part; k is t's row in the chunk
    buffers da, dgh (chunk, B, 3H). (T, B, .) arrays are indexed here, as in ``forward_step``.

    dh[t] (B, H): dE/dh_t from the readout or the layer above. The path through step t+1
    comes in two parts: direct (B, H) = dh_{t+1} z_{t+1} (overwritten here with this step's
    dh_t z_t, the direct part of dE/dh_{t-1}) and through (B, H) = dgh_{t+1} @ W (the previous
    step's GEMM). gates[t] = [r, z, n], hs[t] = h_{t-1}, extra[t] = hn = W_n h_{t-1} + b_hn.
    Writes dh_total[t] = dE/dh_t (all paths; dh_total may be dh itself), da[k] = dE/d(U x_t + b)
    = [dar, daz, dan] and dgh[k] = dE/d(W h_{t-1} + [0, 0, b_hn]) = [dar, daz, dhn]; the caller
    then computes ``through = dgh[k] @ W`` for step t-1."""
    total, gate, h_prev, hn, da_t, dgh_t = dh_total[t], gates[t], hs[t], extra[t], da[k], dgh[k]
    in_place = dh.ctypes.data == dh_total.ctypes.data       # overwrite_dh: dh_total is dh
    B, H = total.shape
    for b in range(B):
        r_b, z_b, n_b = gate[b, :H], gate[b, H:2 * H], gate[b, 2 * H:]        # (H,) views: see forward_step
        dar_b, daz_b, dan_b = da_t[b, :H], da_t[b, H:2 * H], da_t[b, 2 * H:]
        dgr_b, dgz_b, dhn_b = dgh_t[b, :H], dgh_t[b, H:2 * H], dgh_t[b, 2 * H:]
        if in_place:
            # dh_total is dh: pass the one view twice, so LLVM sees a single pointer updated in
            # place (two views of the same memory would fail its overlap check: scalar loop, ~2x slower).
            _backward_row(total[b], direct[b], through[b], total[b], r_b, z_b, n_b, h_prev[b], hn[b],
                          dar_b, daz_b, dan_b, dgr_b, dgz_b, dhn_b)
        else:
            _backward_row(dh[t, b], direct[b], through[b], total[b], r_b, z_b, n_b, h_prev[b], hn[b],
                          dar_b, daz_b, dan_b, dgr_b, dgz_b, dhn_b)


@inline
def _backward_row(above, direct, through, total, r_b, z_b, n_b, hp_b, hn_b,
                  dar_b, daz_b, dan_b, dgr_b, dgz_b, dhn_b):
    """backward_step for one batch row: every argument is an (H,) view. Products in the numpy
    path's order (kernels/gru_layer.py ``backward``)."""
    for j in range(total.shape[0]):
        dht = above[j] + (direct[j] + through[j])                    # dE/dh_t, all paths
        total[j] = dht
        r, z, n = r_b[j], z_b[j], n_b[j]
        one_z = one(z) - z
        dan_factor = (one(n) - n * n) * one_z                        # dn = dh_t (1 - z); dan = dn (1 - n^2)
        dar = ((dan_factor * hn_b[j]) * ((one(r) - r) * r)) * dht    # dar = dan hn r (1 - r)
        daz = (((hp_b[j] - n) * z) * one_z) * dht                    # daz = dh_t (h_{t-1} - n) z (1 - z)
        dar_b[j] = dar
        daz_b[j] = daz
        dan_b[j] = dan_factor * dht
        dgr_b[j] = dar
        dgz_b[j] = daz
        dhn_b[j] = (dan_factor * r) * dht                            # dhn = dan r
        direct[j] = dht * z                                          # dh_prev = dh_t z (direct path)


# ---------------------------------------------------------------- whole time loops, GEMM included
# As kernels/lstm.py's loops: the layer's Python loop compiled, each step's GEMM numpy's own BLAS
# (kernels/blas.py); GRULayer uses them when kernels.loops_enabled().

@jit
def forward_loop(gemm, gates, bias, WT, gh, hs, b_hn, extra):
    """float32 forward over all T steps: gh = h_{t-1} W^T (WT (H, 3H) contiguous), then ``forward_step``."""
    for t in range(gates.shape[0]):
        matmul_into(gemm, hs[t], WT, gh)            # W h_{t-1}: the only GEMM in the loop
        forward_step(t, gates, bias, gh, hs, b_hn, extra)


@jit
def backward_loop(gemm, first, m, dh, dh_total, dh_next, through, gates, hs, extra, da, dgh, W):
    """Steps first+m-1 .. first of one backward chunk (k = m-1 .. 0): ``backward_step`` at t = first + k,
    then through = dgh[k] @ W (the path through W_r, W_z, W_n into step t-1)."""
    for k in range(m - 1, -1, -1):
        backward_step(first + k, k, dh, dh_total, dh_next, through, gates, hs, extra, da, dgh)
        matmul_into(gemm, dgh[k], W, through)
