"""The fast paths of the lecture's RNN layer (layers/rnn.py), one call each way per layer.

    a_t = U x_t + W h_{t-1} + b,   h_t = f(a_t)            (the equations: layers/rnn.py)

``forward(layer, x, state0)`` and ``backward(layer, dh, dstate, cache, grads, *, input_grad,
overwrite_dh)`` compute exactly what the readable loops of ``RNNLayer`` compute, only tuned:

- numpy (``BPTT_KERNELS=numpy``, or numba missing, or sizes above the kernel's): the recurrence
  written into one (T+1, B, H) array in place (no pre-activation array), a contiguous copy of W^T
  for the per-step GEMM, and a backward that runs in chunks of time steps so that dE/da_t (and,
  with a ``readout.ChunkedReadoutGrad``, dE/dh_t) never exist for all T steps at once;
- numba (``auto``/``numba`` and B H^2 <= SMALL_GEMM): the whole time loop of each chunk is one
  compiled call (kernels/rnn.py), imported only when ``kernels.enabled()`` -- this module imports
  without numba.

Both paths give the numbers of the reference loop to rounding (tests/test_reference_rnn.py) and the
array / chunked forms of dE/dh the same bits (tests/test_lean_memory.py). The layer decides which
path runs (``kernels.fast_paths()`` and no noise); backward follows forward through the cache's
type (``RNNFastCache`` here, the reference's own ``RNNCache`` in layers/rnn.py). This module does
not import layers/rnn.py: the layer is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..functional import accumulate_chunk, chunk_steps, column_sums, derivative_from_output, scatter_add_columns
from ..layers.readout import backward_outputs
from ..workspace import empty


@dataclass
class RNNFastCache:
    """What the fast backward needs from the fast forward (the field names the diagnostics read)."""

    x: np.ndarray   # (T, B, I) features or (T, B) ids
    hs: np.ndarray  # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t


# B * H * H at or below which the whole recurrence is one numba call (= kernels.rnn.SMALL_GEMM; not
# imported from there: that would import numba).
SMALL_GEMM = 16384

# B * H * H from which the lean step's chunked backward (numpy path) keeps dE/dh_t and dE/da_t in one
# (steps, B, H) buffer: f'(a_t) is then computed per step, 1-2 more (B, H) ufunc calls a step.
# Measured (float32, OPENBLAS_NUM_THREADS=1, loss_and_grads, T=64, vs the two-buffer loop): +0.8% at
# B=32, H=128 (B H^2 = 2^19); noise from B=32, H=256 (2^21: 0.996-1.017x) and B=64, H=512 (2^24),
# where the buffer saved is 2 MiB. (layers/rnn.py passes its copy, _ONE_BUFFER_GEMM, which the
# tests patch to force either loop.)
ONE_BUFFER_GEMM = 1 << 21


def small_kernel(batch: int, hidden: int) -> bool:
    """Run the whole recurrence as one numba call? Only at small sizes (B H^2 <= SMALL_GEMM), where
    numpy's per-call overhead is most of a step; above that, per-step numpy GEMMs are as fast as a
    fused kernel (bench/ab_kernels.py measured 1.00-1.02x), so the numpy path runs."""
    return batch * hidden * hidden <= SMALL_GEMM and kernels.enabled()


def _relu(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0, out=out)


def forward(layer, x: np.ndarray, state0: tuple):
    """x (T, B, I) or ids (T, B); state0 = (h0,) with h0 (B, H).
    Returns h (T, B, H), (h_T,), RNNFastCache."""
    T, B = x.shape[:2]
    hs = empty(layer.workspace, "hs", (T + 1, B, layer.hidden_size), layer.dtype)   # hs[0] = h0, hs[t+1] = h_t
    hs[0] = state0[0]
    # Hoisted: hs[1:] first holds U x_t + b for every t; step t adds W h_{t-1} and applies f
    # in place, so no separate (T, B, H) pre-activation array is ever allocated.
    layer.input_projection(x, out=hs[1:])
    # A contiguous copy of W^T, made once per sequence: OpenBLAS's small-batch sgemm with a
    # transposed operand runs up to 2x slower than with a plain one (B=32, H=128 here), and
    # this GEMM runs T times. (W is updated in place by optimisers, so no caching across calls.)
    WT = np.ascontiguousarray(layer.params["W"].T)   # (H, H)
    if small_kernel(B, layer.hidden_size):           # the same loop, compiled (kernels/rnn.py)
        from . import rnn as rnn_kernels
        rnn_kernels.forward_sequence(hs, WT, layer.nonlinearity == "relu")
        return hs[1:], (hs[T],), RNNFastCache(x, hs)
    recurrent = np.empty((B, layer.hidden_size), layer.dtype)   # W h_{t-1}, reused every step
    f = np.tanh if layer.nonlinearity == "tanh" else _relu
    dot, add = np.dot, np.add                  # local names: this loop is the hot path at small sizes
    for h_prev, h_t in zip(hs[:-1], hs[1:]):   # views, no per-step allocations
        dot(h_prev, WT, out=recurrent)         # W h_{t-1}: the only GEMM left in the loop
        add(h_t, recurrent, out=h_t)           # a_t = U x_t + b + W h_{t-1}
        f(h_t, out=h_t)                        # h_t = f(a_t)
    return hs[1:], (hs[T],), RNNFastCache(x, hs)


def backward(layer, dh, dstate: tuple | None, cache: RNNFastCache, grads: dict, *,
             input_grad: bool = True, overwrite_dh: bool = False, one_buffer_gemm: int = ONE_BUFFER_GEMM):
    """RNNLayer.backward's contract (layers/rnn.py), tuned. With a ``readout.ChunkedReadoutGrad``
    ``dh``, each chunk's dE/dh_t is filled into a (steps, B, H) buffer just before that chunk's steps
    run, dE/dh_t (all paths) overwrites it there (and then dE/da_t too, on the numpy path from
    B H^2 = ``one_buffer_gemm`` on), and dh_total is returned as None -- nothing of size T B H for
    dE/dh. The numbers (dx, dE/dh0, every gradient) are bit for bit those of the array path."""
    x, hs = cache.x, cache.hs
    T, B, H = dh.shape
    W = layer.params["W"]
    chunked, dh_total, dx = backward_outputs(dh, x, layer.params["U"], input_grad=input_grad,
                                             overwrite_dh=overwrite_dh)
    ids = x.dtype.kind in "iu"
    if dstate is None or dstate[0] is None:
        dnext = np.zeros((B, H), layer.dtype)
    else:
        dnext = np.array(dstate[0], layer.dtype)
    # dE/da_t lives only for a chunk of `steps` time steps (~functional.CHUNK_ROWS rows): its
    # weight-gradient GEMMs run per chunk, still large, while a full (T, B, H) dE/da is never
    # held -- one T B H array less at the peak, and the chunk stays in cache for its GEMMs.
    # (The same `steps` in both modes: the chunks' partial sums of dW, dU, db, and so the
    # rounding, must not depend on how dE/dh arrives.)
    steps = chunk_steps(T, B, H, H * (H + (0 if ids else x.shape[2])))   # scratch: dW, dU
    compiled = small_kernel(B, H)
    # chunked: dE/dh_t for the current chunk's steps only, (steps, B, H), overwritten in place.
    # `one_buffer`: at sizes where the per-step GEMM dwarfs a few (B, H) passes, that same
    # buffer then becomes dE/da_t in place, f'(a_t) being computed a step at a time -- one
    # (steps, B, H) array less again (see ONE_BUFFER_GEMM).
    one_buffer = chunked and not compiled and B * H * H >= one_buffer_gemm
    da_buffer = empty(layer.workspace, "da", (steps, B, H), dh.dtype)
    if one_buffer:
        dh_chunk, fprime = da_buffer, np.empty((B, H), dh.dtype)     # fprime: f'(a_t), one step
    elif chunked:
        dh_chunk = empty(layer.workspace, "dh", (steps, B, H), dh.dtype)
    scratch = {}                               # (m, n) products after the first chunk's
    dot, add, multiply, subtract, greater = np.dot, np.add, np.multiply, np.subtract, np.greater
    tanh, one, zero = layer.nonlinearity == "tanh", dh.dtype.type(1), dh.dtype.type(0)
    if compiled:                               # the same loop, compiled (kernels/rnn.py)
        from . import rnn as rnn_kernels
        W = np.ascontiguousarray(W)
    for stop in range(T, 0, -steps):
        start = max(0, stop - steps)
        n = stop - start
        if chunked:
            # Chunk-local time: row k of the buffer is step start + k. The loops below index
            # dh and dh_total by absolute t, so hand them the buffer shifted back by `start`
            # -- the kernel through its own start/stop and hs[start:], numpy through `offset`.
            above = total = dh.fill(start, stop, dh_chunk)    # dE/dh_t from above, t in the chunk
            offset = start
        else:
            above, total, offset = dh, dh_total, 0
        if one_buffer:
            # da_t = f'(a_t) * dE/dh_t overwrites dE/dh_t in the chunk buffer. The same operations
            # on the same numbers as the loop below (which takes f' for the chunk at once), so
            # the same bits; f' * dE/dh_t = dE/dh_t * f' exactly (IEEE products commute).
            da = above
            for t in range(n - 1, -1, -1):
                da_t, h_t = da[t], hs[start + t + 1]
                add(da_t, dnext, out=da_t)                 # dE/dh_t = from above + from step t+1
                if tanh:
                    multiply(h_t, h_t, out=fprime)         # tanh' = 1 - h_t^2, as in
                    subtract(one, fprime, out=fprime)      # functional.derivative_from_output
                else:
                    greater(h_t, zero, out=fprime)         # relu' = 1[h_t > 0]
                multiply(fprime, da_t, out=da_t)           # da_t = f'(a_t) * dE/dh_t
                dot(da_t, W, out=dnext)                    # dE/dh_{t-1} through W
        elif compiled:                         # the whole chunk in one call, da_t W included
            da = da_buffer[:n]
            rnn_kernels.backward_chunk(above, total, hs[offset:], W, dnext, da, start - offset,
                                       stop - offset, layer.nonlinearity == "relu")
        else:
            # da starts as f'(a_t) for the chunk's steps at once (one vectorised pass, not n
            # small ones); the loop multiplies in dE/dh_t, turning it into dE/da_t in place.
            da = derivative_from_output(hs[start + 1:stop + 1], layer.nonlinearity, out=da_buffer[:n])
            for t in range(n - 1, -1, -1):
                row = start - offset + t                   # step start + t in above/total
                dh_t, da_t = total[row], da[t]
                add(above[row], dnext, out=dh_t)           # dE/dh_t = from above + from step t+1
                multiply(da_t, dh_t, out=da_t)             # da_t = dE/dh_t * f'(a_t)
                dot(da_t, W, out=dnext)                    # dE/dh_{t-1} through W

        # Weights are shared across time: sum_t of the per-step gradients, one GEMM each per chunk.
        da2 = da.reshape(n * B, H)
        accumulate_chunk(grads, "W", da2.T, hs[start:stop].reshape(n * B, H), scratch)   # da_t (x) h_{t-1}
        if layer.bias:
            grads["b"] += column_sums(da2)
        if ids:
            scatter_add_columns(grads["U"], x[start:stop].reshape(-1), da2)  # da_t (x) onehot(x_t)
        else:
            I = x.shape[2]
            accumulate_chunk(grads, "U", da2.T, x[start:stop].reshape(n * B, I), scratch)   # da_t (x) x_t
            if dx is not None:
                np.dot(da2, layer.params["U"], out=dx[start:stop].reshape(n * B, I))  # dE/dx_t
    return dx, (dnext,), dh_total
