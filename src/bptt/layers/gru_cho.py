"""BPTT for the Cho et al. (2014) GRU variant (``GRULayer(variant="cho")``), numpy only.

    r_t = sigmoid(U_r x_t + W_r h_{t-1} + b_r)
    z_t = sigmoid(U_z x_t + W_z h_{t-1} + b_z)
    n_t = tanh(U_n x_t + W_n (r_t * h_{t-1}) + b_n)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

with recurrent dropout (mask m) on the h_{t-1} of W_r, W_z and of W_n (r_t * m * h_{t-1}), and
zoneout h_t = d_t h_{t-1} + (1 - d_t) h~_t, h~_t the update above (layers/noise.py).

The variant has no fast path (kernels/gru.py says why): its forward is GRULayer's reference loop
(layers/gru.py, both variants, one line per equation), and this is its backward, the same kind
of loop. Kept apart from layers/gru.py, whose torch variant (the default, the one torch and the
numba kernels implement) is the bulk of that module; see its docstring for both variants.
"""

from __future__ import annotations

import numpy as np


def backward_cho(layer, dh, dstate: tuple | None, cache, grads: dict,
                 input_grad: bool, overwrite_dh: bool):
    """The Cho variant's BPTT (the contract is GRULayer.backward's; cache a GRUReferenceCache).
    The reset gate acts before W_n, so dE/dh_{t-1} gets drh * r (through rh = r * h_{t-1}) and
    [dar, daz] @ [W_r; W_z], both on the h_{t-1} that enters W (times m under recurrent dropout).

        dh~ = dh_t (1 - d_t)     dn = dh~ (1 - z)     dz = dh~ (h_{t-1} - n)
        dan = dn (1 - n^2)       daz = dz z (1 - z)
        drh = dan @ W_n          dar = drh * (m h_{t-1}) * r (1 - r)
        dh_{t-1} = dh~ z + d_t dh_t + m * (drh * r + [dar, daz] @ [W_r; W_z])
    """
    x, hs, gates, extra = cache.x, cache.hs, cache.gates, cache.extra
    dh, dh_total, returned_total, dx, dh_next = layer._upstream(dh, dstate, x, input_grad, overwrite_dh)
    T, B, H = dh.shape
    m, zone = layer._noise_for_loop(cache.noise, T, B)
    W = layer.params["W"]
    W_rz, W_n = W[:2 * H], W[2 * H:]                  # (2H, H), (H, H)
    da = np.empty((T, B, 3 * H), layer.dtype)         # dE/d(U x_t + b): [dar, daz, dan]
    for t in range(T - 1, -1, -1):
        r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
        h_prev = hs[t]
        h_rec = h_prev if m is None else m * h_prev  # the h_{t-1} that enters W
        dh_t = dh[t] + dh_next                        # dE/dh_t: from above and from step t+1
        dh_total[t] = dh_t
        d = zone(t)
        dh_new = dh_t if d is None else (1 - d) * dh_t                # dE/dh~_t (zoneout)
        dn = dh_new * (1 - z)
        dz = dh_new * (h_prev - n)
        dan = dn * (1 - n * n)                        # through n = tanh(.)
        daz = dz * z * (1 - z)                        # through z = sigmoid(.)
        drh = dan @ W_n                               # dE/d(rh), rh = r * h_rec
        dar = drh * h_rec * r * (1 - r)               # through r = sigmoid(.)
        da[t, :, :H], da[t, :, H:2 * H], da[t, :, 2 * H:] = dar, daz, dan
        dh_rec = drh * r + da[t, :, :2 * H] @ W_rz   # dE/d(h_rec): through rh, W_r and W_z
        dh_next = dh_new * z + (dh_rec if m is None else m * dh_rec)     # direct path + through W
        if d is not None:
            dh_next += d * dh_t                       # zoneout: the share of h_{t-1} kept as h_t

    # Shared weights: sums over time as single GEMMs.
    TB = T * B
    da2 = da.reshape(TB, 3 * H)
    h_rec = hs[:-1] if m is None else m * hs[:-1]     # (T, B, H): what entered W_r, W_z
    grads["W"][:2 * H] += da2[:, :2 * H].T @ h_rec.reshape(TB, H)     # sum_t [dar, daz] (x) h_{t-1}
    grads["W"][2 * H:] += da2[:, 2 * H:].T @ extra.reshape(TB, H)     # sum_t dan (x) (r * h_{t-1})
    layer._input_gradients(x, da, grads, dx)
    return dx, (dh_next,), returned_total
