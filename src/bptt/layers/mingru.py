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


class MinGRULayer:
    """One minGRU layer over a whole sequence; state (h,)."""

    cell = "mingru"
    state_names = ("h",)
    workspace = None

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
        A = project_inputs(self, x)                       # (T, B, 2H) = U x_t + b, every t at once
        z = sigmoid(A[:, :, :H])
        h0 = np.ascontiguousarray(state0[0], self.dtype)
        if _compiled(A, h0):                              # the same arithmetic in one pass (kernels/mincells.py)
            from ..kernels import mincells
            h = np.empty(z.shape, self.dtype)
            mincells.mingru_forward(z, A, h0, h, self.dtype.type(1))
            return h, (h[-1],), MinGRUCache(x, h0, h, z, A)
        cand = A[:, :, H:]
        h = linear_scan(1.0 - z, z * cand, h0)            # h_t = (1 - z_t) h_{t-1} + z_t h~_t
        return h, (h[-1],), MinGRUCache(x, h0, h, z, A)

    @staticmethod
    def recurrence_weights(cache) -> np.ndarray:
        """a_t of h_t = a_t * h_{t-1} + b_t, i.e. the diagonal of dh_t/dh_{t-1}: 1 - z_t, (T, B, H)."""
        return 1.0 - cache.z

    def step(self, x_t: np.ndarray, state: tuple):
        h, (h_t,), _ = self.forward(np.asarray(x_t)[None], state)
        return h[0], (h_t,)

    def backward(self, dh, dstate, cache: MinGRUCache, grads: dict, *, input_grad: bool = True,
                 overwrite_dh: bool = False):
        H = self.hidden_size
        x, z, cand = cache.x, cache.z, cache.A[:, :, H:]
        dA = np.empty(z.shape[:2] + (2 * H,), np.result_type(dh.dtype, self.dtype))
        final = None if dstate is None else dstate[0]
        if _compiled(cache.A, cache.h0) and dh.dtype == self.dtype:
            from ..kernels import mincells
            g = np.empty(z.shape, self.dtype)
            carry = np.zeros(z.shape[1:], self.dtype) if final is None else np.ascontiguousarray(final, self.dtype)
            dh0 = mincells.mingru_backward(
                z, cache.A, cache.h0, cache.h, np.ascontiguousarray(dh), carry, dA, g, self.dtype.type(1))
            return _input_gradients(self, x, dA, grads, input_grad), (dh0,), g
        da, g, dh0 = linear_scan_backward(1.0 - z, cache.h, cache.h0, dh, final)
        dA[:, :, :H] = (g * cand - da) * z * (1.0 - z)                   # dz_t = -da_t + db_t h~_t, through sigmoid
        dA[:, :, H:] = g * z                                              # dh~_t
        return _input_gradients(self, x, dA, grads, input_grad), (dh0,), g


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
