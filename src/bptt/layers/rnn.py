"""The lecture's recurrent layer, run over a whole sequence.

    a_t = U x_t + W h_{t-1} + b                       (H,)
    h_t = f(a_t),  f = tanh (default) or relu

Shapes (time-major, like PyTorch): x (T, B, I) floats or (T, B) token ids,
h (T, B, H), h0 (B, H); U (H, I), W (H, H), b (H,) -- the shapes of torch's
``weight_ih_l0``, ``weight_hh_l0`` and ``bias_ih_l0 + bias_hh_l0``.

Backpropagation through time. With dh[t] the gradient arriving at h_t from above
(the readout or the next layer) and dnext = dE/dh_t flowing back from step t+1:

    dh_total[t] = dh[t] + dnext                  # dE/dh_t: both paths out of h_t
    da[t]       = dh_total[t] * f'(a_t)          # through the nonlinearity
    dnext       = da[t] @ W                      # = dE/dh_{t-1} via  dh_t/dh_{t-1} = diag(f') W

Unrolling that recursion is exactly the lecture's product
``prod_{j=k+1..t} dh_j/dh_{j-1}``; summing the per-step terms is
``dE/dW = sum_t dE_t/dW``. Because W is shared across time, its gradient is one
GEMM over all steps after the loop:  dW = sum_t da[t]^T h_{t-1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init
from ..functional import activate, backprop_activation, scatter_add_columns


@dataclass
class RNNCache:
    """What backward needs from forward."""

    x: np.ndarray   # (T, B, I) features or (T, B) ids
    hs: np.ndarray  # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t


class RNNLayer:
    """One recurrent layer ``h_t = f(U x_t + W h_{t-1} + b)`` over a whole sequence."""

    cell = "rnn"
    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh",
                 bias: bool = True, rng: np.random.Generator, dtype=np.float64):
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.nonlinearity = nonlinearity
        self.bias = bias
        self.dtype = np.dtype(dtype)
        bound = 1.0 / np.sqrt(hidden_size)        # PyTorch's default for nn.RNN
        H, I = hidden_size, input_size
        self.params: dict[str, np.ndarray] = {
            "U": init.uniform(rng, (H, I), bound, self.dtype),   # input -> hidden
            "W": init.uniform(rng, (H, H), bound, self.dtype),   # hidden -> hidden
        }
        if bias:
            # torch keeps two biases (b_ih, b_hh); only their sum matters, so we keep one.
            self.params["b"] = (init.uniform(rng, (H,), bound, self.dtype)
                                + init.uniform(rng, (H,), bound, self.dtype))

    # ----------------------------------------------------------------- forward
    def zero_state(self, batch: int) -> tuple[np.ndarray]:
        return (np.zeros((batch, self.hidden_size), self.dtype),)

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """U x_t + b for all T steps at once: one GEMM (or a column lookup for ids)."""
        U = self.params["U"]
        if x.dtype.kind in "iu":                  # token ids: U x_t with x_t one-hot is column x_t of U
            A = U.T[x]                            # (T, B, H)
        else:
            T, B, I = x.shape
            A = (x.reshape(T * B, I) @ U.T).reshape(T, B, self.hidden_size)
        if self.bias:
            A += self.params["b"]
        return A

    def forward(self, x: np.ndarray, state0: tuple[np.ndarray]):
        """x (T, B, I) or ids (T, B); state0 = (h0,) with h0 (B, H).
        Returns h (T, B, H), (h_T,), cache."""
        T, B = x.shape[:2]
        hs = np.empty((T + 1, B, self.hidden_size), self.dtype)
        hs[0] = state0[0]
        A = self.input_projection(x)               # (T, B, H), hoisted out of the loop
        WT = self.params["W"].T
        nl = self.nonlinearity
        for t in range(T):
            h_t = hs[t + 1]
            np.dot(hs[t], WT, out=h_t)             # W h_{t-1}: the only GEMM left in the loop
            h_t += A[t]
            activate(h_t, nl, out=h_t)             # h_t = f(a_t)
        return hs[1:], (hs[T],), RNNCache(x, hs)

    def step(self, x_t: np.ndarray, state: tuple[np.ndarray]):
        """One step for sampling: x_t (B, I) or ids (B,). Returns h_t, (h_t,)."""
        a = self.input_projection(x_t[None])[0] + state[0] @ self.params["W"].T
        h = activate(a, self.nonlinearity, out=a)
        return h, (h,)

    # ---------------------------------------------------------------- backward
    def backward(self, dh: np.ndarray, dstate: tuple | None, cache: RNNCache, grads: dict):
        """dh (T, B, H): dE/dh_t arriving from above; dstate = (dE/dh_T,) from later
        chunks or None. Accumulates (+=) into grads["U"], grads["W"], grads["b"].

        Returns dx (T, B, I) or None for ids, (dE/dh0,), and dh_total (T, B, H) =
        the full dE/dh_t for every t (read by the diagnostics)."""
        x, hs = cache.x, cache.hs
        T, B, H = dh.shape
        W = self.params["W"]
        nl = self.nonlinearity
        dh_total = np.empty_like(dh)               # dE/dh_t, all paths
        da = np.empty_like(dh)                     # dE/da_t
        dnext = np.zeros((B, H), self.dtype) if dstate is None or dstate[0] is None else np.array(dstate[0], self.dtype)
        for t in range(T - 1, -1, -1):
            np.add(dh[t], dnext, out=dh_total[t])
            backprop_activation(dh_total[t], hs[t + 1], nl, out=da[t])   # da = dh * f'(a)
            np.dot(da[t], W, out=dnext)            # dE/dh_{t-1} through W

        # Weights are shared across time: sum_t of the per-step gradients, one GEMM each.
        da2 = da.reshape(T * B, H)
        grads["W"] += da2.T @ hs[:-1].reshape(T * B, H)          # sum_t da_t (x) h_{t-1}
        if self.bias:
            grads["b"] += da2.sum(axis=0)
        if x.dtype.kind in "iu":
            scatter_add_columns(grads["U"], x.reshape(-1), da2)   # sum_t da_t (x) onehot(x_t)
            dx = None
        else:
            I = x.shape[2]
            grads["U"] += da2.T @ x.reshape(T * B, I)            # sum_t da_t (x) x_t
            dx = (da2 @ self.params["U"]).reshape(T, B, I)
        return dx, (dnext,), dh_total
