"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gates read the input only.

    z_t  = sigmoid(U_z x_t + b_z)                    update gate         (B, H)
    h~_t = U_h x_t + b_h                              candidate           (B, H)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t           = a_t * h_{t-1} + b_t,  a_t = 1 - z_t,  b_t = z_t * h~_t

Parameters: U (2H, I) with rows [z; h], b (2H,). There is no recurrent matrix: both GEMMs are
hoisted out of the time loop (one (T B, I) x (I, 2H) product), and what is left in time is the
element-wise scan of layers/scan.py. The Jacobian is diagonal, dh_t/dh_{t-1} = diag(1 - z_t), so
the lecture's product over a time lag is  prod_j (1 - z_j)  -- it vanishes exactly where the
network chose to update.

BPTT, with g_t = dE/dh_t from the reverse scan:
    da_t = g_t * h_{t-1},  db_t = g_t
    dz_t  = -da_t + db_t * h~_t = g_t * (h~_t - h_{t-1})       dh~_t = g_t * z_t
    dA_z  = dz_t * z_t (1 - z_t),   dA_h = dh~_t                (A = U x + b, the pre-activations)
    dU = sum_t dA_t^T x_t,  db = sum_t dA_t,  dx_t = dA_t U     (one GEMM each, after the scan)

Zoneout (layers/noise.py; ``self.noise``, set by Network for one forward call), d_t (T, B, H) 0/1
masks in training, the float p at evaluation, 1 = the unit keeps h_{t-1}:
    h_t = d_t h_{t-1} + (1 - d_t)(a_t h_{t-1} + b_t) = (d_t + (1 - d_t) a_t) h_{t-1} + (1 - d_t) b_t
is still the linear scan, with a'_t = d_t + (1 - d_t) a_t and b'_t = (1 - d_t) b_t: a and b change
before the scan (which stays the same, compiled with numba) and its backward chains back through
that change,  da_t = (1 - d_t) da'_t,  db_t = (1 - d_t) db'_t.  Recurrent dropout needs a recurrent
matrix, which these cells do not have: a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init, kernels
from ..functional import accumulate_matmul, column_sums, scatter_add_columns, sigmoid
from .projection import project_inputs
from .scan import linear_scan, linear_scan_backward


@dataclass
class MinGRUCache:
    x: np.ndarray       # (T, B, I) features or (T, B) ids
    h0: np.ndarray      # (B, H)
    h: np.ndarray       # (T, B, H)
    z: np.ndarray       # (T, B, H) update gate
    A: np.ndarray       # (T, B, 2H) pre-activations U x_t + b: [A_z, h~]
    d: np.ndarray | float | None = None   # zoneout's d_t: (T, B, H) 0/1 masks, the float p, or None


