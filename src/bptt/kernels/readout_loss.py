"""numba kernel: the readout, the softmax cross-entropy and their backward in one pass, for small
training steps (few rows T B), where numpy's dozen calls cost more than their arithmetic.

For every row (t, b), with the top layer's h = h_t^{(b)} (H,):

    z   = V h + c                                       logits (O,)
    E  += -log softmax(z)[y] / B                        the loss, summed over t, averaged over b
    dz  = (softmax(z) - onehot(y)) / B                  the lecture's  y^_t - y_t
    dV += dz h^T ;  dc += dz ;  dh_t = V^T dz           (dE/dh_t from the readout, for BPTT)

the same equations as layers/readout.py and losses.softmax_cross_entropy (its numpy reference;
tests/test_readout_loss_kernel.py compares them). Each product is written with a contiguous inner
loop of independent updates (axpy form), which LLVM vectorises without reordering any sum.
"""

from __future__ import annotations

import math

from .common import jit


@jit
def readout_cross_entropy(h, VT, V, c, targets, inv_batch, dV, dc, dh, z):
    """h (T, B, H); VT (H, O) = V^T contiguous and V (O, H); c (O,) (zeros without a bias);
    targets (T, B) ints in [0, O); inv_batch = 1/B in h's dtype. Accumulates (+=) into dV (O, H) and
    dc (O,); writes dh (T, B, H); z (O,) is scratch. Returns the loss (float64)."""
    T, B, H = h.shape
    O = V.shape[0]
    loss = 0.0
    for t in range(T):
        for b in range(B):
            hb = h[t, b]
            for o in range(O):
                z[o] = c[o]
            for j in range(H):                      # z = V h + c, as columns of V: vectorised
                coefficient = hb[j]
                row = VT[j]
                for o in range(O):
                    z[o] += row[o] * coefficient
            top = z[0]
            for o in range(1, O):
                top = max(top, z[o])
            total = 0.0                             # float64, as numpy's sum of exp(z - max)
            for o in range(O):
                z[o] = math.exp(z[o] - top)
                total += z[o]
            y = targets[t, b]
            loss -= (math.log(z[y]) - math.log(total)) * inv_batch      # -log softmax(z)[y] / B
            scale = inv_batch / total
            for o in range(O):
                z[o] *= scale                       # softmax(z) / B
            z[y] -= inv_batch                       # dz = (y^ - y) / B
            dhb = dh[t, b]
            for j in range(H):
                dhb[j] = 0
            for o in range(O):
                coefficient = z[o]
                dc[o] += coefficient
                row_V, row_dV = V[o], dV[o]
                for j in range(H):                  # dh = V^T dz and dV += dz h^T, rows of V
                    dhb[j] += coefficient * row_V[j]
                    row_dV[j] += coefficient * hb[j]
    return loss
