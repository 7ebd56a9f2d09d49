"""The output layer  z_t = V h_t + c  for all T steps in one GEMM.

Shapes: h (T, B, H), V (O, H), c (O,), z (T, B, O). The lecture writes z_3 = V h_3 and
dE_3/dV = (y^_3 - y_3) (x) h_3: with dz[t] = dE/dz_t that outer product, summed over t
and the batch, is the single GEMM  dV = dz^T h  below.

What the readout sends down is  dE/dh_t = dz_t V  (B, H) per step. ``backward`` builds it for
all T steps at once (T, B, H); with ``chunked=True`` it returns a ``ChunkedReadoutGrad`` that
the top recurrent layer asks for a few steps at a time while it walks back through time, so
that no (T, B, H) dE/dh array exists (the lean training step, Network.loss_and_grads).
"""

from __future__ import annotations

import numpy as np

from .. import init
from ..functional import accumulate_matmul, column_sums
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

    def backward(self, dz: np.ndarray, h: np.ndarray, grads: dict, *, chunked: bool = False):
        """dz (T, B, O) = dE/dz_t. Accumulates dV, dc; returns dE/dh_t from the output (T, B, H),
        or with ``chunked=True`` a ``ChunkedReadoutGrad`` that computes it a chunk of steps at a
        time (dz must then stay untouched until the layer below has read every chunk)."""
        T, B, O = dz.shape
        H = h.shape[2]
        dz2 = dz.reshape(T * B, O)
        accumulate_matmul(grads["V"], dz2.T, h.reshape(T * B, H))   # sum_t (y^_t - y_t) (x) h_t
        if self.bias:
            grads["c"] += column_sums(dz2)
        if chunked:
            return ChunkedReadoutGrad(dz, self.params["V"], H)
        dh = empty(self.workspace, "dh", (T, B, H), np.result_type(dz, self.params["V"]))
        np.dot(dz2, self.params["V"], out=dh.reshape(T * B, H))     # dE/dh_t = dz_t V, all t
        return dh


class ChunkedReadoutGrad:
    """dE/dh_t = dz_t V from the readout, handed out a chunk of time steps at a time.

    Stands in for the (T, B, H) array ``Readout.backward`` would return: ``shape`` and ``dtype``
    are that array's, and ``fill(start, stop, out)`` writes its rows start..stop-1 into ``out``
    (at least (stop - start, B, H), C-contiguous). Each chunk is the same row-block of the same
    GEMM, dz[start:stop] (n B, O) x V (O, H): every element is the same dot product over O,
    so the numbers are those of the all-steps GEMM (tests/test_lean_memory.py checks bit for bit).
    A layer's ``backward`` that accepts this (``accepts_chunked_dh = True``) holds only a
    (steps, B, H) chunk of dE/dh instead of all T steps."""

    def __init__(self, dz: np.ndarray, V: np.ndarray, hidden_size: int):
        self.dz = dz                                          # (T, B, O) = dE/dz_t, read, never written
        self.V = V                                            # (O, H)
        T, B, _ = dz.shape
        self.shape = (T, B, hidden_size)
        self.dtype = np.result_type(dz, V)

    def fill(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """out[:stop - start] = dE/dh_t for t = start..stop-1 (one GEMM); returns that view."""
        _, B, O = self.dz.shape
        n = stop - start
        chunk = out[:n]
        np.dot(self.dz[start:stop].reshape(n * B, O), self.V, out=chunk.reshape(n * B, self.shape[2]))
        return chunk


def backward_outputs(dh, x: np.ndarray, U: np.ndarray, *, input_grad: bool, overwrite_dh: bool):
    """The arrays a recurrent layer's backward hands back, shared by every cell:
    (chunked, dh_total, dx). ``dh`` is dE/dh_t from above, a (T, B, H) array or a
    ``ChunkedReadoutGrad``. chunked: the latter. dh_total: where dE/dh_t (all paths) goes, (T, B, H)
    and returned -- ``dh`` itself when the caller gives it up (``overwrite_dh``), None when chunked
    (each chunk's dE/dh_t is dropped after use). dx: a (T, B, I) array for dE/dx_t, or None for
    token ids or ``input_grad=False``."""
    chunked = not isinstance(dh, np.ndarray)
    if chunked:
        dh_total = None
    else:
        dh_total = dh if overwrite_dh else np.empty_like(dh)
    T, B = dh.shape[:2]
    want_dx = input_grad and x.dtype.kind not in "iu"
    dx = np.empty((T, B, x.shape[2]), np.result_type(dh.dtype, U)) if want_dx else None
    return chunked, dh_total, dx
