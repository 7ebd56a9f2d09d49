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

Recurrent regularisers (layers/noise.py; ``self.noise``, set by Network for one forward call).
Recurrent dropout multiplies h_{t-1} by a keep-mask m (B, H) where it meets W; zoneout keeps a
unit's previous value where d_t = 1 (d_t = p, the expectation, at evaluation):

    a_t  = U x_t + W (m * h_{t-1}) + b,   h~_t = f(a_t)
    h_t  = d_t * h_{t-1} + (1 - d_t) * h~_t

    dh_total[t] = dh[t] + dnext
    da[t]       = (1 - d_t) * dh_total[t] * f'(a_t)          # f' through h~_t, not h_t
    dnext       = m * (da[t] @ W) + d_t * dh_total[t]         # through W, and through the kept copy
    dW          = sum_t da[t]^T (m * h_{t-1})

The code below is that reference: one plain numpy loop each way, its lines the equations above.
What normally runs is the tuned fast path of kernels/rnn_layer.py (numpy loops in place, chunked
backward, numba at small sizes) -- the same numbers to rounding (tests/test_reference_rnn.py);
``BPTT_KERNELS=reference`` or any active noise runs this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init, kernels
from ..functional import activate, derivative_from_output, scatter_add_columns
from ..kernels import rnn_layer
from ..kernels.rnn_layer import RNNFastCache
from .noise import LayerNoise
from .projection import project_inputs
from .readout import backward_outputs


@dataclass
class RNNCache:
    """What the reference backward needs from the reference forward (a fast forward returns
    kernels.rnn_layer.RNNFastCache, same x and hs, and backward follows it there)."""

    x: np.ndarray                      # (T, B, I) features or (T, B) ids
    hs: np.ndarray                     # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    noise: LayerNoise | None = None    # the masks forward used (layers/noise.py), or None
    cand: np.ndarray | None = None     # (T, B, H) h~_t = f(a_t) with zoneout; None: h_t itself


