"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): an LSTM whose gates read the input only,
with the forget and input gates normalised to sum to one.

    f_t  = sigmoid(U_f x_t + b_f)        i_t = sigmoid(U_i x_t + b_i)        h~_t = U_h x_t + b_h
    f'_t = f_t / (f_t + i_t)             i'_t = i_t / (f_t + i_t)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t  = a_t * h_{t-1} + b_t,   a_t = f'_t,  b_t = i'_t * h~_t

Parameters: U (3H, I) with rows [f; i; h], b (3H,). As for minGRU every GEMM is hoisted out of
the time loop and the recurrence is the element-wise scan of layers/scan.py; dh_t/dh_{t-1} = diag(f'_t).

BPTT, with g_t = dE/dh_t from the reverse scan and s_t = f_t + i_t:
    da_t = g_t * h_{t-1},  db_t = g_t
    di'_t = db_t * h~_t,   dh~_t = db_t * i'_t
    df_t = (i_t / s_t^2) (da_t - di'_t)        di_t = (f_t / s_t^2) (di'_t - da_t)
    dA_f = df_t f_t (1 - f_t),  dA_i = di_t i_t (1 - i_t),  dA_h = dh~_t
    dU = sum_t dA_t^T x_t,  db = sum_t dA_t,  dx_t = dA_t U

Zoneout (layers/noise.py) as for minGRU (layers/mingru.py): d_t (T, B, H) 0/1 masks, or p at
evaluation, turns the scan's terms into a'_t = d_t + (1 - d_t) f'_t and b'_t = (1 - d_t) i'_t h~_t
before the scan; backward takes da_t = (1 - d_t) da'_t and db_t = (1 - d_t) db'_t from the scan's
backward. Recurrent dropout: a ValueError (no recurrent matrix W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init
from ..functional import sigmoid
from .mingru import _compiled, _input_gradients, zoned_scan_terms, zoneout
from .projection import project_inputs
from .scan import linear_scan, linear_scan_backward


@dataclass
class MinLSTMCache:
    x: np.ndarray       # (T, B, I) features or (T, B) ids
    h0: np.ndarray      # (B, H)
    h: np.ndarray       # (T, B, H)
    f: np.ndarray       # (T, B, H) forget gate (before normalising)
    i: np.ndarray       # (T, B, H) input gate (before normalising)
    A: np.ndarray       # (T, B, 3H) pre-activations U x_t + b: [A_f, A_i, h~]
    d: np.ndarray | float | None = None   # zoneout's d_t: (T, B, H) 0/1 masks, the float p, or None


class MinLSTMLayer:
    """One minLSTM layer over a whole sequence; state (h,)."""

    cell = "minlstm"
    state_names = ("h",)
    workspace = None
    noise = None          # a noise.LayerNoise for one forward call (Network sets it), else None

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True,
                 rng: np.random.Generator, dtype=np.float64):
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.dtype = np.dtype(dtype)
        bound = 1.0 / np.sqrt(input_size)        # torch.nn.Linear's default for the x -> [f; i; h] map
        self.params = {"U": init.uniform(rng, (3 * hidden_size, input_size), bound, self.dtype)}
        if bias:
            self.params["b"] = init.uniform(rng, (3 * hidden_size,), bound, self.dtype)

    def zero_state(self, batch: int) -> tuple:
        return (np.zeros((batch, self.hidden_size), self.dtype),)

    def forward(self, x: np.ndarray, state0: tuple):
        H = self.hidden_size
        d = zoneout(self)                                 # (T, B, H) masks, p, or None
        A = project_inputs(self, x)                       # (T, B, 3H) = U x_t + b, every t at once
        f = sigmoid(A[:, :, :H])
        i = sigmoid(A[:, :, H:2 * H])
        h0 = np.ascontiguousarray(state0[0], self.dtype)
        if d is None and _compiled(A, h0):                # the same arithmetic in one pass (kernels/mincells.py)
            from ..kernels import mincells
            h = np.empty(f.shape, self.dtype)
            mincells.minlstm_forward(f, i, A, h0, h, self.dtype.type(1))
            return h, (h[-1],), MinLSTMCache(x, h0, h, f, i, A)
        s = f + i
        a, b = f / s, (i / s) * A[:, :, 2 * H:]          # h_t = f'_t h_{t-1} + i'_t h~_t
        if d is not None:
            a, b = zoned_scan_terms(d, a, b)              # zoneout: a'_t = d + (1 - d) a_t, b'_t = (1 - d) b_t
        h = linear_scan(a, b, h0)
        return h, (h[-1],), MinLSTMCache(x, h0, h, f, i, A, d)

    @staticmethod
    def recurrence_weights(cache) -> np.ndarray:
        """a_t of h_t = a_t * h_{t-1} + b_t, i.e. the diagonal of dh_t/dh_{t-1}: f'_t, (T, B, H);
        with zoneout the effective d_t + (1 - d_t) f'_t the scan ran with."""
        a = cache.f / (cache.f + cache.i)
        return a if cache.d is None else zoned_scan_terms(cache.d, a)[0]

    def step(self, x_t: np.ndarray, state: tuple):
        h, (h_t,), _ = self.forward(np.asarray(x_t)[None], state)
        return h[0], (h_t,)

    def backward(self, dh, dstate, cache: MinLSTMCache, grads: dict, *, input_grad: bool = True,
                 overwrite_dh: bool = False):
        H = self.hidden_size
        f, i, cand = cache.f, cache.i, cache.A[:, :, 2 * H:]
        final = None if dstate is None else dstate[0]
        if cache.d is None and _compiled(cache.A, cache.h0) and dh.dtype == self.dtype:
            from ..kernels import mincells
            g = np.empty(f.shape, self.dtype)
            dA = np.empty(f.shape[:2] + (3 * H,), self.dtype)
            carry = np.zeros(f.shape[1:], self.dtype) if final is None else np.ascontiguousarray(final, self.dtype)
            dh0 = mincells.minlstm_backward(
                f, i, cache.A, cache.h0, cache.h, np.ascontiguousarray(dh), carry, dA, g, self.dtype.type(1))
            return _input_gradients(self, cache.x, dA, grads, input_grad), (dh0,), g
        s = f + i
        da, g, dh0 = linear_scan_backward(self.recurrence_weights(cache), cache.h, cache.h0, dh, final)
        db = g                                                            # db_t = g_t
        if cache.d is not None:                                           # back through a'_t, b'_t
            da, db = (1.0 - cache.d) * da, (1.0 - cache.d) * g
        di_norm = db * cand                                               # di'_t = db_t h~_t
        dA = np.empty(f.shape[:2] + (3 * H,), g.dtype)
        s2 = s * s
        dA[:, :, :H] = (i / s2) * (da - di_norm) * f * (1.0 - f)         # through f' and f = sigmoid(A_f)
        dA[:, :, H:2 * H] = (f / s2) * (di_norm - da) * i * (1.0 - i)    # through i' and i = sigmoid(A_i)
        dA[:, :, 2 * H:] = db * (i / s)                                   # dh~_t = db_t i'_t
        return _input_gradients(self, cache.x, dA, grads, input_grad), (dh0,), g
