"""The fast paths of ``GRULayer`` (torch variant): what runs unless ``BPTT_KERNELS=reference``.

layers/gru.py keeps the lecture's version -- one readable numpy loop forward, one backward, the
docstring's equations line by line -- and calls this module, one call per layer:

    forward(layer, x, state0)                 -> h (T, B, H), (h_T,), GRUCache
    backward(layer, dh, dstate, cache, grads, *, input_grad, overwrite_dh)
                                              -> dx or None, (dE/dh0,), dh_total or None

The numbers are the reference's (the same equations; tests/test_reference_gru.py compares them)
but computed for speed, by one of two paths that ``bptt.kernels`` picks:

- numpy (``BPTT_KERNELS=numpy``, or numba missing): tuned numpy loops -- r and z share one tanh
  (sigmoid(a) = 1/2 + tanh(a/2)/2, their columns of U x_t + b and W halved up front, exact), one
  GEMM per step for all three gates, the backward's step-independent factors formed for a chunk
  of steps at once (5 calls per step), weight gradients as GEMMs per chunk;
- numba (auto/numba): each step's element-wise work compiled (kernels/gru.py), or with numpy's
  BLAS reachable from compiled code the whole time loop (``kernels.loops_enabled``).

Both take dE/dh_t from above as a ``readout.ChunkedReadoutGrad`` (Network.loss_and_grads: no
(T, B, H) dE/dh array) and use the layer's workspace buffers. kernels/gru.py, which imports
numba, is imported here only when ``kernels.enabled()``, and looked up on its module at call time
(tests count the calls by patching it). The Cho variant has no fast path (kernels/gru.py says why):
GRULayer runs its reference loop always.
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
class GRUCache:
    """What the fast backward needs from the fast forward (the reference's cache holds the same
    arrays, plus the noise: layers/gru.py)."""

    x: np.ndarray       # (T, B, I) features or (T, B) ids
    hs: np.ndarray      # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    gates: np.ndarray   # (T, B, 3H): [r, z, n] after their nonlinearities
    extra: np.ndarray   # (T, B, H): hn = W_n h_{t-1} + b_hn


# ------------------------------------------------------------------------------------- forward
def forward(layer, x: np.ndarray, state0: tuple):
    """The torch variant's forward: x (T, B, I) or ids (T, B); state0 = (h0,) with h0 (B, H).
    Returns h (T, B, H), (h_T,), GRUCache."""
    T, B = x.shape[:2]
    H = layer.hidden_size
    hs = empty(layer.workspace, "hs", (T + 1, B, H), layer.dtype)
    hs[0] = state0[0]
    extra = empty(layer.workspace, "extra", (T, B, H), layer.dtype)
    # U x_t for all t, hoisted: (T, B, 3H), becomes the gates in place. The bias b is added
    # here, or inside the float32 kernel's pass (which reads every entry anyway).
    gates = project_inputs(layer, x, bias=False)
    use_kernels = _use_kernels(layer, gates)
    if layer.bias and not (use_kernels and layer.dtype == np.float32):
        gates += layer.params["b"]                           # the same addition project_inputs would do
    if use_kernels:
        _forward_kernel(layer, gates, hs, extra)
    else:
        _forward_numpy(layer, gates, hs, extra)
    return hs[1:], (hs[T],), GRUCache(x, hs, gates, extra)


def _forward_numpy(layer, gates: np.ndarray, hs: np.ndarray, extra: np.ndarray) -> None:
    """The recurrence with as few numpy calls per step as possible (the reference's numbers): r
    and z share one tanh via sigmoid(a) = 1/2 + tanh(a/2)/2, their columns of U x_t + b and W^T
    halved up front (exact), and W^T is a contiguous copy."""
    T, B, H = extra.shape
    scale, shift, WT = _halve_sigmoid_columns(layer, gates)
    gh = np.empty((B, 3 * H), layer.dtype)                   # W h_{t-1}, all three gates
    rn = np.empty((B, H), layer.dtype)
    b_hn = layer.params["b_hn"] if layer.bias else None
    dot, add, multiply, subtract, tanh = np.dot, np.add, np.multiply, np.subtract, np.tanh
    for t in range(T):
        a, h_prev, h_t = gates[t], hs[t], hs[t + 1]
        rz, n = a[:, :2 * H], a[:, 2 * H:]
        dot(h_prev, WT, out=gh)
        add(rz, gh[:, :2 * H], out=rz)
        tanh(rz, out=rz)
        multiply(rz, scale, out=rz)
        add(rz, shift, out=rz)                               # r, z = sigmoid(...)
        if b_hn is not None:
            add(gh[:, 2 * H:], b_hn, out=extra[t])           # hn = W_n h_{t-1} + b_hn
        else:
            extra[t] = gh[:, 2 * H:]
        multiply(a[:, :H], extra[t], out=rn)
        add(n, rn, out=n)
        tanh(n, out=n)                                       # n = tanh(U_n x + b_n + r * hn)
        subtract(h_prev, n, out=h_t)
        multiply(h_t, a[:, H:2 * H], out=h_t)
        add(h_t, n, out=h_t)                                 # h_t = n + z (h_{t-1} - n)


def _halve_sigmoid_columns(layer, gates: np.ndarray):
    """For one tanh per step over r and z: sigmoid(a) = 1/2 + tanh(a/2)/2, so the r, z columns
    of gates (T, B, 3H) = U x_t + b are halved in place (exact) and so is a contiguous copy of
    W_r^T, W_z^T. Returns scale, shift (2H,) (tanh's output t -> t * scale + shift) and WT (H, 3H)."""
    H = layer.hidden_size
    scale, shift = gate_tanh_scale("ss", H, layer.dtype)                 # (2H,) for [r, z]
    gates[:, :, :2 * H] *= scale
    WT = np.empty((H, 3 * H), layer.dtype)
    np.multiply(layer.params["W"][:2 * H].T, scale, out=WT[:, :2 * H])   # halved W_r^T, W_z^T
    WT[:, 2 * H:] = layer.params["W"][2 * H:].T                           # W_n^T as is
    return scale, shift, WT


def _use_kernels(layer, *arrays: np.ndarray) -> bool:
    """The numba path (bptt.kernels) runs when it is enabled and every array the kernels
    write or read has the layer's dtype (one compiled specialisation per dtype)."""
    return kernels.enabled() and all(a.dtype == layer.dtype for a in arrays)


def _forward_kernel(layer, gates: np.ndarray, hs: np.ndarray, extra: np.ndarray) -> None:
    """The recurrence with each step's element-wise work compiled (kernels/gru.py); the GEMM
    stays in numpy. Fills the same cache as ``_forward_numpy``: gates [r, z, n], extra = hn, hs[1:].

    float32: one pass per step (r, z, hn, n, h_t). float64: kernels/common.py's tanh is
    libm's, a scalar call, so a step keeps numpy's SIMD np.tanh and fuses the rest into two
    passes around it (the kernels/gru.py docstring has the timings); it matches
    ``_forward_numpy`` bit for bit."""
    from . import gru as gru_kernels
    from .blas import gemm_for
    T, B, H = extra.shape
    b_hn = layer.params["b_hn"] if layer.bias else np.zeros(H, layer.dtype)
    gh = np.empty((B, 3 * H), layer.dtype)                   # W h_{t-1}, all three gates
    dot = np.dot
    if layer.dtype == np.float32:
        WT = np.ascontiguousarray(layer.params["W"].T)       # (H, 3H) contiguous, as in _forward_numpy
        b = layer.params["b"] if layer.bias else np.zeros(3 * H, layer.dtype)   # added in the kernel
        if kernels.loops_enabled(layer.dtype):               # the loop below, compiled (kernels/gru.py)
            gru_kernels.forward_loop(gemm_for(layer.dtype), gates, b, WT, gh, hs, b_hn, extra)
            return
        step = gru_kernels.forward_step
        for t in range(T):
            dot(hs[t], WT, out=gh)                           # W h_{t-1}: the only GEMM in the loop
            step(t, gates, b, gh, hs, b_hn, extra)           # r, z, hn, n, h_t: gates[t], extra[t], hs[t+1]
        return
    _, _, WT = _halve_sigmoid_columns(layer, gates)          # as _forward_numpy: one tanh for r and z
    add, tanh = np.add, np.tanh
    finish_gates, new_state = gru_kernels.forward_gates, gru_kernels.forward_state
    for t in range(T):
        a = gates[t]
        rz, n = a[:, :2 * H], a[:, 2 * H:]
        dot(hs[t], WT, out=gh)                               # W h_{t-1} (r, z columns halved)
        add(rz, gh[:, :2 * H], out=rz)                       # a/2 for r, z
        tanh(rz, out=rz)                                     # tanh(a/2): sigmoid(a) = 1/2 + tanh(a/2)/2
        finish_gates(t, gates, gh, b_hn, extra)              # r, z; hn; U_n x + b_n + r hn
        tanh(n, out=n)                                       # n = tanh(U_n x + b_n + r * hn)
        new_state(t, gates, hs)                              # h_t = n + z (h_{t-1} - n)


# ------------------------------------------------------------------------------------ backward
def backward(layer, dh, dstate: tuple | None, cache: GRUCache, grads: dict, *,
             input_grad: bool = True, overwrite_dh: bool = False):
    """BPTT of the torch variant (the contract is GRULayer.backward's). Every gate gradient is
    dE/dh_t times a factor that does not depend on the recursion, so the factors are computed
    for a chunk of steps at once:

        daz = dh_t [(h_{t-1} - n) z (1-z)]         dan = dh_t [(1-z)(1-n^2)]
        dhn = dan r = dh_t [(1-z)(1-n^2) r]        dar = dan hn r(1-r)
        dE/dh_{t-1} = dh_t z + [dar, daz, dhn] @ W

    leaving 5 calls per step on the numpy path; dan (needed only by dU, db) is one product
    after the loop. With numba (bptt.kernels) one compiled pass per step computes all of it
    from the cached gates (kernels/gru.py ``backward_step``), then the step's GEMM.

    ``dh`` may be a ``readout.ChunkedReadoutGrad`` (``shape``, ``dtype``, ``fill(start, stop,
    out)``; Network.loss_and_grads): each chunk's dE/dh_t from above is then filled into a
    (steps, B, H) buffer just before that chunk's steps run, dE/dh_t (all paths) overwrites
    it there, and dh_total is returned as None -- nothing of size T B H for dE/dh. On the numpy
    path that buffer is the tmp one, free once the chunk's factors are computed; the kernel
    path has no tmp and keeps a buffer of its own. Bit for bit the array path's numbers."""
    x, hs, gates, extra = cache.x, cache.hs, cache.gates, cache.extra
    T, B, H = dh.shape
    W = layer.params["W"]
    ids = x.dtype.kind in "iu"
    I = None if ids else x.shape[2]
    chunked, dh_total, dx = backward_outputs(dh, x, layer.params["U"], input_grad=input_grad,
                                             overwrite_dh=overwrite_dh)
    dh_next = (np.zeros((B, H), layer.dtype) if dstate is None or dstate[0] is None
               else np.array(dstate[0], layer.dtype))
    through_w = np.empty((B, H), layer.dtype)
    use_kernel = _use_kernels(layer, dh, gates, extra)
    # The gate gradients live for one chunk of time steps at a time; the weight gradients
    # are GEMMs per chunk (see functional.chunk_steps). The kernel path needs no tmp rows.
    # (The same `steps` whether dh arrives chunked or not: the chunks' partial sums of dW, dU, db,
    # and so the rounding, must not depend on how dE/dh arrives.)
    steps = chunk_steps(T, B, (6 if use_kernel else 7) * H, 3 * H * (H + (0 if ids else I)))
    da_buffer = empty(layer.workspace, "da", (steps, B, 3 * H), dh.dtype)    # dE/d(U x_t + b): [dar, daz, dan]
    dgh_buffer = empty(layer.workspace, "dgh", (steps, B, 3 * H), dh.dtype)  # dE/d(W h_{t-1} + [0, 0, b_hn])
    if use_kernel:
        from . import gru as gru_kernels
        from .blas import gemm_for
        step = gru_kernels.backward_step
        loops = kernels.loops_enabled(layer.dtype) and W.flags.c_contiguous   # gemm reads W in C order
        through_w[...] = 0.0                                 # nothing flows back through step T+1's W
        if chunked:                                          # dE/dh_t for the current chunk's steps only
            dh_chunk = empty(layer.workspace, "dh", (steps, B, H), dh.dtype)
    else:
        tmp_buffer = empty(layer.workspace, "tmp", (steps, B, H), dh.dtype)
    scratch = {}
    dot, add, multiply = np.dot, np.add, np.multiply
    for stop in range(T, 0, -steps):
        start = max(0, stop - steps)
        m = stop - start                                     # steps in this chunk
        da, dgh = da_buffer[:m], dgh_buffer[:m]
        if use_kernel:
            # One compiled pass per step (dE/dh_t, [dar, daz, dan], [dar, daz, dhn], and the
            # direct path dh_t z into dh_next), then the step's GEMM; dE/dh_{t-1} is
            # dh_next + through_w, summed inside the next step's kernel.
            if chunked:
                # The kernel indexes dh, dh_total, gates, hs and extra by its t: hand it the
                # chunk buffer (row k = step start + k) as both -- one view, so the in-place
                # loop -- and the cache's arrays shifted back by `start`, so that t = k
                # throughout (whole-array views, no copies: the same compiled specialisation).
                chunk = dh.fill(start, stop, dh_chunk)       # dE/dh_t from above, t in the chunk
                first, above, total = 0, chunk, chunk
                gates_from, hs_from, extra_from = gates[start:], hs[start:], extra[start:]
            else:
                first, above, total, gates_from, hs_from, extra_from = start, dh, dh_total, gates, hs, extra
            if loops:                                        # the loop below, compiled (kernels/gru.py)
                gru_kernels.backward_loop(gemm_for(layer.dtype), first, m, above, total, dh_next, through_w,
                                          gates_from, hs_from, extra_from, da, dgh, W)
            else:
                for t in range(m - 1, -1, -1):
                    step(first + t, t, above, total, dh_next, through_w, gates_from, hs_from, extra_from, da, dgh)
                    dot(dgh[t], W, out=through_w)            # through W_r, W_z, W_n: one GEMM
        else:
            gate = gates[start:stop].reshape(m, B, 3, H)
            r, z, n = gate[:, :, 0], gate[:, :, 1], gate[:, :, 2]      # (m, B, H) views
            factor = dgh.reshape(m, B, 3, H)                 # factors first, gradients in the loop
            dan_factor = da[:, :, 2 * H:]                    # (1-z)(1-n^2), then dan after the loop
            np.multiply(n, n, out=dan_factor)
            np.subtract(1.0, dan_factor, out=dan_factor)
            tmp = np.subtract(1.0, z, out=tmp_buffer[:m])    # (m, B, H)
            dan_factor *= tmp                                # (1-z)(1-n^2)
            np.subtract(hs[start:stop], n, out=factor[:, :, 1])
            factor[:, :, 1] *= z
            factor[:, :, 1] *= tmp                           # (h_{t-1} - n) z (1-z)
            np.multiply(dan_factor, r, out=factor[:, :, 2])  # dhn factor
            np.subtract(1.0, r, out=tmp)
            tmp *= r                                         # r (1-r)
            np.multiply(dan_factor, extra[start:stop], out=factor[:, :, 0])
            factor[:, :, 0] *= tmp                           # dar factor: (1-z)(1-n^2) hn r (1-r)

            if chunked:                                      # tmp is free from here on
                above = total = dh.fill(start, stop, tmp_buffer)   # dE/dh_t from above, row t = step start + t
                offset = start
            else:
                above, total, offset = dh, dh_total, 0
            for t in range(m - 1, -1, -1):
                row = start - offset + t                     # step start + t in above/total
                dht = total[row]
                add(above[row], dh_next, out=dht)            # dE/dh_t, all paths
                d3 = factor[t]                               # (B, 3, H)
                multiply(d3, dht[:, None, :], out=d3)        # [dar, daz, dhn]
                dot(dgh[t], W, out=through_w)                # through W_r, W_z, W_n: one GEMM
                multiply(dht, z[t], out=dh_next)             # direct path h_{t-1} -> h_t
                add(dh_next, through_w, out=dh_next)
            dan_factor *= total[start - offset:stop - offset]   # dan = dh_t (1-z)(1-n^2), the chunk's t
            da[:, :, :2 * H] = dgh[:, :, :2 * H]             # dar, daz also enter U and b
        _accumulate_chunk(layer, da, dgh, start, stop, x, hs, grads, dx, scratch)
    if use_kernel:
        add(dh_next, through_w, out=dh_next)                 # dE/dh_0 = dh_1 z_1 + dgh_1 @ W
    return dx, (dh_next,), dh_total


def _accumulate_chunk(layer, da, dgh, start, stop, x, hs, grads, dx, scratch) -> None:
    """Shared weights: sums over the chunk's steps as GEMMs, one each per chunk.
    da, dgh (m, B, 3H) = [dar, daz, dan], [dar, daz, dhn] for t in [start, stop);
    dx (T, B, I) receives dE/dx_t for these steps when it is not None."""
    m, B, G = da.shape
    H = G // 3
    rows = m * B
    da2, dgh2 = da.reshape(rows, G), dgh.reshape(rows, G)
    accumulate_chunk(grads, "W", dgh2.T, hs[start:stop].reshape(rows, H), scratch)  # [dar,daz,dhn] (x) h_{t-1}
    if layer.bias:
        grads["b_hn"] += column_sums(dgh2[:, 2 * H:])
        grads["b"] += column_sums(da2)
    if x.dtype.kind in "iu":
        scatter_add_columns(grads["U"], x[start:stop].reshape(-1), da2)
    else:
        I = x.shape[2]
        accumulate_chunk(grads, "U", da2.T, x[start:stop].reshape(rows, I), scratch)   # da_t (x) x_t
        if dx is not None:
            np.dot(da2, layer.params["U"], out=dx[start:stop].reshape(rows, I))        # dE/dx_t