class RNNLayer:
    """One recurrent layer ``h_t = f(U x_t + W h_{t-1} + b)`` over a whole sequence."""

    cell = "rnn"
    state_names = ("h",)
    workspace = None      # a workspace.Workspace while Network.loss_and_grads runs, else None (fresh arrays)
    noise = None          # a noise.LayerNoise for one forward call (Network sets it), else None

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
        noise = self.noise
        if (noise is None or not noise.active) and kernels.fast_paths():
            return rnn_layer.forward(self, x, state0)          # the same numbers, tuned
        T, B = x.shape[:2]
        H, W = self.hidden_size, self.params["W"]
        m = None if noise is None else noise.recurrent         # (B, H) recurrent-dropout keep-mask, or None
        zoned = noise is not None and noise.has_zoneout
        Ux = self.input_projection(x, out=np.empty((T, B, H), self.dtype))   # U x_t + b, every t at once
        hs = np.empty((T + 1, B, H), self.dtype)               # hs[0] = h0, hs[t+1] = h_t
        hs[0] = state0[0]
        # h~_t = f(a_t), kept for f'(a_t) in backward; without zoneout h_t = h~_t, so hs[1:] itself.
        cand = np.empty((T, B, H), self.dtype) if zoned else hs[1:]
        for t in range(T):
            h_prev = hs[t]
            h_in = h_prev if m is None else m * h_prev         # recurrent dropout: W (m * h_{t-1})
            a_t = Ux[t] + h_in @ W.T                           # a_t = U x_t + b + W h_{t-1}
            cand[t] = activate(a_t, self.nonlinearity)         # h~_t = f(a_t)
            d = None if noise is None else noise.zone(0, t)    # zoneout: (B, H) 0/1 (1 = keep h_{t-1}), or p
            if d is not None:
                hs[t + 1] = d * h_prev + (1 - d) * cand[t]     # h_t = d_t h_{t-1} + (1 - d_t) h~_t
        return hs[1:], (hs[T],), RNNCache(x, hs, noise, cand if zoned else None)

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
    # the fast path then asks for one chunk of steps at a time and never holds all T steps of dE/dh.
    accepts_chunked_dh = True

    def backward(self, dh, dstate: tuple | None, cache, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, H): dE/dh_t arriving from above; dstate = (dE/dh_T,) from later
        chunks or None. Accumulates (+=) into grads["U"], grads["W"], grads["b"].

        Returns dx (T, B, I) or None for ids, (dE/dh0,), and dh_total (T, B, H) =
        the full dE/dh_t for every t (read by the diagnostics).
        ``input_grad=False`` skips dE/dx (returns None: a first layer's caller may not need it);
        ``overwrite_dh=True`` lets dh_total be written into ``dh`` itself (the caller owns dh
        and gives it up: one (T, B, H) array less at the peak).

        ``dh`` may instead be a ``readout.ChunkedReadoutGrad`` (anything with ``shape``, ``dtype``
        and ``fill(start, stop, out)``); dh_total is then returned as None. The fast path fills it a
        chunk of steps at a time (kernels/rnn_layer.py), this reference all at once; the numbers
        (dx, dE/dh0, every gradient) are bit for bit those of the array form."""
        if isinstance(cache, RNNFastCache):                    # forward ran the fast path: so does backward
            return rnn_layer.backward(self, dh, dstate, cache, grads, input_grad=input_grad,
                                      overwrite_dh=overwrite_dh, one_buffer_gemm=_ONE_BUFFER_GEMM)
        x, hs, noise = cache.x, cache.hs, cache.noise
        T, B, H = dh.shape
        U, W = self.params["U"], self.params["W"]
        chunked, dh_total, dx = backward_outputs(dh, x, U, input_grad=input_grad, overwrite_dh=overwrite_dh)
        if chunked:                                            # dE/dh_t from above for all T steps, ours to overwrite
            dh = dh_total = dh.fill(0, T, np.empty(dh.shape, dh.dtype))
        m = None if noise is None else noise.recurrent         # (B, H) recurrent-dropout keep-mask, or None
        cand = hs[1:] if cache.cand is None else cache.cand    # h~_t = f(a_t)
        da = np.empty((T, B, H), dh.dtype)                     # dE/da_t, every t (for the weight GEMMs)
        dnext = np.zeros((B, H), self.dtype) if dstate is None or dstate[0] is None \
            else np.array(dstate[0], self.dtype)               # dE/dh_T from later chunks
        for t in range(T - 1, -1, -1):
            dh_total[t] = dh[t] + dnext                        # dE/dh_t = from above + from step t+1
            d = None if noise is None else noise.zone(0, t)    # zoneout's d_t: (B, H) 0/1, or p, or None
            dcand = dh_total[t] if d is None else (1 - d) * dh_total[t]    # dE/dh~_t
            da[t] = dcand * derivative_from_output(cand[t], self.nonlinearity)   # dE/da_t = dE/dh~_t f'(a_t)
            dnext = da[t] @ W                                  # dE/dh_{t-1} through W ...
            if m is not None:
                dnext *= m                                     # ... and the dropout mask on h_{t-1}
            if d is not None:
                dnext += d * dh_total[t]                       # ... plus the zoned-out copy of h_{t-1}

        # Weights are shared across time: dE/dW = sum_t dE_t/dW, one GEMM each over all steps.
        da2 = da.reshape(T * B, H)
        h_in = hs[:-1] if m is None else m * hs[:-1]           # (T, B, H): what W multiplied
        grads["W"] += da2.T @ h_in.reshape(T * B, H)           # sum_t da_t (x) (m * h_{t-1})
        if self.bias:
            grads["b"] += da2.sum(axis=0)                      # sum_t da_t
        if x.dtype.kind in "iu":
            scatter_add_columns(grads["U"], x.reshape(-1), da2)   # da_t (x) onehot(x_t): column x_t of dU
        else:
            I = x.shape[2]
            grads["U"] += da2.T @ x.reshape(T * B, I)          # sum_t da_t (x) x_t
            if dx is not None:
                dx[...] = (da2 @ U).reshape(T, B, I)           # dE/dx_t = da_t U
        return dx, (dnext,), None if chunked else dh_total


# The fast path's threshold for its one-buffer chunked backward (measured: kernels/rnn_layer.py,
# ONE_BUFFER_GEMM); read here at every call, so tests (test_lean_memory.py) can force either loop.
_ONE_BUFFER_GEMM = rnn_layer.ONE_BUFFER_GEMM
