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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init, kernels
from ..functional import accumulate_chunk, chunk_steps, column_sums, gate_tanh_scale, scatter_add_columns, sigmoid
from ..workspace import empty
from .projection import project_inputs
from .readout import backward_outputs


@dataclass
class LSTMCache:
    """What backward needs from forward."""

    x: np.ndarray       # (T, B, I) features or (T, B) ids
    hs: np.ndarray      # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    cs: np.ndarray      # (T+1, B, H): cs[0] = c0, cs[t+1] = c_t
    gates: np.ndarray   # (T, B, 4H): [i, f, g, o] after their nonlinearities
    # tanh(c_t) is not kept: backward recomputes it from c_t a chunk of steps at a time (one
    # vectorised pass), which saves a (T, B, H) array at the peak (issue 7's memory goal).


class LSTMLayer:
    """One LSTM layer over a whole sequence; state (h, c)."""

    cell = "lstm"
    state_names = ("h", "c")
    workspace = None      # a workspace.Workspace while Network.loss_and_grads runs, else None (fresh arrays)

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
        Returns h (T, B, H), (h_T, c_T), cache."""
        T, B = x.shape[:2]
        H = self.hidden_size
        hs = empty(self.workspace, "hs", (T + 1, B, H), self.dtype)
        cs = empty(self.workspace, "cs", (T + 1, B, H), self.dtype)
        tanh_c = np.empty((B, H), self.dtype)      # tanh(c_t) for the current step only
        hs[0], cs[0] = state0
        # U x_t for all t, hoisted: (T, B, 4H), becomes the gates in place. The bias b is added
        # here, or inside the float32 kernel's pass (which reads every entry anyway).
        gates = project_inputs(self, x, bias=False)
        fused_bias = kernels.enabled() and self.dtype == np.float32 and gates.dtype == self.dtype
        if self.bias and not fused_bias:
            gates += self.params["b"]                # the same addition project_inputs would do
        if kernels.enabled():
            self._forward_kernel(gates, hs, cs, tanh_c)
        else:
            self._forward_numpy(gates, hs, cs, tanh_c)
        return hs[1:], (hs[T], cs[T]), LSTMCache(x, hs, cs, gates)

    def _forward_numpy(self, gates: np.ndarray, hs: np.ndarray, cs: np.ndarray, tanh_c: np.ndarray) -> None:
        """The time loop in numpy calls (the reference path): gates (T, B, 4H) holds U x_t + b on
        entry and [i, f, g, o] on exit; fills hs[1:], cs[1:]; tanh_c (B, H) is scratch."""
        T, B, H = gates.shape[0], tanh_c.shape[0], tanh_c.shape[1]
        # One tanh call per step serves all four gates: sigmoid(a) = 1/2 + tanh(a/2)/2, so the
        # i, f, o columns of U x_t + b and of W^T are halved up front (exact in floating point,
        # the same bits as functional.sigmoid), and tanh's output is mapped by t * scale + shift.
        scale, shift = gate_tanh_scale("ssts", H, self.dtype)               # (4H,) each
        gates *= scale
        WT = np.multiply(self.params["W"].T, scale, out=np.empty((H, 4 * H), self.dtype))   # contiguous
        recurrent = np.empty((B, 4 * H), self.dtype)
        ig = np.empty((B, H), self.dtype)
        dot, add, multiply, tanh = np.dot, np.add, np.multiply, np.tanh
        for t in range(T):
            a = gates[t]                                                     # (B, 4H)
            dot(hs[t], WT, out=recurrent)          # W h_{t-1}: the only GEMM in the loop, all 4 gates
            add(a, recurrent, out=a)
            tanh(a, out=a)
            multiply(a, scale, out=a)
            add(a, shift, out=a)                   # [i, f, g, o] = [sigma, sigma, tanh, sigma]
            c_t = cs[t + 1]
            multiply(a[:, H:2 * H], cs[t], out=c_t)                         # f * c_{t-1}
            multiply(a[:, :H], a[:, 2 * H:3 * H], out=ig)
            add(c_t, ig, out=c_t)                                            # + i * g
            tanh(c_t, out=tanh_c)
            multiply(a[:, 3 * H:], tanh_c, out=hs[t + 1])                    # h_t = o * tanh(c_t)

    def _forward_kernel(self, gates: np.ndarray, hs: np.ndarray, cs: np.ndarray, tanh_c: np.ndarray) -> None:
        """The same loop with the element-wise work of each step in one compiled pass
        (bptt/kernels/lstm.py); the GEMM stays in numpy."""
        if self.dtype != np.float32:
            self._forward_kernel_split(gates, hs, cs, tanh_c)
            return
        from ..kernels import lstm as lstm_kernels
        from ..kernels.blas import gemm_for
        B, H = tanh_c.shape
        WT = np.ascontiguousarray(self.params["W"].T)      # (H, 4H): see RNNLayer.forward for why contiguous
        recurrent = np.empty((B, 4 * H), self.dtype)
        b = self.params["b"] if self.bias else np.zeros(4 * H, self.dtype)   # added in the kernel (forward)
        if kernels.loops_enabled(self.dtype):      # the loop below, compiled (kernels/lstm.py)
            lstm_kernels.forward_loop(gemm_for(self.dtype), gates, b, WT, recurrent, hs, cs)
            return
        dot, step = np.dot, lstm_kernels.forward_step
        for t, h_prev in enumerate(hs[:-1]):
            dot(h_prev, WT, out=recurrent)         # W h_{t-1}: the only GEMM in the loop, all 4 gates
            step(t, gates, b, recurrent, hs, cs)

    def _forward_kernel_split(self, gates: np.ndarray, hs: np.ndarray, cs: np.ndarray, tanh_c: np.ndarray) -> None:
        """float64 with kernels: numpy's tanh (SIMD) around one compiled pass for the gates and c_t
        (kernels/lstm.py explains why); 6 calls a step instead of 10, bit-identical to _forward_numpy."""
        from ..kernels import lstm as lstm_kernels
        T, B, H = gates.shape[0], tanh_c.shape[0], tanh_c.shape[1]
        scale, _ = gate_tanh_scale("ssts", H, self.dtype)    # halve the sigmoid gates' columns, as there
        gates *= scale
        WT = np.multiply(self.params["W"].T, scale, out=np.empty((H, 4 * H), self.dtype))
        recurrent = np.empty((B, 4 * H), self.dtype)
        dot, add, multiply, tanh, cell = np.dot, np.add, np.multiply, np.tanh, lstm_kernels.forward_cell
        for t in range(T):
            a = gates[t]
            dot(hs[t], WT, out=recurrent)
            add(a, recurrent, out=a)
            tanh(a, out=a)
            cell(t, gates, cs)                                      # [i, f, g, o] and c_t
            tanh(cs[t + 1], out=tanh_c)
            multiply(a[:, 3 * H:], tanh_c, out=hs[t + 1])           # h_t = o * tanh(c_t)

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

    def _backward_chunk_numpy(self, dh, dh_total, dh_next, dc, cache: LSTMCache, start: int, stop: int,
                              da: np.ndarray, tanh_c: np.ndarray, dh_to_dc: np.ndarray, tmp: np.ndarray) -> np.ndarray:
        """BPTT through steps start..stop-1 in numpy calls (the reference path). dh_next, dc (B, H):
        dE/dh_t and dE/dc_t through step ``stop`` on entry; dc is updated in place to dE/dc_{start-1}.
        tanh_c (n, B, H) = tanh(c_t) for the chunk's steps. Fills da (n, B, 4H) with dE/da_t and
        dh_total[start:stop]; returns dE/dh_{start-1}.

        ``dh`` may be a readout.ChunkedReadoutGrad (dh_total is then None): tanh(c_t) is read only
        by the factors computed before the time loop, so the chunk's dE/dh_t from above is filled
        into the tanh_c buffer after them and dE/dh_t, all paths, overwrites it there -- no buffer
        of its own for dE/dh on this path."""
        gates, cs = cache.gates, cache.cs
        n = stop - start
        B, H = dc.shape
        W = self.params["W"]
        dc_wide = dc[:, None, :]                             # (B, 1, H): broadcasts over i, f, g
        dot, add, multiply = np.dot, np.add, np.multiply
        gate = gates[start:stop].reshape(n, B, 4, H)
        i, f, g, o = gate[:, :, 0], gate[:, :, 1], gate[:, :, 2], gate[:, :, 3]   # (n, B, H) views
        # Every factor of dE/da_t that does not depend on the recursion, for the chunk at once
        # (a few long vectorised passes instead of ~20 small ones per step):
        #   da_i = dc_t [g i (1-i)]   da_f = dc_t [c_{t-1} f (1-f)]   da_g = dc_t [i (1-g^2)]
        #   da_o = dh_t [tanh(c_t) o (1-o)]       and  dc_t gets dh_t [o (1 - tanh(c_t)^2)].
        factor = da.reshape(n, B, 4, H)
        f_i, f_f, f_g, f_o = factor[:, :, 0], factor[:, :, 1], factor[:, :, 2], factor[:, :, 3]
        np.subtract(1.0, i, out=f_i)
        f_i *= i
        f_i *= g                                         # g i (1-i)
        np.subtract(1.0, f, out=f_f)
        f_f *= f
        f_f *= cs[start:stop]                            # c_{t-1} f (1-f)
        np.multiply(g, g, out=f_g)
        np.subtract(1.0, f_g, out=f_g)
        f_g *= i                                         # i (1-g^2)
        np.subtract(1.0, o, out=f_o)
        f_o *= o
        f_o *= tanh_c                                    # tanh(c_t) o (1-o)
        np.multiply(tanh_c, tanh_c, out=dh_to_dc)
        np.subtract(1.0, dh_to_dc, out=dh_to_dc)
        dh_to_dc *= o                                    # o (1 - tanh(c_t)^2)

        if dh_total is None:                             # chunked: tanh_c is free from here on
            above = total = dh.fill(start, stop, tanh_c)  # dE/dh_t from above, row t = step start + t
            offset = start
        else:
            above, total, offset = dh, dh_total, 0
        for t in range(n - 1, -1, -1):
            row = start - offset + t                     # step start + t in above/total
            dht = total[row]
            add(above[row], dh_next, out=dht)            # dE/dh_t, all paths
            multiply(dht, dh_to_dc[t], out=tmp)
            add(dc, tmp, out=dc)                         # dE/dc_t = dc_next + dh_t o (1 - tanh^2)
            ifg = factor[t, :, :3]                       # (B, 3, H)
            multiply(ifg, dc_wide, out=ifg)              # da_i, da_f, da_g
            multiply(factor[t, :, 3], dht, out=factor[t, :, 3])   # da_o
            multiply(dc, f[t], out=dc)                   # dE/dc_{t-1}
            dot(da[t], W, out=dh_next)                   # dE/dh_{t-1} through all four gates

        return dh_next

    # backward also takes dE/dh_t from above as a readout.ChunkedReadoutGrad (Network.loss_and_grads,
    # as RNNLayer.backward): it then asks for one chunk of steps at a time and never holds all T steps.
    accepts_chunked_dh = True

    def backward(self, dh, dstate: tuple | None, cache: LSTMCache, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, H): dE/dh_t from above; dstate = (dE/dh_T, dE/dc_T) (either may be None) or None.
        Accumulates (+=) into grads["U"], grads["W"], grads["b"].

        Returns dx (T, B, I) or None for ids, (dE/dh0, dE/dc0), and dh_total (T, B, H) = dE/dh_t.
        ``input_grad=False`` skips dE/dx (returns None); ``overwrite_dh=True`` writes dh_total into
        ``dh`` itself (see ``RNNLayer.backward``).

        ``dh`` may instead be a ``readout.ChunkedReadoutGrad`` (``shape``, ``dtype``,
        ``fill(start, stop, out)``): each chunk's dE/dh_t from above is filled into a (steps, B, H)
        buffer just before that chunk's steps run, dE/dh_t (all paths) overwrites it there, and
        dh_total is returned as None -- nothing of size T B H for dE/dh. On the numpy path that
        buffer is the tanh(c_t) one (see _backward_chunk_numpy); the kernel path keeps one of its own
        (its float32 step computes tanh(c_t) itself, so it holds no tanh(c_t) buffer either way).
        The numbers are bit for bit the array path's."""
        x, hs, cs, gates = cache.x, cache.hs, cache.cs, cache.gates
        T, B, H = dh.shape
        W = self.params["W"]
        ids = x.dtype.kind in "iu"
        I = None if ids else x.shape[2]
        chunked, dh_total, dx = backward_outputs(dh, x, self.params["U"], input_grad=input_grad,
                                                 overwrite_dh=overwrite_dh)
        dstate = (None, None) if dstate is None else dstate
        dh_next = np.zeros((B, H), self.dtype) if dstate[0] is None else np.array(dstate[0], self.dtype)
        dc = np.zeros((B, H), self.dtype) if dstate[1] is None else np.array(dstate[1], self.dtype)
        use_kernel = kernels.enabled()
        # float32 kernels: the step kernel computes tanh(c_t) itself (kernels/lstm.py
        # backward_step_tanh, the same tanh forward used): no tanh(c_t) buffer. float64 forward
        # used np.tanh (see _forward_kernel), so its backward recomputes tanh(c_t) a chunk at a time
        # with it, as the numpy path does.
        fused_tanh = use_kernel and self.dtype == np.float32
        # dE/da_t (4H wide), tanh(c_t) -- and on the numpy path o (1 - tanh(c_t)^2) -- live for one
        # chunk of time steps at a time; the weight gradients are GEMMs per chunk (functional.chunk_steps).
        # (The same `steps` whether dh arrives chunked or not, and with or without the tanh(c_t)
        # buffer: the chunks' partial sums of dW, dU, db, and so the rounding, must not depend on it.)
        steps = chunk_steps(T, B, (5 if use_kernel else 6) * H, 4 * H * (H + (0 if ids else I)))
        da_buffer = empty(self.workspace, "da", (steps, B, 4 * H), dh.dtype)
        if not fused_tanh:
            tanh_c_buffer = empty(self.workspace, "tanh_c", (steps, B, H), dh.dtype)
        if use_kernel:
            from ..kernels import lstm as lstm_kernels
            from ..kernels.blas import gemm_for
            loops = kernels.loops_enabled(self.dtype) and W.flags.c_contiguous   # gemm reads W in C order
            if chunked:                            # dE/dh_t for the current chunk's steps only
                dh_chunk = empty(self.workspace, "dh", (steps, B, H), dh.dtype)
        else:
            dh_to_dc_buffer = empty(self.workspace, "dh_to_dc", (steps, B, H), dh.dtype)
            tmp = np.empty((B, H), self.dtype)
        scratch = {}
        dot = np.dot
        for stop in range(T, 0, -steps):
            start = max(0, stop - steps)
            n = stop - start
            da = da_buffer[:n]                               # dE/da_t for the chunk's steps
            if not fused_tanh:
                tanh_c = np.tanh(cs[start + 1:stop + 1], out=tanh_c_buffer[:n])   # tanh(c_t), not cached
            if use_kernel:
                # One compiled pass per step, then the GEMM. The kernel indexes dh, dh_total, gates
                # and cs by its t and the chunk buffers (da, tanh_c) by k. Chunked, it gets the chunk
                # buffer (row k = step start + k) as both dh and dh_total -- one view, so the in-place
                # loop -- and gates, cs shifted back by `start`, so that t = k (whole-array views,
                # no copies: the same compiled specialisation).
                if chunked:
                    above = total = dh.fill(start, stop, dh_chunk)   # dE/dh_t from above, t in the chunk
                    first, gates_from, cs_from = 0, gates[start:], cs[start:]
                else:
                    above, total, first, gates_from, cs_from = dh, dh_total, start, gates, cs
                if fused_tanh and loops:               # the loop below, compiled (kernels/lstm.py)
                    lstm_kernels.backward_loop_tanh(gemm_for(self.dtype), first, n, above, total, dh_next, dc,
                                                    gates_from, cs_from, da, W)
                elif fused_tanh:
                    step = lstm_kernels.backward_step_tanh
                    for k in range(n - 1, -1, -1):
                        step(first + k, k, above, total, dh_next, dc, gates_from, cs_from, da)
                        dot(da[k], W, out=dh_next)           # dE/dh_{t-1} through all four gates
                else:
                    step = lstm_kernels.backward_step
                    for k in range(n - 1, -1, -1):
                        step(first + k, k, above, total, dh_next, dc, gates_from, cs_from, tanh_c, da)
                        dot(da[k], W, out=dh_next)           # dE/dh_{t-1} through all four gates
            else:
                dh_next = self._backward_chunk_numpy(dh, dh_total, dh_next, dc, cache, start, stop, da, tanh_c,
                                                     dh_to_dc_buffer[:n], tmp)

            # Shared weights: sum over time of the per-step gradients, one GEMM each per chunk.
            da2 = da.reshape(n * B, 4 * H)
            accumulate_chunk(grads, "W", da2.T, hs[start:stop].reshape(n * B, H), scratch)   # da_t (x) h_{t-1}
            if self.bias:
                grads["b"] += column_sums(da2)
            if ids:
                scatter_add_columns(grads["U"], x[start:stop].reshape(-1), da2)
            else:
                accumulate_chunk(grads, "U", da2.T, x[start:stop].reshape(n * B, I), scratch)  # da_t (x) x_t
                if dx is not None:
                    np.dot(da2, self.params["U"], out=dx[start:stop].reshape(n * B, I))       # dE/dx_t
        return dx, (dh_next, dc), dh_total
