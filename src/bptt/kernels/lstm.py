"""numba kernels for one LSTM time step's element-wise work (see bptt/layers/lstm.py for the
equations and the reference loops, kernels/lstm_layer.py for the tuned numpy loops these replace
and the dispatch that calls them). Each kernel replaces ~10 numpy calls per step with one
pass over the step's (B, H) units; the step's GEMM stays numpy's BLAS -- called from Python, or,
in the whole-loop kernels at the end of this file, from compiled code (kernels/gemm.py).

Layout as in the numpy path: gate rows (B, 4H) = [i, f, g, o], torch's order. Two things keep
the inner loops vectorised (measured; see also kernels/gru.py):

* every row is cut into one (H,) view per gate, so each store goes to its own pointer: stores
  at run-time offsets into one array (``a[b, H + j]``) fail LLVM's run-time overlap check and
  the scalar loop runs (4x slower here);
* when dE/dh_t is written over the incoming dh (``overwrite_dh``), the same view is passed for
  both, so LLVM sees one pointer; two views of the same memory also fail the overlap check.

The kernels take whole (T, B, .) arrays and the step t: slicing six views per step in Python
costs about as much as a kernel call at B = 1. (The lean step's chunked dE/dh, lstm_layer.backward,
passes its (steps, B, H) chunk buffer as dh and dh_total and gates, cs shifted back to the chunk's
first step, so that t is the chunk row k: views of the same layout, the same specialisation.)

Forward, by dtype (kernels/lstm_layer.py _forward_kernel picks):
  float32  ``forward_step``: everything in one pass, with kernels/common.py's rational tanh.
  float64  ``forward_cell`` between numpy's np.tanh calls: common.py's float64 tanh is libm's, a
           scalar call several times slower per element than numpy's SIMD tanh, and a step needs
           five per unit (a one-pass float64 step took 1.24x the numpy path's time at
           (I, H, B, T) = (65, 128, 32, 64)). Split this way the float64 path is bit-identical to
           the numpy path (the same halved-sigmoid trick, the same products in the same order).

Backward, by dtype: float32 ``backward_step_tanh`` computes tanh(c_t) inside the step with the
tanh forward_step used (no (steps, B, H) tanh(c_t) buffer, one pass less per chunk); float64
``backward_step`` reads tanh(c_t) from a chunk buffer filled with np.tanh, as forward used.
"""

from __future__ import annotations

import numba

from .common import jit, one, sigmoid, tanh
from .gemm import matmul_into

inline = numba.njit(inline="always")    # inlined at numba's IR level, so the caller's options apply


@jit
def forward_step(t, gates, bias, recurrent, hs, cs):
    """Step t: gates[t] (B, 4H) holds U x_t on entry and [i, f, g, o] on exit (kept for
    backward); bias (4H,) = b; recurrent (B, 4H) = h_{t-1} W^T; reads cs[t] = c_{t-1}; writes
    cs[t+1] = c_t and hs[t+1] = h_t (tanh(c_t) is not kept: ``backward_step_tanh``
    recomputes it). a_t = (U x_t + b) + W h_{t-1}, added in that order, as the numpy path does."""
    a, c_prev, c, h = gates[t], cs[t], cs[t + 1], hs[t + 1]
    B, H = c.shape
    b_i, b_f, b_g, b_o = bias[:H], bias[H:2 * H], bias[2 * H:3 * H], bias[3 * H:]
    for b in range(B):
        a_i, a_f, a_g, a_o = a[b, :H], a[b, H:2 * H], a[b, 2 * H:3 * H], a[b, 3 * H:]
        r_i, r_f, r_g, r_o = (recurrent[b, :H], recurrent[b, H:2 * H], recurrent[b, 2 * H:3 * H],
                              recurrent[b, 3 * H:])
        c_prev_b, c_b, h_b = c_prev[b], c[b], h[b]
        for j in range(H):                      # contiguous units: LLVM vectorises this loop
            i = sigmoid((a_i[j] + b_i[j]) + r_i[j])     # input gate
            f = sigmoid((a_f[j] + b_f[j]) + r_f[j])     # forget gate
            g = tanh((a_g[j] + b_g[j]) + r_g[j])        # candidate cell
            o = sigmoid((a_o[j] + b_o[j]) + r_o[j])     # output gate
            a_i[j], a_f[j], a_g[j], a_o[j] = i, f, g, o
            c_t = f * c_prev_b[j] + i * g       # c_t = f c_{t-1} + i g
            c_b[j] = c_t
            h_b[j] = o * tanh(c_t)              # h_t = o tanh(c_t)


