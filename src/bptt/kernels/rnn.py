"""numba kernels for the lecture's RNN, h_t = f(U x_t + W h_{t-1} + b), f = tanh or relu
(see bptt/layers/rnn.py for the equations and the readable numpy reference; kernels/rnn_layer.py
calls these from the layer's fast path).

Only for small problems (B H^2 up to ``SMALL_GEMM``, e.g. B = 1, H = 64): the whole time loop is
one compiled call, including the recurrent product, written as a loop over W's rows so the inner
loop runs over contiguous columns and vectorises. At these sizes a BLAS call costs more in
overhead (~1 us) than its arithmetic, and numpy needs 3 calls per step each way. At larger sizes
the step is GEMM-bound and its element-wise work is only an add and f, so fusing it bought
nothing measurable (bench/ab_kernels.py: 1.00-1.02x); the numpy path runs there.
"""

from __future__ import annotations

from .common import jit, one, tanh

# B * H * H at or below which the whole loop is one kernel call (kernels/rnn_layer.py keeps a copy,
# so that asking does not import numba). Measured, kernel step time / numpy's: 0.73 at B=1, H=64;
# 0.88 at B=1, H=128; slower than numpy from 32768 on (B=2, H=128: 1.23).
SMALL_GEMM = 16384


@jit
def _activate(h_t, relu):
    """f in place on a (H,) row."""
    if relu:
        for j in range(h_t.shape[0]):
            if h_t[j] < 0:              # max(a, 0); a NaN stays NaN, as with np.maximum
                h_t[j] = 0
    else:
        for j in range(h_t.shape[0]):
            h_t[j] = tanh(h_t[j])


@jit
def forward_sequence(hs, WT, relu):
    """hs (T+1, B, H): hs[0] = h0 and hs[t+1] = U x_t + b on entry; h_t on exit.
    WT (H, H) = W^T, contiguous. The whole recurrence in one call (small sizes)."""
    T = hs.shape[0] - 1
    B, H = hs.shape[1], hs.shape[2]
    for t in range(T):
        for b in range(B):
            h_prev, h_t = hs[t, b], hs[t + 1, b]
            for k in range(H):                  # a_t += h_{t-1}[k] W^T[k, :]: contiguous, vectorised
                coefficient = h_prev[k]
                row = WT[k]
                for j in range(H):
                    h_t[j] += coefficient * row[j]
            _activate(h_t, relu)


@jit
def _derivative(da_t, h_t, relu):
    """da_t (H,) *= f'(a_t), written through h_t = f(a_t)."""
    for j in range(h_t.shape[0]):
        if relu:
            da_t[j] = da_t[j] if h_t[j] > 0 else da_t[j] * 0
        else:
            da_t[j] = da_t[j] * (one(h_t[j]) - h_t[j] * h_t[j])


@jit
def backward_chunk(dh, dh_total, hs, W, dnext, da, start, stop, relu):
    """BPTT through steps start..stop-1 in one call (small sizes).

    dh (T, B, H): dE/dh_t from above; dnext (B, H): the gradient through step ``stop`` on entry,
    dE/dh_{start-1} on exit. Writes dh_total[start:stop] = dE/dh_t and da[0:n] = dE/da_t."""
    B, H = dnext.shape
    for t in range(stop - 1, start - 1, -1):
        for b in range(B):
            above, total, nxt = dh[t, b], dh_total[t, b], dnext[b]
            da_t = da[t - start, b]
            for j in range(H):
                total[j] = above[j] + nxt[j]    # dE/dh_t = from above + from step t+1
                da_t[j] = total[j]
            _derivative(da_t, hs[t + 1, b], relu)   # dE/da_t = dE/dh_t * f'(a_t)
            for j in range(H):
                nxt[j] = 0
            for k in range(H):                  # dE/dh_{t-1} = da_t W: rows of W, vectorised
                coefficient = da_t[k]
                row = W[k]
                for j in range(H):
                    nxt[j] += coefficient * row[j]
