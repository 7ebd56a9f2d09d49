"""BPTT for the Cho et al. (2014) GRU variant (``GRULayer(variant="cho")``), numpy only.

    r_t = sigmoid(U_r x_t + W_r h_{t-1} + b_r)
    z_t = sigmoid(U_z x_t + W_z h_{t-1} + b_z)
    n_t = tanh(U_n x_t + W_n (r_t * h_{t-1}) + b_n)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Kept apart from layers/gru.py, whose torch variant (the default, the one torch and the
numba kernels implement) is the bulk of that module; see its docstring for both variants.
"""

from __future__ import annotations

import numpy as np

from ..functional import column_sums, scatter_add_columns


def backward_cho(layer, dh: np.ndarray, dstate: tuple | None, cache, grads: dict,
                 input_grad: bool, overwrite_dh: bool):
    """The Cho variant's BPTT (numpy only; the contract is GRULayer.backward's). The reset gate acts
    before W_n, so dE/dh_{t-1} gets drh * r (through r * h_{t-1}) and [dar, daz] @ [W_r; W_z]."""
    x, hs, gates, extra = cache.x, cache.hs, cache.gates, cache.extra
    T, B, H = dh.shape
    W = layer.params["W"]
    dh_total = dh if overwrite_dh else np.empty_like(dh)
    da = np.empty((T, B, 3 * H), layer.dtype)             # dE/d(U x_t + b): [dar, daz, dan]
    dh_next = (np.zeros((B, H), layer.dtype) if dstate is None or dstate[0] is None
               else np.array(dstate[0], layer.dtype))
    dn = np.empty((B, H), layer.dtype)
    tmp = np.empty((B, H), layer.dtype)
    W_n, W_rz = W[2 * H:], W[:2 * H]
    for t in range(T - 1, -1, -1):
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        dar, daz, dan = da[t, :, :H], da[t, :, H:2 * H], da[t, :, 2 * H:]
        h_prev = hs[t]
        dht = dh_total[t]
        np.add(dh[t], dh_next, out=dht)
        # z: dz = dh_t (h_{t-1} - n);  daz = dz z (1 - z)
        np.subtract(1.0, z, out=tmp)
        np.multiply(dht, tmp, out=dn)                     # dn = dh_t (1 - z)
        np.subtract(h_prev, n, out=daz)
        daz *= dht
        daz *= z
        daz *= tmp
        # n: dan = dn (1 - n^2)
        np.multiply(n, n, out=dan)
        np.subtract(1.0, dan, out=dan)
        dan *= dn
        np.multiply(dht, z, out=dh_next)                  # direct path h_{t-1} -> h_t
        np.subtract(1.0, r, out=tmp)
        tmp *= r                                          # r (1 - r)
        drh = dan @ W_n                                   # dE/d(r * h_{t-1}), (B, H)
        np.multiply(drh, h_prev, out=dar)                 # dr = drh * h_{t-1}
        dar *= tmp
        drh *= r
        dh_next += drh                                    # through r * h_{t-1}
        dh_next += da[t, :, :2 * H] @ W_rz                # through W_r, W_z

    # Shared weights: sums over time as single GEMMs.
    TB = T * B
    da2 = da.reshape(TB, 3 * H)
    h_prev2 = hs[:-1].reshape(TB, H)
    dW = grads["W"]
    dW[:2 * H] += da2[:, :2 * H].T @ h_prev2              # sum_t [dar, daz] (x) h_{t-1}
    dW[2 * H:] += da2[:, 2 * H:].T @ extra.reshape(TB, H)   # sum_t dan (x) (r * h_{t-1})
    if layer.bias:
        grads["b"] += column_sums(da2)
    dx = None
    if x.dtype.kind in "iu":
        scatter_add_columns(grads["U"], x.reshape(-1), da2)
    else:
        I = x.shape[2]
        grads["U"] += da2.T @ x.reshape(TB, I)            # sum_t da_t (x) x_t
        if input_grad:
            dx = (da2 @ layer.params["U"]).reshape(T, B, I)
    return dx, (dh_next,), dh_total