@jit
def forward_cell(t, gates, cs):
    """float64 forward, middle of step t (see the module docstring). gates[t] (B, 4H) on entry:
    tanh of the numpy path's halved pre-activations [a_i/2, a_f/2, a_g, a_o/2]; on exit the gates
    [i, f, g, o] (sigmoid(a) = tanh(a/2)/2 + 1/2). Writes cs[t+1] = c_t = f c_{t-1} + i g from
    cs[t]; the caller then takes tanh(c_t) and h_t = o tanh(c_t) with numpy."""
    a, c_prev, c = gates[t], cs[t], cs[t + 1]
    B, H = c.shape
    for b in range(B):
        a_i, a_f, a_g, a_o = a[b, :H], a[b, H:2 * H], a[b, 2 * H:3 * H], a[b, 3 * H:]
        c_prev_b, c_b = c_prev[b], c[b]
        for j in range(H):
            i = a_i[j] * 0.5 + 0.5              # input gate
            f = a_f[j] * 0.5 + 0.5              # forget gate
            a_i[j], a_f[j] = i, f               # (g is tanh already)
            a_o[j] = a_o[j] * 0.5 + 0.5         # output gate
            c_b[j] = f * c_prev_b[j] + i * a_g[j]   # c_t = f c_{t-1} + i g


@jit
def tanh_into(c, out):
    """out = tanh(c) element-wise with the kernels' tanh (what forward_step used), for arrays of
    any shape (backward used it to recompute tanh(c_t) for a chunk of steps before
    ``backward_step_tanh`` did so inside the step; kept as the reference the tests compare to)."""
    flat_c, flat_out = c.reshape(-1), out.reshape(-1)
    for j in range(flat_c.shape[0]):
        flat_out[j] = tanh(flat_c[j])
    return out


@jit
def backward_step(t, k, dh, dh_total, dh_next, dc, gates, cs, tanh_c, da):
    """Step t of the LSTM's BPTT, element-wise part; k is t's row in the chunk buffer da.

    dh[t] (B, H): dE/dh_t from the readout or the layer above; dh_next (B, H): dE/dh_t through
    step t+1 (the previous step's ``da @ W``); dc (B, H): dE/dc_t through step t+1 on entry,
    dE/dc_{t-1} on exit; tanh_c[k] = tanh(c_t) (a chunk buffer, like da). Writes dh_total[t] =
    dE/dh_t, all paths (dh_total may be dh itself), and
    da[k] (B, 4H) = dE/da_t for [i, f, g, o]; the caller then computes dE/dh_{t-1} = da[k] @ W."""
    _backward(t, k, dh, dh_total, dh_next, dc, gates, cs, tanh_c[k], _stored, da)


@jit
def backward_step_tanh(t, k, dh, dh_total, dh_next, dc, gates, cs, da):
    """``backward_step`` that computes tanh(c_t) itself, from cs[t+1] with the kernels' tanh --
    the function ``tanh_into`` applies, so the same bits -- instead of reading it from a chunk
    buffer: for float32 (whose forward used that tanh), one (steps, B, H) array less in backward
    and one pass less per chunk. Same arguments as ``backward_step`` without tanh_c."""
    _backward(t, k, dh, dh_total, dh_next, dc, gates, cs, cs[t + 1], _recomputed, da)


@inline
def _stored(tanh_c, j):
    """tanh(c_t)[j] read from a buffer that holds it."""
    return tanh_c[j]


@inline
def _recomputed(c, j):
    """tanh(c_t)[j] computed from c_t with the kernels' tanh."""
    return tanh(c[j])


