"""LSTM with a recurrent projection (LSTMP, Sak, Senior & Beaufays 2014): torch's ``nn.LSTM(proj_size=P)``,
``Network(cell="lstm", proj_size=P)``.

    a_t = U x_t + W h_{t-1} + b                      (4H,) = [a_i, a_f, a_g, a_o];  W is (4H, P)
    i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g                        (H,)
    m_t = o * tanh(c_t)                              (H,)  what a plain LSTM would output
    h_t = W_hr m_t                                   (P,)  W_hr (P, H): torch's weight_hr_l{k}

The state is (h, c) with h of size P and c of size H; the layer outputs h (P per direction), so the
next layer and the readout read P numbers. Fewer recurrent weights (4H P instead of 4H H) for
the same memory size H.

BPTT, per step backwards (the LSTM's, with one more linear map on the way out):
    dh_t  = dh[t] + dh_next                          (P,)
    dm_t  = dh_t W_hr                                (H,);   dW_hr += dh_t^T m_t
    do    = dm_t * tanh(c_t),   dc_t = dc_next + dm_t * o * (1 - tanh(c_t)^2)
    da    = [dc_t g i(1-i), dc_t c_{t-1} f(1-f), dc_t i (1-g^2), do o(1-o)]
    dh_next = da W,   dc_next = dc_t * f
and after the loop dW = sum_t da_t^T h_{t-1}, dU = sum_t da_t^T x_t, dW_hr = sum_t dh_t^T m_t (one GEMM each).
One readable numpy path (no compiled kernel).

Recurrent dropout and zoneout (layers/noise.py, ``layer.noise``) as in layers/lstm.py, with the
masks of h (B, P) and of c (B, H): a_t = U x_t + W (r * h_{t-1}) + b for the recurrent mask r;
c~_t = f c_{t-1} + i g and h~_t = W_hr (o tanh(c~_t)) are the un-zoned updates, and
c_t = d^c c_{t-1} + (1 - d^c) c~_t, h_t = d^h h_{t-1} + (1 - d^h) h~_t. Backward:
dh~ = (1 - d^h) dh_t takes the place of dh_t above (dm_t = dh~ W_hr, dW_hr = sum_t dh~_t^T m_t),
dc~ = (1 - d^c) dc_next + dm o (1 - tanh(c~)^2), dc_next <- dc~ f + d^c dc_next,
dh_next <- r (da W) + d^h dh_t, and dW = sum_t da_t^T (r h_{t-1}).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init
from ..functional import accumulate_matmul, column_sums, scatter_add_columns, sigmoid
from .lstm import _check_noise                     # the LSTM family's mask shapes
from .noise import LayerNoise, masked, unzoned, zone, zoned


@dataclass
class LSTMPCache:
    x: np.ndarray        # (T, B, I) features or (T, B) ids
    hs: np.ndarray       # (T+1, B, P): hs[0] = h0
    cs: np.ndarray       # (T+1, B, H): cs[0] = c0
    gates: np.ndarray    # (T, B, 4H) [i, f, g, o]
    tc: np.ndarray       # (T, B, H) tanh(c~_t), c~_t the un-zoned update (= c_t without zoneout)
    m: np.ndarray        # (T, B, H) o * tanh(c~_t)
    noise: LayerNoise | None = None   # the masks forward used (layers/noise.py), or None


class LSTMPLayer:
    """One LSTM layer with a projection of its output; state (h (B, P), c (B, H))."""

    cell = "lstm"
    state_names = ("h", "c")
    workspace = None
    noise = None          # a noise.LayerNoise set by Network for one forward call (recurrent dropout, zoneout)

    def __init__(self, input_size: int, hidden_size: int, proj_size: int, *, bias: bool = True,
                 forget_bias: float = 1.0, rng: np.random.Generator, dtype=np.float64):
        self.input_size, self.hidden_size, self.proj_size, self.bias = input_size, hidden_size, proj_size, bias
        self.dtype = np.dtype(dtype)
        self.state_sizes = (proj_size, hidden_size)
        self.output_width = proj_size
        H, I, P = hidden_size, input_size, proj_size
        bound = 1.0 / np.sqrt(H)                                       # torch's default for every LSTM weight
        self.params = {"U": init.uniform(rng, (4 * H, I), bound, self.dtype),
                       "W": init.uniform(rng, (4 * H, P), bound, self.dtype)}
        if bias:
            b = init.uniform(rng, (4 * H,), bound, self.dtype) + init.uniform(rng, (4 * H,), bound, self.dtype)
            b[H:2 * H] += forget_bias
            self.params["b"] = b
        self.params["W_hr"] = init.uniform(rng, (P, H), bound, self.dtype)

    def zero_state(self, batch: int) -> tuple:
        return np.zeros((batch, self.proj_size), self.dtype), np.zeros((batch, self.hidden_size), self.dtype)

    def forward(self, x: np.ndarray, state0: tuple):
        p, H, P = self.params, self.hidden_size, self.proj_size
        T, B = x.shape[:2]
        noise = self.noise if self.noise is not None and self.noise.active else None
        if noise is not None:
            _check_noise(noise, T, B, (P, H))
        r = None if noise is None else noise.recurrent                     # (B, P) recurrent dropout, or None
        A = p["U"].T[x] if x.dtype.kind in "iu" else x @ p["U"].T           # (T, B, 4H): U x_t, hoisted
        if self.bias:
            A = A + p["b"]
        hs, cs = np.empty((T + 1, B, P), self.dtype), np.empty((T + 1, B, H), self.dtype)
        hs[0], cs[0] = state0
        gates, tc, m = np.empty((T, B, 4 * H), self.dtype), np.empty((T, B, H), self.dtype), np.empty((T, B, H), self.dtype)
        WT, W_hrT = p["W"].T, p["W_hr"].T
        for t in range(T):
            a = A[t] + masked(r, hs[t]) @ WT                                 # U x_t + b + W (r h_{t-1})
            gate = gates[t]
            gate[:, :2 * H] = sigmoid(a[:, :2 * H])
            gate[:, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])
            gate[:, 3 * H:] = sigmoid(a[:, 3 * H:])
            i, f, g, o = gate[:, :H], gate[:, H:2 * H], gate[:, 2 * H:3 * H], gate[:, 3 * H:]
            c_new = f * cs[t] + i * g                                          # c~_t = f c_{t-1} + i g
            tc[t] = np.tanh(c_new)
            m[t] = o * tc[t]
            h_new = m[t] @ W_hrT                                               # h~_t = W_hr m_t
            cs[t + 1] = zoned(zone(noise, 1, t), cs[t], c_new)               # c_t = d^c c_{t-1} + (1 - d^c) c~_t
            hs[t + 1] = zoned(zone(noise, 0, t), hs[t], h_new)               # h_t = d^h h_{t-1} + (1 - d^h) h~_t
        return hs[1:], (hs[T], cs[T]), LSTMPCache(x, hs, cs, gates, tc, m, noise)

    def step(self, x_t: np.ndarray, state: tuple):
        h, final, _ = self.forward(np.asarray(x_t)[None], state)
        return h[0], final

    def backward(self, dh, dstate, cache: LSTMPCache, grads: dict, *, input_grad: bool = True,
                 overwrite_dh: bool = False):
        p, H, P = self.params, self.hidden_size, self.proj_size
        T, B = dh.shape[:2]
        noise = cache.noise
        r = None if noise is None else noise.recurrent
        dstate = (None, None) if dstate is None else dstate
        dh_next = np.zeros((B, P), self.dtype) if dstate[0] is None else np.array(dstate[0], self.dtype)
        dc_next = np.zeros((B, H), self.dtype) if dstate[1] is None else np.array(dstate[1], self.dtype)
        dh_total = np.empty((T, B, P), self.dtype)
        da_all = np.empty((T, B, 4 * H), self.dtype)
        dh_proj = np.empty((T, B, P), self.dtype)                              # dE/dh~_t, into W_hr m_t
        for t in range(T - 1, -1, -1):
            gate = cache.gates[t]
            i, f, g, o = gate[:, :H], gate[:, H:2 * H], gate[:, 2 * H:3 * H], gate[:, 3 * H:]
            dh_t = dh_total[t]
            np.add(dh[t], dh_next, out=dh_t)                                  # all paths into h_t
            dh_keep, dh_proj[t] = unzoned(zone(noise, 0, t), dh_t)          # to h_{t-1} | to h~_t
            dc_keep, dc_in = unzoned(zone(noise, 1, t), dc_next)            # to c_{t-1} | to c~_t
            dm = dh_proj[t] @ p["W_hr"]                                        # through h~_t = W_hr m_t
            tc = cache.tc[t]
            dc = dc_in + dm * o * (1.0 - tc * tc)                              # dE/dc~_t
            da = da_all[t]
            da[:, :H] = dc * g * i * (1.0 - i)
            da[:, H:2 * H] = dc * cache.cs[t] * f * (1.0 - f)
            da[:, 2 * H:3 * H] = dc * i * (1.0 - g * g)
            da[:, 3 * H:] = dm * tc * o * (1.0 - o)
            dc_next = dc * f + dc_keep                                         # dE/dc_{t-1}
            dh_next = masked(r, da @ p["W"]) + dh_keep                        # dE/dh_{t-1}
        da2 = da_all.reshape(T * B, 4 * H)
        accumulate_matmul(grads["W"], da2.T, masked(r, cache.hs[:-1]).reshape(T * B, P))   # sum_t da_t (r h_{t-1})
        accumulate_matmul(grads["W_hr"], dh_proj.reshape(T * B, P).T, cache.m.reshape(T * B, H))   # sum_t dh~_t m_t
        if self.bias:
            grads["b"] += column_sums(da2)
        x, dx = cache.x, None
        if x.dtype.kind in "iu":
            scatter_add_columns(grads["U"], x.reshape(-1), da2)
        else:
            accumulate_matmul(grads["U"], da2.T, x.reshape(T * B, -1))
            if input_grad:
                dx = (da2 @ p["U"]).reshape(T, B, -1)
        return dx, (dh_next, dc_next), dh_total
