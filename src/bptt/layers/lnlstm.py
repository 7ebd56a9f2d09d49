"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016), ``Network(cell="lstm", layer_norm=True)``.

    [a_i, a_f, a_g, a_o] = LN(U x_t; g_x, b_x) + LN(W h_{t-1}; g_h, b_h) + b        (4H,), LN over all 4H
    i = sigmoid(a_i),  f = sigmoid(a_f),  g = tanh(a_g),  o = sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(LN(c_t; g_c, b_c))                                                 LN over H

    LN(v; gamma, beta) = gamma * (v - mean(v)) / sqrt(var(v) + 1e-5) + beta   (biased variance, as
    torch.nn.LayerNorm). Parameters: U (4H, I), W (4H, H), b (4H,), ln_x_gamma/ln_x_beta (4H,),
    ln_h_gamma/ln_h_beta (4H,), ln_c_gamma/ln_c_beta (H,); gammas start at 1, betas at 0.

The input half is normalised for all T steps at once (one GEMM and one LN, hoisted); the recurrent
half W h_{t-1} and LN(c_t) stay in the loop. BPTT, per step backwards, with LN's backward

    dv = (1 / sigma) * (dv^ - mean(dv^) - v^ * mean(dv^ * v^)),   dv^ = gamma * dy,  v^ = (v - mean) / sigma

    dh_t   = dh[t] + dh_next
    dn_c   = dh_t * o * (1 - tanh(LN(c_t))^2),     do = dh_t * tanh(LN(c_t))
    dc_t   = dc_next + LN_c'(dn_c)
    da     = [dc_t g i(1-i), dc_t c_{t-1} f(1-f), dc_t i (1-g^2), do o(1-o)]
    dh_next = LN_h'(da) @ W,    dc_next = dc_t * f

and after the loop dU = sum_t LN_x'(da_t)^T x_t in one GEMM. The same derivation as layers/lstm.py
with three LN factors in the chain; one readable numpy path (no compiled kernel).

Recurrent dropout and zoneout (layers/noise.py, ``layer.noise``) as in layers/lstm.py: the mask m
multiplies h_{t-1} inside LN(W (m * h_{t-1})); c~_t = f c_{t-1} + i g is the un-zoned update,
h~_t = o tanh(LN(c~_t)), and c_t, h_t are zoned with d^c_t, d^h_t. Backward: dh~ = (1 - d^h) dh_t,
dn_c from dh~, dc~ = (1 - d^c) dc_next + LN_c'(dn_c), dc_next <- dc~ f + d^c dc_next,
dh_next <- m (LN_h'(da) @ W) + d^h dh_t, and dW = sum_t LN_h'(da_t)^T (m h_{t-1}).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init
from ..functional import accumulate_matmul, column_sums, scatter_add_columns, sigmoid
from .lstm import _check_noise                     # the LSTM family's mask shapes
from .noise import LayerNoise, masked, unzoned, zone, zoned

EPS = 1e-5


def layer_norm(v: np.ndarray, gamma: np.ndarray, beta: np.ndarray):
    """LN over the last axis: (y, v^, 1/sigma) -- the normalised v^ and 1/sigma are kept for backward."""
    mean = v.mean(axis=-1, keepdims=True)
    centred = v - mean
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + EPS)
    normalised = centred * rstd
    return normalised * gamma + beta, normalised, rstd


def layer_norm_backward(dy: np.ndarray, gamma: np.ndarray, normalised: np.ndarray, rstd: np.ndarray):
    """dE/dv from dE/dy of y = LN(v; gamma, beta) (the gamma/beta gradients are the caller's sums)."""
    dn = dy * gamma
    return rstd * (dn - dn.mean(axis=-1, keepdims=True)
                   - normalised * (dn * normalised).mean(axis=-1, keepdims=True))


@dataclass
class LNLSTMCache:
    x: np.ndarray        # (T, B, I) features or (T, B) ids
    hs: np.ndarray       # (T+1, B, H)
    cs: np.ndarray       # (T+1, B, H)
    gates: np.ndarray    # (T, B, 4H) [i, f, g, o] after their nonlinearities
    nx: np.ndarray       # (T, B, 4H) normalised U x_t, and its 1/sigma (T, B, 1)
    rx: np.ndarray
    nh: np.ndarray       # (T, B, 4H) normalised W h_{t-1}, and 1/sigma
    rh: np.ndarray
    nc: np.ndarray       # (T, B, H) normalised c_t, and 1/sigma
    rc: np.ndarray
    tc: np.ndarray       # (T, B, H) tanh(LN(c~_t)), c~_t the un-zoned update (= c_t without zoneout)
    noise: LayerNoise | None = None   # the masks forward used (layers/noise.py), or None