@inline
def _backward(t, k, dh, dh_total, dh_next, dc, gates, cs, tanh_source, tanh_of, da):
    """Both backward kernels: tanh(c_t)[b, j] is ``tanh_of(tanh_source[b], j)`` (a function argument,
    so each kernel compiles its own loop with no branch inside)."""
    total, gate, c_prev, da_t = dh_total[t], gates[t], cs[t], da[k]
    in_place = dh.ctypes.data == dh_total.ctypes.data
    B, H = dc.shape
    for b in range(B):
        g_i, g_f, g_g, g_o = gate[b, :H], gate[b, H:2 * H], gate[b, 2 * H:3 * H], gate[b, 3 * H:]
        d_i, d_f, d_g, d_o = da_t[b, :H], da_t[b, H:2 * H], da_t[b, 2 * H:3 * H], da_t[b, 3 * H:]
        if in_place:
            _backward_row(total[b], total[b], dh_next[b], dc[b], g_i, g_f, g_g, g_o, c_prev[b],
                          tanh_source[b], tanh_of, d_i, d_f, d_g, d_o)
        else:
            _backward_row(dh[t, b], total[b], dh_next[b], dc[b], g_i, g_f, g_g, g_o, c_prev[b],
                          tanh_source[b], tanh_of, d_i, d_f, d_g, d_o)


@inline
def _backward_row(above, total, through_next, dc, g_i, g_f, g_g, g_o, c_prev, tanh_source, tanh_of,
                  d_i, d_f, d_g, d_o):
    """One batch row; every array argument is an (H,) view. Products in the numpy path's order
    (kernels/lstm_layer.py ``_backward_chunk_numpy``)."""
    for j in range(total.shape[0]):
        dht = above[j] + through_next[j]                        # dE/dh_t, all paths
        total[j] = dht
        i, f, g, o, tc = g_i[j], g_f[j], g_g[j], g_o[j], tanh_of(tanh_source, j)
        dct = dc[j] + dht * ((one(tc) - tc * tc) * o)           # dE/dc_t = dc_next + dh_t o (1 - tanh^2 c_t)
        d_i[j] = ((one(i) - i) * i * g) * dct                   # da_i = dc_t g i (1 - i)
        d_f[j] = ((one(f) - f) * f * c_prev[j]) * dct           # da_f = dc_t c_{t-1} f (1 - f)
        d_g[j] = ((one(g) - g * g) * i) * dct                   # da_g = dc_t i (1 - g^2)
        d_o[j] = ((one(o) - o) * o * tc) * dht                  # da_o = dh_t tanh(c_t) o (1 - o)
        dc[j] = dct * f                                         # dE/dc_{t-1} = dc_t f


# ---------------------------------------------------------------- whole time loops, GEMM included
# The layers' per-step Python loops, compiled: each step's GEMM calls numpy's own BLAS gemm
# (``gemm`` is its address, kernels/blas.py; the call is kernels/gemm.py's), so a step pays no
# Python and no numpy dispatch. kernels/lstm_layer.py uses them when
# kernels.loops_enabled(); every array is C-contiguous there.

@jit
def forward_loop(gemm, gates, bias, WT, recurrent, hs, cs):
    """float32 forward over all T steps: recurrent = h_{t-1} W^T (WT (H, 4H) contiguous), then
    ``forward_step``: lstm_layer._forward_kernel's loop."""
    for t in range(gates.shape[0]):
        matmul_into(gemm, hs[t], WT, recurrent)     # W h_{t-1}: all four gates, one GEMM
        forward_step(t, gates, bias, recurrent, hs, cs)


@jit
def backward_loop_tanh(gemm, first, n, dh, dh_total, dh_next, dc, gates, cs, da, W):
    """Steps first+n-1 .. first of one backward chunk (k = n-1 .. 0): ``backward_step_tanh``, then
    dE/dh_{t-1} = da[k] @ W into dh_next. Arguments as backward_step_tanh's, plus W (4H, H)."""
    for k in range(n - 1, -1, -1):
        backward_step_tanh(first + k, k, dh, dh_total, dh_next, dc, gates, cs, da)
        matmul_into(gemm, da[k], W, dh_next)        # dE/dh_{t-1} through all four gates
