"""The output layer  z_t = V h_t + c  for all T steps in one GEMM.

Shapes: h (T, B, H), V (O, H), c (O,), z (T, B, O). The lecture writes z_3 = V h_3 and
dE_3/dV = (y^_3 - y_3) (x) h_3: with dz[t] = dE/dz_t that outer product, summed over t
and the batch, is the single GEMM  dV = dz^T h  below.
"""

from __future__ import annotations

import numpy as np

from .. import init
from ..functional import accumulate_matmul
from ..workspace import empty


class Readout:
    workspace = None      # a workspace.Workspace while Network.loss_and_grads runs, else None (fresh arrays)

    def __init__(self, hidden_size: int, output_size: int, *, bias: bool = True,
                 rng: np.random.Generator, dtype=np.float64):
        bound = 1.0 / np.sqrt(hidden_size)        # torch.nn.Linear's default range
        self.bias = bias
        self.params: dict[str, np.ndarray] = {"V": init.uniform(rng, (output_size, hidden_size), bound, dtype)}
        if bias:
            self.params["c"] = init.uniform(rng, (output_size,), bound, dtype)

    def forward(self, h: np.ndarray) -> np.ndarray:
        T, B, H = h.shape
        V = self.params["V"]
        z = empty(self.workspace, "z", (T, B, V.shape[0]), np.result_type(h, V))
        np.dot(h.reshape(T * B, H), V.T, out=z.reshape(T * B, V.shape[0]))   # z_t = V h_t
        if self.bias:
            z += self.params["c"]
        return z

    def backward(self, dz: np.ndarray, h: np.ndarray, grads: dict) -> np.ndarray:
        """dz (T, B, O) = dE/dz_t. Accumulates dV, dc; returns dE/dh_t from the output (T, B, H)."""
        T, B, O = dz.shape
        H = h.shape[2]
        dz2 = dz.reshape(T * B, O)
        accumulate_matmul(grads["V"], dz2.T, h.reshape(T * B, H))   # sum_t (y^_t - y_t) (x) h_t
        if self.bias:
            grads["c"] += dz2.sum(axis=0)
        dh = empty(self.workspace, "dh", (T, B, H), np.result_type(dz, self.params["V"]))
        np.dot(dz2, self.params["V"], out=dh.reshape(T * B, H))
        return dh
