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

from .. import init, kernels
from ..functional import accumulate_chunk, activate, chunk_steps, column_sums, derivative_from_output, scatter_add_columns
from ..workspace import empty
from .projection import project_inputs
from .readout import backward_outputs


@dataclass
class RNNCache:
    """What backward needs from forward."""

    x: np.ndarray   # (T, B, I) features or (T, B) ids
    hs: np.ndarray  # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t


class RNNLayer:
    """One recurrent layer ``h_t = f(U x_t + W h_{t-1} + b)`` over a whole sequence."""

    cell = "rnn"
    state_names = ("h",)
    workspace = None      # a workspace.Workspace while Network.loss_and_grads runs, else None (fresh arrays)

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

    def input_projection(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """U x_t + b for all T steps at once (layers/projection.py): (T, B, H), into ``out`` when given."""
        return project_inputs(self, x, out)

    def forward(self, x: np.ndarray, state0: tuple[np.ndarray]):
        """x (T, B, I) or ids (T, B); state0 = (h0,) with h0 (B, H).
        Returns h (T, B, H), (h_T,), cache."""
        T, B = x.shape[:2]
        hs = empty(self.workspace, "hs", (T + 1, B, self.hidden_size), self.dtype)   # hs[0] = h0, hs[t+1] = h_t
        hs[0] = state0[0]
        # Hoisted: hs[1:] first holds U x_t + b for every t; step t adds W h_{t-1} and applies f
        # in place, so no separate (T, B, H) pre-activation array is ever allocated.
        self.input_projection(x, out=hs[1:])
        # A contiguous copy of W^T, made once per sequence: OpenBLAS's small-batch sgemm with a
        # transposed operand runs up to 2x slower than with a plain one (B=32, H=128 here), and
        # this GEMM runs T times. (W is updated in place by optimisers, so no caching across calls.)
        WT = np.ascontiguousarray(self.params["W"].T)   # (H, H)
        if _small_kernel(B, self.hidden_size):    # the same loop, compiled (bptt/kernels/rnn.py)
            from ..kernels import rnn as rnn_kernels
            rnn_kernels.forward_sequence(hs, WT, self.nonlinearity == "relu")
            return hs[1:], (hs[T],), RNNCache(x, hs)
        recurrent = np.empty((B, self.hidden_size), self.dtype)   # W h_{t-1}, reused every step
        f = np.tanh if self.nonlinearity == "tanh" else _relu
        dot, add = np.dot, np.add                  # local names: this loop is the hot path at small sizes
        for h_prev, h_t in zip(hs[:-1], hs[1:]):   # views, no per-step allocations
            dot(h_prev, WT, out=recurrent)         # W h_{t-1}: the only GEMM left in the loop
            add(h_t, recurrent, out=h_t)           # a_t = U x_t + b + W h_{t-1}
            f(h_t, out=h_t)                        # h_t = f(a_t)
        return hs[1:], (hs[T],), RNNCache(x, hs)

    def step(self, x_t: np.ndarray, state: tuple[np.ndarray]):
        """One step for sampling: x_t (B, I) or ids (B,). Returns h_t, (h_t,)."""
        U, W = self.params["U"], self.params["W"]
        # The same order of additions as forward: (U x_t + b) + W h_{t-1}.
        a = U.T[x_t] if x_t.dtype.kind in "iu" else x_t @ U.T     # (B, H); ids: a column lookup
        if self.bias:
            a += self.params["b"]
        a += state[0] @ W.T
        h = activate(a, self.nonlinearity, out=a)
        return h, (h,)

    # ---------------------------------------------------------------- backward
    # backward also takes dE/dh_t from above as a readout.ChunkedReadoutGrad (Network.loss_and_grads):
    # it then asks for one chunk of steps at a time and never holds all T steps of dE/dh.
    accepts_chunked_dh = True

    def backward(self, dh, dstate: tuple | None, cache: RNNCache, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, H): dE/dh_t arriving from above; dstate = (dE/dh_T,) from later
        chunks or None. Accumulates (+=) into grads["U"], grads["W"], grads["b"].

        Returns dx (T, B, I) or None for ids, (dE/dh0,), and dh_total (T, B, H) =
        the full dE/dh_t for every t (read by the diagnostics).
        ``input_grad=False`` skips dE/dx (returns None: a first layer's caller may not need it);
        ``overwrite_dh=True`` lets dh_total be written into ``dh`` itself (the caller owns dh
        and gives it up: one (T, B, H) array less at the peak).

        ``dh`` may instead be a ``readout.ChunkedReadoutGrad`` (anything with ``shape``, ``dtype``
        and ``fill(start, stop, out)``): each chunk's dE/dh_t is then filled into a (steps, B, H)
        buffer just before that chunk's steps run, dE/dh_t (all paths) overwrites it there (and
        then dE/da_t too, on the numpy path from B H^2 = _ONE_BUFFER_GEMM on), and dh_total is
        returned as None -- nothing of size T B H for dE/dh. The numbers (dx, dE/dh0, every
        gradient) are bit for bit those of the array path."""
        x, hs = cache.x, cache.hs
        T, B, H = dh.shape
        W = self.params["W"]
        chunked, dh_total, dx = backward_outputs(dh, x, self.params["U"], input_grad=input_grad,
                                                 overwrite_dh=overwrite_dh)
        ids = x.dtype.kind in "iu"
        if dstate is None or dstate[0] is None:
            dnext = np.zeros((B, H), self.dtype)
        else:
            dnext = np.array(dstate[0], self.dtype)
        # dE/da_t lives only for a chunk of `steps` time steps (~functional.CHUNK_ROWS rows): its
        # weight-gradient GEMMs run per chunk, still large, while a full (T, B, H) dE/da is never
        # held -- one T B H array less at the peak, and the chunk stays in cache for its GEMMs.
        # (The same `steps` in both modes: the chunks' partial sums of dW, dU, db, and so the
        # rounding, must not depend on how dE/dh arrives.)
        steps = chunk_steps(T, B, H, H * (H + (0 if ids else x.shape[2])))   # scratch: dW, dU
        small_kernel = _small_kernel(B, H)
        # chunked: dE/dh_t for the current chunk's steps only, (steps, B, H), overwritten in place.
        # `one_buffer`: at sizes where the per-step GEMM dwarfs a few (B, H) passes, that same
        # buffer then becomes dE/da_t in place, f'(a_t) being computed a step at a time -- one
        # (steps, B, H) array less again (see _ONE_BUFFER_GEMM).
        one_buffer = chunked and not small_kernel and B * H * H >= _ONE_BUFFER_GEMM
        da_buffer = empty(self.workspace, "da", (steps, B, H), dh.dtype)
        if one_buffer:
            dh_chunk, fprime = da_buffer, np.empty((B, H), dh.dtype)     # fprime: f'(a_t), one step
        elif chunked:
            dh_chunk = empty(self.workspace, "dh", (steps, B, H), dh.dtype)
        scratch = {}                               # (m, n) products after the first chunk's
        dot, add, multiply, subtract, greater = np.dot, np.add, np.multiply, np.subtract, np.greater
        tanh, one, zero = self.nonlinearity == "tanh", dh.dtype.type(1), dh.dtype.type(0)
        if small_kernel:                           # the same loop, compiled (bptt/kernels/rnn.py)
            from ..kernels import rnn as rnn_kernels
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
            elif small_kernel:                     # the whole chunk in one call, da_t W included
                da = da_buffer[:n]
                rnn_kernels.backward_chunk(above, total, hs[offset:], W, dnext, da, start - offset,
                                           stop - offset, self.nonlinearity == "relu")
            else:
                # da starts as f'(a_t) for the chunk's steps at once (one vectorised pass, not n
                # small ones); the loop multiplies in dE/dh_t, turning it into dE/da_t in place.
                da = derivative_from_output(hs[start + 1:stop + 1], self.nonlinearity, out=da_buffer[:n])
                for t in range(n - 1, -1, -1):
                    row = start - offset + t                   # step start + t in above/total
                    dh_t, da_t = total[row], da[t]
                    add(above[row], dnext, out=dh_t)           # dE/dh_t = from above + from step t+1
                    multiply(da_t, dh_t, out=da_t)             # da_t = dE/dh_t * f'(a_t)
                    dot(da_t, W, out=dnext)                    # dE/dh_{t-1} through W

            # Weights are shared across time: sum_t of the per-step gradients, one GEMM each per chunk.
            da2 = da.reshape(n * B, H)
            accumulate_chunk(grads, "W", da2.T, hs[start:stop].reshape(n * B, H), scratch)   # da_t (x) h_{t-1}
            if self.bias:
                grads["b"] += column_sums(da2)
            if ids:
                scatter_add_columns(grads["U"], x[start:stop].reshape(-1), da2)  # da_t (x) onehot(x_t)
            else:
                I = x.shape[2]
                accumulate_chunk(grads, "U", da2.T, x[start:stop].reshape(n * B, I), scratch)   # da_t (x) x_t
                if dx is not None:
                    np.dot(da2, self.params["U"], out=dx[start:stop].reshape(n * B, I))  # dE/dx_t
        return dx, (dnext,), dh_total


def _small_kernel(batch: int, hidden: int) -> bool:
    """Run the whole recurrence as one numba call? Only at small sizes (B H^2 <= SMALL_GEMM), where
    numpy's per-call overhead is most of a step; above that, per-step numpy GEMMs are as fast as a
    fused kernel (bench/ab_kernels.py measured 1.00-1.02x), so the numpy path runs."""
    return batch * hidden * hidden <= _SMALL_GEMM and kernels.enabled()


_SMALL_GEMM = 16384   # = kernels.rnn.SMALL_GEMM (not imported here: that would import numba)

# B * H * H from which the lean step's chunked backward (numpy path) keeps dE/dh_t and dE/da_t in one
# (steps, B, H) buffer: f'(a_t) is then computed per step, 1-2 more (B, H) ufunc calls a step.
# Measured (float32, OPENBLAS_NUM_THREADS=1, loss_and_grads, T=64, vs the two-buffer loop): +0.8% at
# B=32, H=128 (B H^2 = 2^19); noise from B=32, H=256 (2^21: 0.996-1.017x) and B=64, H=512 (2^24),
# where the buffer saved is 2 MiB.
_ONE_BUFFER_GEMM = 1 << 21


def _relu(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0, out=out)