class MinGRULayer:
    """One minGRU layer over a whole sequence; state (h,)."""

    cell = "mingru"
    state_names = ("h",)
    workspace = None
    noise = None          # a noise.LayerNoise for one forward call (Network sets it), else None

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True,
                 rng: np.random.Generator, dtype=np.float64):
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.dtype = np.dtype(dtype)
        bound = 1.0 / np.sqrt(input_size)        # torch.nn.Linear's default for the x -> [z; h] map
        self.params = {"U": init.uniform(rng, (2 * hidden_size, input_size), bound, self.dtype)}
        if bias:
            self.params["b"] = init.uniform(rng, (2 * hidden_size,), bound, self.dtype)

    def zero_state(self, batch: int) -> tuple:
        return (np.zeros((batch, self.hidden_size), self.dtype),)

    def forward(self, x: np.ndarray, state0: tuple):
        H = self.hidden_size
        d = zoneout(self)                                 # (T, B, H) masks, p, or None
        A = project_inputs(self, x)                       # (T, B, 2H) = U x_t + b, every t at once
        z = sigmoid(A[:, :, :H])
        h0 = np.ascontiguousarray(state0[0], self.dtype)
        if d is None and _compiled(A, h0):                # the same arithmetic in one pass (kernels/mincells.py)
            from ..kernels import mincells
            h = np.empty(z.shape, self.dtype)
            mincells.mingru_forward(z, A, h0, h, self.dtype.type(1))
            return h, (h[-1],), MinGRUCache(x, h0, h, z, A)
        cand = A[:, :, H:]
        a, b = 1.0 - z, z * cand                          # h_t = (1 - z_t) h_{t-1} + z_t h~_t
        if d is not None:
            a, b = zoned_scan_terms(d, a, b)              # zoneout: a'_t = d + (1 - d) a_t, b'_t = (1 - d) b_t
        h = linear_scan(a, b, h0)
        return h, (h[-1],), MinGRUCache(x, h0, h, z, A, d)

    @staticmethod
    def recurrence_weights(cache) -> np.ndarray:
        """a_t of h_t = a_t * h_{t-1} + b_t, i.e. the diagonal of dh_t/dh_{t-1}: 1 - z_t, (T, B, H);
        with zoneout the effective d_t + (1 - d_t)(1 - z_t) the scan ran with."""
        a = 1.0 - cache.z
        return a if cache.d is None else zoned_scan_terms(cache.d, a)[0]

    def step(self, x_t: np.ndarray, state: tuple):
        h, (h_t,), _ = self.forward(np.asarray(x_t)[None], state)
        return h[0], (h_t,)

    def backward(self, dh, dstate, cache: MinGRUCache, grads: dict, *, input_grad: bool = True,
                 overwrite_dh: bool = False):
        H = self.hidden_size
        x, z, cand = cache.x, cache.z, cache.A[:, :, H:]
        dA = np.empty(z.shape[:2] + (2 * H,), np.result_type(dh.dtype, self.dtype))
        final = None if dstate is None else dstate[0]
        if cache.d is None and _compiled(cache.A, cache.h0) and dh.dtype == self.dtype:
            from ..kernels import mincells
            g = np.empty(z.shape, self.dtype)
            carry = np.zeros(z.shape[1:], self.dtype) if final is None else np.ascontiguousarray(final, self.dtype)
            dh0 = mincells.mingru_backward(
                z, cache.A, cache.h0, cache.h, np.ascontiguousarray(dh), carry, dA, g, self.dtype.type(1))
            return _input_gradients(self, x, dA, grads, input_grad), (dh0,), g
        da, g, dh0 = linear_scan_backward(self.recurrence_weights(cache), cache.h, cache.h0, dh, final)
        db = g                                                            # db_t = g_t
        if cache.d is not None:                                           # back through a'_t, b'_t
            da, db = (1.0 - cache.d) * da, (1.0 - cache.d) * g
        dA[:, :, :H] = (db * cand - da) * z * (1.0 - z)                  # dz_t = -da_t + db_t h~_t, through sigmoid
        dA[:, :, H:] = db * z                                             # dh~_t = db_t z_t
        return _input_gradients(self, x, dA, grads, input_grad), (dh0,), g


def zoneout(layer):
    """The zoneout d_t the layer's noise asks for, in the layer's dtype: (T, B, H) 0/1 masks
    (training), the float p (evaluation) or None. Shared by minGRU and minLSTM, whose only state is h
    and whose recurrence has no matrix W for recurrent dropout to act on."""
    noise = layer.noise
    if noise is None:
        return None
    if noise.recurrent is not None:
        raise ValueError(f"recurrent_dropout needs a recurrent matrix W; minGRU/minLSTM have none (cell "
                         f"{layer.cell!r}: its gates read x_t only) -- use zoneout or dropout between layers")
    if noise.zoneout is not None:
        return np.asarray(noise.zoneout[0], layer.dtype)
    return noise.zoneout_p if noise.zoneout_p > 0.0 else None


def zoned_scan_terms(d, a: np.ndarray, b: np.ndarray | None = None):
    """(a', b') = (d + (1 - d) a, (1 - d) b): zoneout's h_t = d h_{t-1} + (1 - d)(a_t h_{t-1} + b_t)
    as the scan h_t = a'_t h_{t-1} + b'_t. b' is None when b is."""
    keep = 1.0 - d                                        # (1 - d_t): the share of the cell's update
    return d + keep * a, None if b is None else keep * b


def _compiled(A: np.ndarray, h0: np.ndarray) -> bool:
    """Run the fused kernel? When numba is on and the arrays are float32/float64 of one dtype."""
    return kernels.enabled() and A.dtype == h0.dtype and A.dtype.name in ("float32", "float64")


def _input_gradients(layer, x: np.ndarray, dA: np.ndarray, grads: dict, input_grad: bool):
    """dU, db from dA (T, B, G H) = dE/d(U x_t + b), and dE/dx_t (None for ids or input_grad=False).
    Shared by the cells whose every matrix multiplies the input (minGRU, minLSTM)."""
    T, B, GH = dA.shape
    dA2 = dA.reshape(T * B, GH)
    if x.dtype.kind in "iu":
        scatter_add_columns(grads["U"], x.reshape(-1), dA2)              # U times one-hot x_t: a column
        dx = None
    else:
        accumulate_matmul(grads["U"], dA2.T, x.reshape(T * B, -1))       # sum_t dA_t (x) x_t
        dx = (dA2 @ layer.params["U"]).reshape(T, B, -1) if input_grad else None
    if layer.bias:
        grads["b"] += column_sums(dA2)
    return dx
