"""Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000),
run over a whole sequence, in PyTorch's gate order [i, f, g, o] and weight layout.

    a_t = U x_t + W h_{t-1} + b                      (4H,) = [a_i, a_f, a_g, a_o]
    i_t = sigmoid(a_i)      input gate
    f_t = sigmoid(a_f)      forget gate
    g_t = tanh(a_g)         candidate cell
    o_t = sigmoid(a_o)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)

Shapes (time-major): x (T, B, I) floats or (T, B) token ids; h, c (T, B, H);
U (4H, I), W (4H, H), b (4H,) -- torch's ``weight_ih_l0``, ``weight_hh_l0`` and
``bias_ih_l0 + bias_hh_l0`` (only the sum enters a_t, so one bias is kept). All four
gates share one GEMM: ``h_{t-1} @ W.T`` is (B, 4H).

Forget-gate bias: ``forget_bias`` (default 1.0) is *added* to the f-slice b[H:2H] after
the uniform initialisation, so f_t starts near sigmoid(1) ~ 0.73 and the cell keeps its
memory early in training (Gers et al. 2000; Jozefowicz et al. 2015). Use 0.0 for torch's
plain initialisation. It only exists when ``bias=True``.

Backpropagation through time, with dh[t] arriving from above and (dh_next, dc_next)
from step t+1 (the cell state c is a second path back in time, which is why the
gradient through  dc_t/dc_{t-1} = diag(f_t)  need not vanish):

    dh_t  = dh[t] + dh_next                               # all paths into h_t
    do    = dh_t * tanh(c_t)
    dc_t  = dc_next + dh_t * o_t * (1 - tanh(c_t)^2)      # all paths into c_t
    di    = dc_t * g_t ;  dg = dc_t * i_t ;  df = dc_t * c_{t-1}
    dc_next = dc_t * f_t                                  # = dE/dc_{t-1}
    da    = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]  # through the gate nonlinearities
    dh_next = da @ W                                      # = dE/dh_{t-1}

and after the loop, one GEMM each:  dW = sum_t da_t^T h_{t-1},  dU = sum_t da_t^T x_t,
db = sum_t da_t.

Recurrent regularisers (layers/noise.py; ``Network`` sets ``layer.noise`` for one forward call).
Recurrent dropout's mask m (B, H) multiplies h_{t-1} where it meets W, and zoneout keeps each unit
of h and c with its own mask d^h_t, d^c_t (B, H) (or their expectation p at evaluation), h~_t
reading tanh of the un-zoned candidate c~_t (Krueger et al. 2017):

    a_t = U x_t + W (m * h_{t-1}) + b
    c~_t = f_t * c_{t-1} + i_t * g_t ;        c_t = d^c_t * c_{t-1} + (1 - d^c_t) * c~_t
    h~_t = o_t * tanh(c~_t) ;                 h_t = d^h_t * h_{t-1} + (1 - d^h_t) * h~_t

and backward (dh_t, dc_next as above are into the zoned h_t, c_t):

    dh~   = (1 - d^h_t) * dh_t ;              do  = dh~ * tanh(c~_t)
    dc~   = (1 - d^c_t) * dc_next + dh~ * o_t * (1 - tanh(c~_t)^2)
    di, df, dg and da as above with dc~ for dc_t
    dc_next <- dc~ * f_t + d^c_t * dc_next          # = dE/dc_{t-1}
    dh_next <- m * (da @ W) + d^h_t * dh_t          # = dE/dh_{t-1}
    dW = sum_t da_t^T (m * h_{t-1})

(m = 1, d = 0 give the plain LSTM's equations above.)

Two implementations. This file holds the reference: ``forward`` and ``backward`` below are the
equations above, one line each, a step at a time in plain numpy; they run under
``BPTT_KERNELS=reference`` and whenever ``noise`` is active. Everything else runs the fast paths
of kernels/lstm_layer.py (tuned numpy loops under ``BPTT_KERNELS=numpy``, numba kernels under
auto/numba), which compute the same numbers (tests/test_reference_lstm.py) but do not read like
the derivation. ``backward`` follows the path ``forward`` took (the cache's type).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init, kernels
from ..functional import accumulate_matmul, column_sums, scatter_add_columns, sigmoid
from ..kernels import lstm_layer
from ..kernels.lstm_layer import LSTMCache  # noqa: F401  (the fast path's cache; diagnostics read its fields)
from .noise import LayerNoise, masked, unzoned, zone, zoned
from .projection import project_inputs
from .readout import backward_outputs


@dataclass
class LSTMReferenceCache:
    """What the reference backward needs from the reference forward (the fast path keeps
    ``kernels.lstm_layer.LSTMCache``; x, hs, cs, gates mean the same in both)."""

    x: np.ndarray              # (T, B, I) features or (T, B) ids
    hs: np.ndarray             # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    cs: np.ndarray             # (T+1, B, H): cs[0] = c0, cs[t+1] = c_t
    gates: np.ndarray          # (T, B, 4H): [i, f, g, o] after their nonlinearities
    tanh_c: np.ndarray         # (T, B, H): tanh(c~_t), the un-zoned update's (= tanh(c_t) without zoneout)
    noise: LayerNoise | None   # the masks forward used (layers/noise.py), or None


def _check_noise(noise: LayerNoise, T: int, B: int, sizes: tuple[int, int]) -> None:
    """The masks must fit this call: recurrent (B, size of h), zoneout one (T, B, size) array per
    state (h, c). ``sizes`` = (size of h, size of c): (H, H), or (P, H) for the LSTMP (layers/lstmp.py)."""
    if noise.recurrent is not None and np.shape(noise.recurrent) != (B, sizes[0]):
        raise ValueError(f"noise.recurrent must have shape {(B, sizes[0])}, got {np.shape(noise.recurrent)}")
    if noise.zoneout is not None:
        if len(noise.zoneout) != 2:
            raise ValueError(f"an LSTM needs 2 zoneout masks (h, c), got {len(noise.zoneout)}")
        for name, size, d in zip(("h", "c"), sizes, noise.zoneout):
            if np.shape(d) != (T, B, size):
                raise ValueError(f"the zoneout mask of {name} must have shape {(T, B, size)}, got {np.shape(d)}")


class LSTMLayer:
    """One LSTM layer over a whole sequence; state (h, c)."""

    cell = "lstm"
    state_names = ("h", "c")
    workspace = None      # a workspace.Workspace while Network.loss_and_grads runs, else None (fresh arrays)
    noise = None          # a noise.LayerNoise set by Network for one forward call (recurrent dropout, zoneout)

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True, forget_bias: float = 1.0,
                 rng: np.random.Generator, dtype=np.float64):
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.forget_bias = forget_bias
        self.dtype = np.dtype(dtype)
        bound = 1.0 / np.sqrt(hidden_size)        # PyTorch's default for nn.LSTM
        H, I = hidden_size, input_size
        self.params: dict[str, np.ndarray] = {
            "U": init.uniform(rng, (4 * H, I), bound, self.dtype),   # input -> [i, f, g, o]
            "W": init.uniform(rng, (4 * H, H), bound, self.dtype),   # hidden -> [i, f, g, o]
        }
        if bias:
            b = init.uniform(rng, (4 * H,), bound, self.dtype) + init.uniform(rng, (4 * H,), bound, self.dtype)
            b[H:2 * H] += forget_bias                                 # forget gate starts open
            self.params["b"] = b

    def zero_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        H = self.hidden_size
        return np.zeros((batch, H), self.dtype), np.zeros((batch, H), self.dtype)

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """U x_t + b for all T steps at once (layers/projection.py): (T, B, 4H)."""
        return project_inputs(self, x)

    @staticmethod
    def _cell(a: np.ndarray, c_prev: np.ndarray, H: int, c_out: np.ndarray, tanh_c_out: np.ndarray):
        """Gate nonlinearities in place on a = [a_i, a_f, a_g, a_o] (B, 4H), then c_t and tanh(c_t)."""
        sigmoid(a[:, :2 * H], out=a[:, :2 * H])          # i, f
        np.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])  # g
        sigmoid(a[:, 3 * H:], out=a[:, 3 * H:])          # o
        i, f, g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H]
        np.multiply(f, c_prev, out=c_out)                # f * c_{t-1}
        c_out += i * g                                   # + i * g
        np.tanh(c_out, out=tanh_c_out)

    def forward(self, x: np.ndarray, state0: tuple):
        """x (T, B, I) or ids (T, B); state0 = (h0, c0), each (B, H).
        Returns h (T, B, H), (h_T, c_T), cache.

        Without noise, on the fast path (kernels/lstm_layer.py) unless ``BPTT_KERNELS=reference``;
        below, the reference: the docstring's equations, one line each, a step at a time."""
        noise = self.noise if self.noise is not None and self.noise.active else None
        if noise is None and kernels.fast_paths():
            return lstm_layer.forward(self, x, state0)
        T, B = x.shape[:2]
        H, W = self.hidden_size, self.params["W"]
        if noise is not None:
            _check_noise(noise, T, B, (H, H))
        m = None if noise is None else noise.recurrent           # (B, H) recurrent dropout mask, or None
        A = self.input_projection(x)                             # (T, B, 4H): U x_t + b, all steps at once
        hs = np.empty((T + 1, B, H), self.dtype)
        cs = np.empty((T + 1, B, H), self.dtype)
        gates = np.empty((T, B, 4 * H), self.dtype)
        tanh_c = np.empty((T, B, H), self.dtype)
        hs[0], cs[0] = state0
        for t in range(T):
            h_prev, c_prev = hs[t], cs[t]
            a = A[t] + masked(m, h_prev) @ W.T                  # a_t = U x_t + b + W (m * h_{t-1})  (B, 4H)
            i, f, g, o = np.split(gates[t], 4, axis=1)           # views of gates[t], (B, H) each
            i[:] = sigmoid(a[:, :H])                             # i_t = sigmoid(a_i)
            f[:] = sigmoid(a[:, H:2 * H])                        # f_t = sigmoid(a_f)
            g[:] = np.tanh(a[:, 2 * H:3 * H])                    # g_t = tanh(a_g)
            o[:] = sigmoid(a[:, 3 * H:])                         # o_t = sigmoid(a_o)
            c_new = f * c_prev + i * g                           # c~_t = f_t c_{t-1} + i_t g_t
            tanh_c[t] = np.tanh(c_new)
            h_new = o * tanh_c[t]                                # h~_t = o_t tanh(c~_t)
            cs[t + 1] = zoned(zone(noise, 1, t), c_prev, c_new)   # c_t = d^c c_{t-1} + (1 - d^c) c~_t
            hs[t + 1] = zoned(zone(noise, 0, t), h_prev, h_new)   # h_t = d^h h_{t-1} + (1 - d^h) h~_t
        return hs[1:], (hs[T], cs[T]), LSTMReferenceCache(x, hs, cs, gates, tanh_c, noise)

    def step(self, x_t: np.ndarray, state: tuple):
        """One step for sampling: x_t (B, I) or ids (B,). Returns h_t, (h_t, c_t)."""
        H = self.hidden_size
        h_prev, c_prev = state
        a = self.input_projection(x_t[None])[0] + h_prev @ self.params["W"].T
        c = np.empty_like(h_prev)
        tanh_c = np.empty_like(h_prev)
        self._cell(a, c_prev, H, c, tanh_c)
        h = a[:, 3 * H:] * tanh_c
        return h, (h, c)

    # backward also takes dE/dh_t from above as a readout.ChunkedReadoutGrad (Network.loss_and_grads,
    # as RNNLayer.backward): the fast path then asks for one chunk of steps at a time and never holds
    # all T steps (the reference fills all T at once).
    accepts_chunked_dh = True

    def backward(self, dh, dstate: tuple | None, cache, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, H): dE/dh_t from above; dstate = (dE/dh_T, dE/dc_T) (either may be None) or None.
        Accumulates (+=) into grads["U"], grads["W"], grads["b"].

        Returns dx (T, B, I) or None for ids, (dE/dh0, dE/dc0), and dh_total (T, B, H) = dE/dh_t.
        ``input_grad=False`` skips dE/dx (returns None); ``overwrite_dh=True`` writes dh_total into
        ``dh`` itself (see ``RNNLayer.backward``).

        ``dh`` may instead be a ``readout.ChunkedReadoutGrad`` (``shape``, ``dtype``,
        ``fill(start, stop, out)``); dh_total is then returned as None. The fast path
        (kernels/lstm_layer.py) takes it a chunk of steps at a time; the reference below fills
        all T steps at once.

        Backward follows the path forward took (the cache's type); below, the reference: the
        docstring's BPTT, one line each, a step at a time back through time."""
        if isinstance(cache, LSTMCache):
            return lstm_layer.backward(self, dh, dstate, cache, grads, input_grad=input_grad,
                                       overwrite_dh=overwrite_dh)
        x, hs, cs, gates, tanh_c, noise = cache.x, cache.hs, cache.cs, cache.gates, cache.tanh_c, cache.noise
        T, B, H = dh.shape
        U, W = self.params["U"], self.params["W"]
        m = None if noise is None else noise.recurrent
        chunked, dh_total, dx = backward_outputs(dh, x, U, input_grad=input_grad, overwrite_dh=overwrite_dh)
        if chunked:                       # a readout.ChunkedReadoutGrad: all T steps of it at once here
            dh = dh_total = dh.fill(0, T, np.empty(dh.shape, dh.dtype))
        dstate = (None, None) if dstate is None else dstate
        dh_next = np.zeros((B, H), self.dtype) if dstate[0] is None else np.array(dstate[0], self.dtype)
        dc_next = np.zeros((B, H), self.dtype) if dstate[1] is None else np.array(dstate[1], self.dtype)
        da = np.empty((T, B, 4 * H), dh.dtype)                   # dE/da_t, every step
        for t in range(T - 1, -1, -1):
            i, f, g, o = np.split(gates[t], 4, axis=1)
            dh_t = np.add(dh[t], dh_next, out=dh_total[t])       # dh_t = dh[t] + dh_next: all paths into h_t
            dh_keep, dh_new = unzoned(zone(noise, 0, t), dh_t)     # to h_{t-1} | to h~_t = o tanh(c~_t)
            dc_keep, dc_zoned = unzoned(zone(noise, 1, t), dc_next)  # to c_{t-1} | to c~_t
            dc_new = dc_zoned + dh_new * o * (1 - tanh_c[t] ** 2)  # dE/dc~_t = (1-d^c) dc_t + dh~ o (1 - tanh(c~)^2)
            da_i, da_f, da_g, da_o = np.split(da[t], 4, axis=1)
            da_i[:] = dc_new * g * i * (1 - i)                   # di = dc g,       through sigmoid
            da_f[:] = dc_new * cs[t] * f * (1 - f)               # df = dc c_{t-1}, through sigmoid
            da_g[:] = dc_new * i * (1 - g * g)                   # dg = dc i,       through tanh
            da_o[:] = dh_new * tanh_c[t] * o * (1 - o)           # do = dh tanh(c), through sigmoid
            dc_next = dc_new * f + dc_keep                       # dE/dc_{t-1} = dc_t f (+ zoneout's d^c dc_t)
            dh_next = masked(m, da[t] @ W) + dh_keep            # dE/dh_{t-1} = m (da W) (+ zoneout's d^h dh_t)
        # Shared weights: the sums over time are one GEMM each, after the loop.
        da2 = da.reshape(T * B, 4 * H)
        accumulate_matmul(grads["W"], da2.T, masked(m, hs[:-1]).reshape(T * B, H))   # dW = sum_t da_t^T (m h_{t-1})
        if self.bias:
            grads["b"] += column_sums(da2)                       # db = sum_t da_t
        if x.dtype.kind in "iu":
            scatter_add_columns(grads["U"], x.reshape(-1), da2)  # dU[:, id_t] += da_t (U x_t is a column lookup)
        else:
            x2 = x.reshape(T * B, x.shape[2])
            accumulate_matmul(grads["U"], da2.T, x2)             # dU = sum_t da_t^T x_t
            if dx is not None:
                np.dot(da2, U, out=dx.reshape(T * B, x.shape[2]))   # dE/dx_t = da_t U
        return dx, (dh_next, dc_next), None if chunked else dh_total
