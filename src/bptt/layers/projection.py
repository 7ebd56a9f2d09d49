"""The input half of every cell's pre-activation, for all T steps at once.

    A_t = U x_t + b          A (T, B, G*H), G = 1 (rnn), 3 (gru), 4 (lstm)

This is the GEMM hoisted out of the time loop: only the recurrent half W h_{t-1} depends on
the previous step. For token ids, U times a one-hot x_t is column x_t of U, so the
"GEMM" is a lookup and never builds a one-hot matrix.
"""

from __future__ import annotations

import numpy as np

from ..workspace import empty


def project_inputs(layer, x: np.ndarray, out: np.ndarray | None = None, *, bias: bool = True) -> np.ndarray:
    """U x_t + b for every t, with ``layer.params["U"]`` (G*H, I) and ``layer.params["b"]``.
    x (T, B, I) features or (T, B) ids -> (T, B, G*H), written into ``out`` when given,
    else into the layer's "gates" scratch array (a fresh one outside ``loss_and_grads``).
    ``bias=False`` leaves b out: a compiled kernel that reads every entry anyway adds it for free
    (one pass over a (T, B, G*H) array saved)."""
    U = layer.params["U"]
    T, B = x.shape[:2]
    ids = x.dtype.kind in "iu"
    if out is None:
        dtype = U.dtype if ids else np.result_type(x, U)
        out = empty(layer.workspace, "gates", (T, B, U.shape[0]), dtype)
    if ids:
        np.take(U.T, x, axis=0, out=out)                                  # column x_t of U
    else:
        # BLAS reads the transposed view U.T in place (no copy) and writes straight into out.
        np.dot(x.reshape(T * B, x.shape[2]), U.T, out=out.reshape(T * B, U.shape[0]))
    if bias and layer.bias:
        out += layer.params["b"]
    return out
