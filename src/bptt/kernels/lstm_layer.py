"""The LSTM layer's fast paths: one ``forward`` and one ``backward`` call per layer, for
``LSTMLayer`` (layers/lstm.py, where the equations and the readable reference loops live).

    forward(layer, x, state0)                          -> h (T, B, H), (h_T, c_T), LSTMCache
    backward(layer, dh, dstate, cache, grads, *, input_grad, overwrite_dh)
                                                       -> dx, (dE/dh0, dE/dc0), dh_total

The arithmetic is the reference's, organised for speed (the tests compare the two:
tests/test_reference_lstm.py):

* forward, ``BPTT_KERNELS=numpy``: one tanh call per step serves all four gates
  (sigmoid(a) = 1/2 + tanh(a/2)/2, the i, f, o columns halved up front) -- ``_forward_numpy``;
* forward with numba: float32 one compiled pass per step (``kernels/lstm.py`` forward_step), or the
  whole time loop compiled with numpy's BLAS gemm inside (forward_loop); float64 numpy's SIMD tanh
  around one compiled pass (forward_cell), bit-identical to the numpy path;
* backward: the per-step factors of dE/da_t that do not depend on the recursion are formed a chunk
  of steps at a time, the weight gradients are one GEMM per chunk (functional.chunk_steps), and dE/dh
  from the readout may arrive a chunk at a time (``readout.ChunkedReadoutGrad``, the lean step);
  with numba one compiled pass per step (backward_step, backward_step_tanh) or per chunk
  (backward_loop_tanh).

The layer's scratch arrays come from its ``workspace`` (Network.loss_and_grads) when it has one.
This module imports numba only through ``kernels/lstm.py``, and that only when ``kernels.enabled()``;
it never imports layers/lstm.py (which imports it). The kernels are looked up on their module at
every call (``lstm_kernels.backward_step``...), so a test can monkeypatch them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..functional import accumulate_chunk, chunk_steps, column_sums, gate_tanh_scale, scatter_add_columns
from ..layers.projection import project_inputs
from ..layers.readout import backward_outputs
from ..workspace import empty


@dataclass
class LSTMCache:
    """What the fast backward needs from the fast forward."""

    x: np.ndarray       # (T, B, I) features or (T, B) ids
    hs: np.ndarray      # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    cs: np.ndarray      # (T+1, B, H): cs[0] = c0, cs[t+1] = c_t
    gates: np.ndarray   # (T, B, 4H): [i, f, g, o] after their nonlinearities
    # tanh(c_t) is not kept: backward recomputes it from c_t a chunk of steps at a time (one
    # vectorised pass), which saves a (T, B, H) array at the peak (issue 7's memory goal).


# ---------------------------------------------------------------------------------------- forward

def forward(layer, x: np.ndarray, state0: tuple):
    """x (T, B, I) or ids (T, B); state0 = (h0, c0), each (B, H).
    Returns h (T, B, H), (h_T, c_T), LSTMCache."""
    T, B = x.shape[:2]
    H = layer.hidden_size
    hs = empty(layer.workspace, "hs", (T + 1, B, H), layer.dtype)
    cs = empty(layer.workspace, "cs", (T + 1, B, H), layer.dtype)
    tanh_c = np.empty((B, H), layer.dtype)      # tanh(c_t) for the current step only
    hs[0], cs[0] = state0
    # U x_t for all t, hoisted: (T, B, 4H), becomes the gates in place. The bias b is added
    # here, or inside the float32 kernel's pass (which reads every entry anyway).
    gates = project_inputs(layer, x, bias=False)
    fused_bias = kernels.enabled() and layer.dtype == np.float32 and gates.dtype == layer.dtype
    if layer.bias and not fused_bias:
        gates += layer.params["b"]                # the same addition project_inputs would do
    if kernels.enabled():
        _forward_kernel(layer, gates, hs, cs, tanh_c)
    else:
        _forward_numpy(layer, gates, hs, cs, tanh_c)
    return hs[1:], (hs[T], cs[T]), LSTMCache(x, hs, cs, gates)


def _forward_numpy(layer, gates: np.ndarray, hs: np.ndarray, cs: np.ndarray, tanh_c: np.ndarray) -> None:
    """The time loop in tuned numpy calls (``BPTT_KERNELS=numpy``): gates (T, B, 4H) holds U x_t + b
    on entry and [i, f, g, o] on exit; fills hs[1:], cs[1:]; tanh_c (B, H) is scratch."""
    T, B, H = gates.shape[0], tanh_c.shape[0], tanh_c.shape[1]
    # One tanh call per step serves all four gates: sigmoid(a) = 1/2 + tanh(a/2)/2, so the
    # i, f, o columns of U x_t + b and of W^T are halved up front (exact in floating point,
    # the same bits as functional.sigmoid), and tanh's output is mapped by t * scale + shift.
    scale, shift = gate_tanh_scale("ssts", H, layer.dtype)               # (4H,) each
    gates *= scale
    WT = np.multiply(layer.params["W"].T, scale, out=np.empty((H, 4 * H), layer.dtype))   # contiguous
    recurrent = np.empty((B, 4 * H), layer.dtype)
    ig = np.empty((B, H), layer.dtype)
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


def _forward_kernel(layer, gates: np.ndarray, hs: np.ndarray, cs: np.ndarray, tanh_c: np.ndarray) -> None:
    """The same loop with the element-wise work of each step in one compiled pass
    (bptt/kernels/lstm.py); the GEMM stays in numpy."""
    if layer.dtype != np.float32:
        _forward_kernel_split(layer, gates, hs, cs, tanh_c)
        return
    from . import lstm as lstm_kernels
    from .blas import gemm_for
    B, H = tanh_c.shape
    WT = np.ascontiguousarray(layer.params["W"].T)     # (H, 4H): see RNNLayer.forward for why contiguous
    recurrent = np.empty((B, 4 * H), layer.dtype)
    b = layer.params["b"] if layer.bias else np.zeros(4 * H, layer.dtype)   # added in the kernel (forward)
    if kernels.loops_enabled(layer.dtype):     # the loop below, compiled (kernels/lstm.py)
        lstm_kernels.forward_loop(gemm_for(layer.dtype), gates, b, WT, recurrent, hs, cs)
        return
    dot, step = np.dot, lstm_kernels.forward_step
    for t, h_prev in enumerate(hs[:-1]):
        dot(h_prev, WT, out=recurrent)         # W h_{t-1}: the only GEMM in the loop, all 4 gates
        step(t, gates, b, recurrent, hs, cs)


def _forward_kernel_split(layer, gates: np.ndarray, hs: np.ndarray, cs: np.ndarray, tanh_c: np.ndarray) -> None:
    """float64 with kernels: numpy's tanh (SIMD) around one compiled pass for the gates and c_t
    (kernels/lstm.py explains why); 6 calls a step instead of 10, bit-identical to _forward_numpy."""
    from . import lstm as lstm_kernels
    T, B, H = gates.shape[0], tanh_c.shape[0], tanh_c.shape[1]
    scale, _ = gate_tanh_scale("ssts", H, layer.dtype)    # halve the sigmoid gates' columns, as there
    gates *= scale
    WT = np.multiply(layer.params["W"].T, scale, out=np.empty((H, 4 * H), layer.dtype))
    recurrent = np.empty((B, 4 * H), layer.dtype)
    dot, add, multiply, tanh, cell = np.dot, np.add, np.multiply, np.tanh, lstm_kernels.forward_cell
    for t in range(T):
        a = gates[t]
        dot(hs[t], WT, out=recurrent)
        add(a, recurrent, out=a)
        tanh(a, out=a)
        cell(t, gates, cs)                                      # [i, f, g, o] and c_t
        tanh(cs[t + 1], out=tanh_c)
        multiply(a[:, 3 * H:], tanh_c, out=hs[t + 1])           # h_t = o * tanh(c_t)


# --------------------------------------------------------------------------------------- backward

def _backward_chunk_numpy(layer, dh, dh_total, dh_next, dc, cache: LSTMCache, start: int, stop: int,
                          da: np.ndarray, tanh_c: np.ndarray, dh_to_dc: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """BPTT through steps start..stop-1 in tuned numpy calls (``BPTT_KERNELS=numpy``). dh_next, dc
    (B, H): dE/dh_t and dE/dc_t through step ``stop`` on entry; dc is updated in place to
    dE/dc_{start-1}. tanh_c (n, B, H) = tanh(c_t) for the chunk's steps. Fills da (n, B, 4H) with
    dE/da_t and dh_total[start:stop]; returns dE/dh_{start-1}.

    ``dh`` may be a readout.ChunkedReadoutGrad (dh_total is then None): tanh(c_t) is read only
    by the factors computed before the time loop, so the chunk's dE/dh_t from above is filled
    into the tanh_c buffer after them and dE/dh_t, all paths, overwrites it there -- no buffer
    of its own for dE/dh on this path."""
    gates, cs = cache.gates, cache.cs
    n = stop - start
    B, H = dc.shape
    W = layer.params["W"]
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


def backward(layer, dh, dstate: tuple | None, cache: LSTMCache, grads: dict, *,
             input_grad: bool = True, overwrite_dh: bool = False):
    """LSTMLayer.backward's contract (layers/lstm.py), on the fast path forward() took.

    ``dh`` may be a ``readout.ChunkedReadoutGrad`` (``shape``, ``dtype``, ``fill(start, stop, out)``):
    each chunk's dE/dh_t from above is filled into a (steps, B, H) buffer just before that chunk's
    steps run, dE/dh_t (all paths) overwrites it there, and dh_total is returned as None -- nothing
    of size T B H for dE/dh. On the numpy path that buffer is the tanh(c_t) one (see
    _backward_chunk_numpy); the kernel path keeps one of its own (its float32 step computes
    tanh(c_t) itself, so it holds no tanh(c_t) buffer either way). The numbers are bit for bit the
    array path's."""
    x, hs, cs, gates = cache.x, cache.hs, cache.cs, cache.gates
    T, B, H = dh.shape
    W = layer.params["W"]
    ids = x.dtype.kind in "iu"
    I = None if ids else x.shape[2]
    chunked, dh_total, dx = backward_outputs(dh, x, layer.params["U"], input_grad=input_grad,
                                             overwrite_dh=overwrite_dh)
    dstate = (None, None) if dstate is None else dstate
    dh_next = np.zeros((B, H), layer.dtype) if dstate[0] is None else np.array(dstate[0], layer.dtype)
    dc = np.zeros((B, H), layer.dtype) if dstate[1] is None else np.array(dstate[1], layer.dtype)
    use_kernel = kernels.enabled()
    # float32 kernels: the step kernel computes tanh(c_t) itself (kernels/lstm.py
    # backward_step_tanh, the same tanh forward used): no tanh(c_t) buffer. float64 forward
    # used np.tanh (see _forward_kernel), so its backward recomputes tanh(c_t) a chunk at a time
    # with it, as the numpy path does.
    fused_tanh = use_kernel and layer.dtype == np.float32
    # dE/da_t (4H wide), tanh(c_t) -- and on the numpy path o (1 - tanh(c_t)^2) -- live for one
    # chunk of time steps at a time; the weight gradients are GEMMs per chunk (functional.chunk_steps).
    # (The same `steps` whether dh arrives chunked or not, and with or without the tanh(c_t)
    # buffer: the chunks' partial sums of dW, dU, db, and so the rounding, must not depend on it.)
    steps = chunk_steps(T, B, (5 if use_kernel else 6) * H, 4 * H * (H + (0 if ids else I)))
    da_buffer = empty(layer.workspace, "da", (steps, B, 4 * H), dh.dtype)
    if not fused_tanh:
        tanh_c_buffer = empty(layer.workspace, "tanh_c", (steps, B, H), dh.dtype)
    if use_kernel:
        from . import lstm as lstm_kernels
        from .blas import gemm_for
        loops = kernels.loops_enabled(layer.dtype) and W.flags.c_contiguous   # gemm reads W in C order
        if chunked:                            # dE/dh_t for the current chunk's steps only
            dh_chunk = empty(layer.workspace, "dh", (steps, B, H), dh.dtype)
    else:
        dh_to_dc_buffer = empty(layer.workspace, "dh_to_dc", (steps, B, H), dh.dtype)
        tmp = np.empty((B, H), layer.dtype)
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
                lstm_kernels.backward_loop_tanh(gemm_for(layer.dtype), first, n, above, total, dh_next, dc,
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
            dh_next = _backward_chunk_numpy(layer, dh, dh_total, dh_next, dc, cache, start, stop, da, tanh_c,
                                            dh_to_dc_buffer[:n], tmp)

        # Shared weights: sum over time of the per-step gradients, one GEMM each per chunk.
        da2 = da.reshape(n * B, 4 * H)
        accumulate_chunk(grads, "W", da2.T, hs[start:stop].reshape(n * B, H), scratch)   # da_t (x) h_{t-1}
        if layer.bias:
            grads["b"] += column_sums(da2)
        if ids:
            scatter_add_columns(grads["U"], x[start:stop].reshape(-1), da2)
        else:
            accumulate_chunk(grads, "U", da2.T, x[start:stop].reshape(n * B, I), scratch)  # da_t (x) x_t
            if dx is not None:
                np.dot(da2, layer.params["U"], out=dx[start:stop].reshape(n * B, I))       # dE/dx_t
    return dx, (dh_next, dc), dh_total