class LNLSTMLayer:
    """One layer-normalised LSTM layer over a whole sequence; state (h, c)."""

    cell = "lstm"
    state_names = ("h", "c")
    workspace = None
    noise = None          # a noise.LayerNoise set by Network for one forward call (recurrent dropout, zoneout)

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True, forget_bias: float = 1.0,
                 rng: np.random.Generator, dtype=np.float64):
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.dtype = np.dtype(dtype)
        H, I = hidden_size, input_size
        bound = 1.0 / np.sqrt(H)
        self.params = {"U": init.uniform(rng, (4 * H, I), bound, self.dtype),
                       "W": init.uniform(rng, (4 * H, H), bound, self.dtype)}
        if bias:
            b = init.uniform(rng, (4 * H,), bound, self.dtype) + init.uniform(rng, (4 * H,), bound, self.dtype)
            b[H:2 * H] += forget_bias                                 # forget gate starts open
            self.params["b"] = b
        for name, size in (("x", 4 * H), ("h", 4 * H), ("c", H)):
            self.params[f"ln_{name}_gamma"] = np.ones(size, self.dtype)
            self.params[f"ln_{name}_beta"] = np.zeros(size, self.dtype)

    def zero_state(self, batch: int) -> tuple:
        H = self.hidden_size
        return np.zeros((batch, H), self.dtype), np.zeros((batch, H), self.dtype)

    def forward(self, x: np.ndarray, state0: tuple):
        p, H = self.params, self.hidden_size
        T, B = x.shape[:2]
        noise = self.noise if self.noise is not None and self.noise.active else None
        if noise is not None:
            _check_noise(noise, T, B, (H, H))
        mask = None if noise is None else noise.recurrent              # (B, H) recurrent dropout, or None
        Ux = p["U"].T[x] if x.dtype.kind in "iu" else x @ p["U"].T             # (T, B, 4H), hoisted
        ax, nx, rx = layer_norm(Ux, p["ln_x_gamma"], p["ln_x_beta"])
        if self.bias:
            ax = ax + p["b"]
        hs = np.empty((T + 1, B, H), self.dtype)
        cs = np.empty((T + 1, B, H), self.dtype)
        hs[0], cs[0] = state0
        gates = np.empty((T, B, 4 * H), self.dtype)
        nh, rh = np.empty((T, B, 4 * H), self.dtype), np.empty((T, B, 1), self.dtype)
        nc, rc = np.empty((T, B, H), self.dtype), np.empty((T, B, 1), self.dtype)
        tc = np.empty((T, B, H), self.dtype)
        WT = p["W"].T
        for t in range(T):
            ah, nh[t], rh[t] = layer_norm(masked(mask, hs[t]) @ WT, p["ln_h_gamma"], p["ln_h_beta"])
            a = ax[t] + ah                                                   # [a_i, a_f, a_g, a_o]
            gate = gates[t]
            gate[:, :2 * H] = sigmoid(a[:, :2 * H])
            gate[:, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])
            gate[:, 3 * H:] = sigmoid(a[:, 3 * H:])
            i, f, g, o = gate[:, :H], gate[:, H:2 * H], gate[:, 2 * H:3 * H], gate[:, 3 * H:]
            c_new = f * cs[t] + i * g                                        # c~_t = f c_{t-1} + i g
            y, nc[t], rc[t] = layer_norm(c_new, p["ln_c_gamma"], p["ln_c_beta"])
            tc[t] = np.tanh(y)
            h_new = o * tc[t]                                                # h~_t = o tanh(LN(c~_t))
            cs[t + 1] = zoned(zone(noise, 1, t), cs[t], c_new)             # c_t = d^c c_{t-1} + (1 - d^c) c~_t
            hs[t + 1] = zoned(zone(noise, 0, t), hs[t], h_new)             # h_t = d^h h_{t-1} + (1 - d^h) h~_t
        return hs[1:], (hs[T], cs[T]), LNLSTMCache(x, hs, cs, gates, nx, rx, nh, rh, nc, rc, tc, noise)

    def step(self, x_t: np.ndarray, state: tuple):
        h, final, _ = self.forward(np.asarray(x_t)[None], state)
        return h[0], final

    def backward(self, dh, dstate, cache: LNLSTMCache, grads: dict, *, input_grad: bool = True,
                 overwrite_dh: bool = False):
        p, H = self.params, self.hidden_size
        T, B = dh.shape[:2]
        noise = cache.noise
        mask = None if noise is None else noise.recurrent
        dstate = (None, None) if dstate is None else dstate
        dh_next = np.zeros((B, H), self.dtype) if dstate[0] is None else np.array(dstate[0], self.dtype)
        dc_next = np.zeros((B, H), self.dtype) if dstate[1] is None else np.array(dstate[1], self.dtype)
        dh_total = np.empty((T, B, H), self.dtype)
        da_all = np.empty((T, B, 4 * H), self.dtype)                         # dE/da_t = dE/d LN_x output
        dAh_all = np.empty((T, B, 4 * H), self.dtype)                        # dE/d(W h_{t-1})
        for t in range(T - 1, -1, -1):
            gate = cache.gates[t]
            i, f, g, o = gate[:, :H], gate[:, H:2 * H], gate[:, 2 * H:3 * H], gate[:, 3 * H:]
            dh_t = dh_total[t]
            np.add(dh[t], dh_next, out=dh_t)                                  # all paths into h_t
            dh_keep, dh_new = unzoned(zone(noise, 0, t), dh_t)              # to h_{t-1} | to h~_t
            dc_keep, dc_in = unzoned(zone(noise, 1, t), dc_next)            # to c_{t-1} | to c~_t
            tc = cache.tc[t]
            dnc = dh_new * o * (1.0 - tc * tc)                                # into LN(c~_t)'s output
            grads["ln_c_gamma"] += (dnc * cache.nc[t]).sum(axis=0)
            grads["ln_c_beta"] += dnc.sum(axis=0)
            dc = dc_in + layer_norm_backward(dnc, p["ln_c_gamma"], cache.nc[t], cache.rc[t])   # dE/dc~_t
            da = da_all[t]
            da[:, :H] = dc * g * i * (1.0 - i)                                # di
            da[:, H:2 * H] = dc * cache.cs[t] * f * (1.0 - f)                 # df
            da[:, 2 * H:3 * H] = dc * i * (1.0 - g * g)                       # dg
            da[:, 3 * H:] = dh_new * tc * o * (1.0 - o)                       # do
            dc_next = dc * f + dc_keep                                        # dE/dc_{t-1}
            grads["ln_h_gamma"] += (da * cache.nh[t]).sum(axis=0)
            grads["ln_h_beta"] += da.sum(axis=0)
            dAh = dAh_all[t]
            dAh[...] = layer_norm_backward(da, p["ln_h_gamma"], cache.nh[t], cache.rh[t])
            dh_next = masked(mask, dAh @ p["W"]) + dh_keep                   # dE/dh_{t-1}
        # W is shared across time: dW = sum_t dAh_t^T (m h_{t-1}), one GEMM after the loop
        accumulate_matmul(grads["W"], dAh_all.reshape(T * B, 4 * H).T, masked(mask, cache.hs[:-1]).reshape(T * B, H))
        da2 = da_all.reshape(T * B, 4 * H)
        if self.bias:
            grads["b"] += column_sums(da2)
        grads["ln_x_gamma"] += (da_all * cache.nx).reshape(T * B, 4 * H).sum(axis=0)
        grads["ln_x_beta"] += column_sums(da2)
        dAx = layer_norm_backward(da_all, p["ln_x_gamma"], cache.nx, cache.rx).reshape(T * B, 4 * H)
        x = cache.x
        dx = None
        if x.dtype.kind in "iu":
            scatter_add_columns(grads["U"], x.reshape(-1), dAx)
        else:
            accumulate_matmul(grads["U"], dAx.T, x.reshape(T * B, -1))
            if input_grad:
                dx = (dAx @ p["U"]).reshape(T, B, -1)
        return dx, (dh_next, dc_next), dh_total
