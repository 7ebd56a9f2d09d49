"""Gated recurrent unit (Cho et al. 2014) over a whole sequence, gates [r, z, n] in
PyTorch's order and layout, in two published variants (``variant=``):

``"torch"`` -- PyTorch / cuDNN: the reset gate multiplies the recurrent matmul's *result*

    r_t = sigmoid(U_r x_t + W_r h_{t-1} + b_r)          b_r = b_ir + b_hr
    z_t = sigmoid(U_z x_t + W_z h_{t-1} + b_z)          b_z = b_iz + b_hz
    n_t = tanh(U_n x_t + b_n + r_t * (W_n h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

``"cho"`` -- Cho et al. 2014, eq. (5)-(8): the reset gate multiplies h_{t-1} *before* the matmul

    r_t = sigmoid(U_r x_t + W_r h_{t-1} + b_r)
    z_t = sigmoid(U_z x_t + W_z h_{t-1} + b_z)
    n_t = tanh(U_n x_t + W_n (r_t * h_{t-1}) + b_n)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Both use h_t = (1 - z) n + z h_{t-1}: z is the share of the *old* state kept. That is
torch's convention and also Cho et al.'s own eq. (7) (some later papers swap z and 1 - z).
The Cho variant has no torch counterpart; it is checked by finite differences only.

Parameters: U (3H, I) = [U_r; U_z; U_n], W (3H, H) = [W_r; W_z; W_n] -- torch's
``weight_ih_l0`` / ``weight_hh_l0`` -- and, with ``bias=True``, b (3H,) = [b_r, b_z, b_n]
on the input side. The torch variant needs one more bias, ``b_hn`` (H,), because it sits
inside r * (...) and so cannot be merged into b_n; the Cho variant has no b_hn. Mapping
to torch: b = bias_ih + [bias_hh_r, bias_hh_z, 0], b_hn = bias_hh[2H:].

Shapes (time-major): x (T, B, I) floats or (T, B) ids; h (T, B, H).

Backpropagation through time, dh_t = dh[t] + dh_next (all paths into h_t):

    dn  = dh_t * (1 - z) ;  dz = dh_t * (h_{t-1} - n) ;  dh_prev = dh_t * z   (direct path)
    dan = dn * (1 - n^2) ;  daz = dz * z (1 - z)
    torch: dhn = dan * r              (hn = W_n h_{t-1} + b_hn)
           dar = dan * hn * r (1 - r)
           dh_prev += [dar, daz, dhn] @ W
    cho:   drh = dan @ W_n            (rh = r * h_{t-1})
           dar = drh * h_{t-1} * r (1 - r)
           dh_prev += drh * r + [dar, daz] @ [W_r; W_z]

Weight gradients after the loop, one GEMM each: dU = sum_t [dar, daz, dan]^T x_t,
dW = sum_t [dar, daz, dhn]^T h_{t-1} (torch) or [dar, daz]^T h_{t-1} and dan^T (r h_{t-1}) (cho).

Recurrent regularisers (layers/noise.py; ``layer.noise``, set by Network for one forward call):

    recurrent dropout, mask m (B, H):  the h_{t-1} that enters W becomes m * h_{t-1}
        torch: W h_{t-1} -> W (m * h_{t-1}) in all three gates (not the z * h_{t-1} term)
        cho:   W_r, W_z likewise, and W_n (r * h_{t-1}) -> W_n (r * m * h_{t-1})
        backward: dW uses m * h_{t-1}; the gradient through W reaches h_{t-1} times m
    zoneout, d_t (B, H) 0/1 (or the rate p at evaluation):
        h~_t = (1 - z) n + z h_{t-1} (the update above);  h_t = d_t h_{t-1} + (1 - d_t) h~_t
        backward: dh~_t = (1 - d_t) dh_t takes dh_t's place above, and dh_prev += d_t dh_t

Two implementations (issue 20): this module's reference -- ``_forward_reference`` and
``_backward_reference`` (torch; the Cho variant's backward is layers/gru_cho.py), plain time loops
whose lines are the equations above -- and the fast paths of kernels/gru_layer.py (tuned numpy,
numba), which the torch variant runs unless ``BPTT_KERNELS=reference`` or a noise is active. The
Cho variant always runs the reference (it has no fast path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import init, kernels
from ..functional import scatter_add_columns, sigmoid
from ..kernels import gru_layer
from ..kernels.gru_layer import GRUCache  # the fast path's cache: backward dispatches on it
from .gru_cho import backward_cho
from .noise import LayerNoise
from .projection import project_inputs
from .readout import backward_outputs

GRU_VARIANTS = ("torch", "cho")


@dataclass
class GRUReferenceCache:
    """What the reference backward needs from the reference forward (the fast path's GRUCache
    holds the same arrays: diagnostics read x, hs, gates from either)."""

    x: np.ndarray       # (T, B, I) features or (T, B) ids
    hs: np.ndarray      # (T+1, B, H): hs[0] = h0, hs[t+1] = h_t
    gates: np.ndarray   # (T, B, 3H): [r, z, n] after their nonlinearities
    extra: np.ndarray   # (T, B, H): torch: hn = W_n (m h_{t-1}) + b_hn ; cho: rh = r * m * h_{t-1}
    noise: LayerNoise | None   # the masks forward used (None: no regulariser)


class GRULayer:
    """One GRU layer over a whole sequence; state (h,)."""

    cell = "gru"
    state_names = ("h",)
    workspace = None      # a workspace.Workspace while Network.loss_and_grads runs, else None (fresh arrays)
    noise = None          # a layers.noise.LayerNoise for one forward call (Network sets it), else None

    def __init__(self, input_size: int, hidden_size: int, *, variant: str = "torch", bias: bool = True,
                 rng: np.random.Generator, dtype=np.float64):
        if variant not in GRU_VARIANTS:
            raise ValueError(f"variant must be one of {GRU_VARIANTS}, got {variant!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.variant = variant
        self.bias = bias
        self.dtype = np.dtype(dtype)
        bound = 1.0 / np.sqrt(hidden_size)        # PyTorch's default for nn.GRU
        H, I = hidden_size, input_size
        self.params: dict[str, np.ndarray] = {
            "U": init.uniform(rng, (3 * H, I), bound, self.dtype),   # input -> [r, z, n]
            "W": init.uniform(rng, (3 * H, H), bound, self.dtype),   # hidden -> [r, z, n]
        }
        if bias:
            b_ih = init.uniform(rng, (3 * H,), bound, self.dtype)
            b_hh = init.uniform(rng, (3 * H,), bound, self.dtype)
            b = b_ih.copy()
            if variant == "torch":
                b[:2 * H] += b_hh[:2 * H]          # r and z: the two torch biases merge
                self.params["b"] = b
                self.params["b_hn"] = b_hh[2 * H:].copy()   # n: stays inside r * (...)
            else:
                b += b_hh
                self.params["b"] = b

    def zero_state(self, batch: int) -> tuple[np.ndarray]:
        return (np.zeros((batch, self.hidden_size), self.dtype),)

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """U x_t + b for all T steps at once (layers/projection.py): (T, B, 3H)."""
        return project_inputs(self, x)

    @property
    def accepts_chunked_dh(self) -> bool:
        """Whether Network.loss_and_grads should hand backward dE/dh_t from above as a
        readout.ChunkedReadoutGrad: the torch variant's fast backward takes it a chunk at a time
        (kernels/gru_layer.py; no (T, B, H) dE/dh array). The Cho variant's backward (the
        reference) would only materialise it, so it takes the whole (T, B, H) array."""
        return self.variant == "torch"

    # --------------------------------------------------------------------------------- forward
    def forward(self, x: np.ndarray, state0: tuple):
        """x (T, B, I) or ids (T, B); state0 = (h0,) with h0 (B, H).
        Returns h (T, B, H), (h_T,), cache (GRUCache from the fast path, GRUReferenceCache from
        the reference; backward follows the path the cache's type names)."""
        noisy = self.noise is not None and self.noise.active
        if self.variant == "torch" and not noisy and kernels.fast_paths():
            return gru_layer.forward(self, x, state0)
        return self._forward_reference(x, state0, self.noise if noisy else None)

    def step(self, x_t: np.ndarray, state: tuple):
        """One step for sampling: x_t (B, I) or ids (B,). Returns h_t, (h_t,). (The reference
        forward over one step: no regulariser, as at evaluation without zoneout.)"""
        h, final, _ = self._forward_reference(x_t[None], state, None)
        return h[0], final

    def _forward_reference(self, x: np.ndarray, state0: tuple, noise: LayerNoise | None):
        """The docstring's forward, both variants, with the optional recurrent dropout mask m and
        zoneout d_t. Returns h (T, B, H), (h_T,), GRUReferenceCache."""
        T, B = x.shape[:2]
        H = self.hidden_size
        m, zone = self._noise_for_loop(noise, T, B)
        W = self.params["W"]
        W_r, W_z, W_n = W[:H], W[H:2 * H], W[2 * H:]                   # (H, H) each
        b_hn = self.params["b_hn"] if self.variant == "torch" and self.bias else 0.0
        a = self.input_projection(x)                                 # (T, B, 3H): U x_t + b, all t
        a_r, a_z, a_n = a[:, :, :H], a[:, :, H:2 * H], a[:, :, 2 * H:]
        hs = np.empty((T + 1, B, H), self.dtype)                     # hs[t] = h_{t-1}
        hs[0] = state0[0]
        gates = np.empty((T, B, 3 * H), self.dtype)                  # [r, z, n] per step
        extra = np.empty((T, B, H), self.dtype)                      # torch: hn; cho: r * m * h_{t-1}
        for t in range(T):
            h_prev = hs[t]
            h_rec = h_prev if m is None else m * h_prev              # the h_{t-1} that enters W
            r = sigmoid(a_r[t] + h_rec @ W_r.T)                      # r_t = sigmoid(U_r x_t + W_r h_{t-1} + b_r)
            z = sigmoid(a_z[t] + h_rec @ W_z.T)                      # z_t = sigmoid(U_z x_t + W_z h_{t-1} + b_z)
            if self.variant == "torch":
                extra[t] = h_rec @ W_n.T + b_hn                      # hn = W_n h_{t-1} + b_hn
                n = np.tanh(a_n[t] + r * extra[t])                   # n_t = tanh(U_n x_t + b_n + r_t * hn)
            else:
                extra[t] = r * h_rec                                 # rh = r_t * h_{t-1}
                n = np.tanh(a_n[t] + extra[t] @ W_n.T)               # n_t = tanh(U_n x_t + W_n rh + b_n)
            h_new = (1 - z) * n + z * h_prev                         # h~_t = (1 - z_t) n_t + z_t h_{t-1}
            d = zone(t)
            hs[t + 1] = h_new if d is None else d * h_prev + (1 - d) * h_new   # zoneout: d_t keeps h_{t-1}
            gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:] = r, z, n
        return hs[1:], (hs[T],), GRUReferenceCache(x, hs, gates, extra, noise)

    # -------------------------------------------------------------------------------- backward
    def backward(self, dh, dstate: tuple | None, cache, grads: dict, *,
                 input_grad: bool = True, overwrite_dh: bool = False):
        """dh (T, B, H): dE/dh_t from above, or a ``readout.ChunkedReadoutGrad`` standing for it;
        dstate = (dE/dh_T,) or None (or (None,)). Accumulates (+=) into grads["U"], grads["W"],
        grads["b"] (and grads["b_hn"] for the torch variant).

        Returns dx (T, B, I) or None for ids, (dE/dh0,), and dh_total (T, B, H) = dE/dh_t (all
        paths), None when dh came chunked. ``input_grad=False`` skips dE/dx (returns None);
        ``overwrite_dh=True`` writes dh_total into ``dh`` itself (see ``RNNLayer.backward``).
        The path is the one forward took: the fast backward (kernels/gru_layer.py) for its
        GRUCache, the reference (below; gru_cho.py for the Cho variant) for GRUReferenceCache."""
        if isinstance(cache, GRUCache):
            return gru_layer.backward(self, dh, dstate, cache, grads, input_grad=input_grad,
                                      overwrite_dh=overwrite_dh)
        if self.variant == "cho":
            return backward_cho(self, dh, dstate, cache, grads, input_grad, overwrite_dh)
        return self._backward_reference(dh, dstate, cache, grads, input_grad, overwrite_dh)

    def _backward_reference(self, dh, dstate, cache: GRUReferenceCache, grads: dict,
                            input_grad: bool, overwrite_dh: bool):
        """The docstring's BPTT of the torch variant, one step per iteration, with the noise
        forward used (m, d_t); weight gradients after the loop."""
        x, hs, gates, extra = cache.x, cache.hs, cache.gates, cache.extra
        dh, dh_total, returned_total, dx, dh_next = self._upstream(dh, dstate, x, input_grad, overwrite_dh)
        T, B, H = dh.shape
        m, zone = self._noise_for_loop(cache.noise, T, B)
        W = self.params["W"]
        da = np.empty((T, B, 3 * H), self.dtype)     # dE/d(U x_t + b): [dar, daz, dan]
        dgh = np.empty((T, B, 3 * H), self.dtype)    # dE/d(W h_{t-1} + [0, 0, b_hn]): [dar, daz, dhn]
        for t in range(T - 1, -1, -1):
            r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
            h_prev, hn = hs[t], extra[t]
            dh_t = dh[t] + dh_next                   # dE/dh_t: from above and from step t+1
            dh_total[t] = dh_t
            d = zone(t)
            dh_new = dh_t if d is None else (1 - d) * dh_t           # dE/dh~_t (zoneout)
            dn = dh_new * (1 - z)
            dz = dh_new * (h_prev - n)
            dan = dn * (1 - n * n)                   # through n = tanh(.)
            daz = dz * z * (1 - z)                   # through z = sigmoid(.)
            dhn = dan * r                            # hn = W_n h_{t-1} + b_hn
            dar = dan * hn * r * (1 - r)             # through r = sigmoid(.)
            da[t, :, :H], da[t, :, H:2 * H], da[t, :, 2 * H:] = dar, daz, dan
            dgh[t, :, :H], dgh[t, :, H:2 * H], dgh[t, :, 2 * H:] = dar, daz, dhn
            dh_rec = dgh[t] @ W                      # dE/d(the h_{t-1} that enters W): [dar, daz, dhn] @ W
            dh_next = dh_new * z + (dh_rec if m is None else m * dh_rec)   # direct path + through W
            if d is not None:
                dh_next += d * dh_t                  # zoneout: the share of h_{t-1} kept as h_t
        # Shared weights: sums over time as single GEMMs.
        TB = T * B
        h_rec = hs[:-1] if m is None else m * hs[:-1]                # (T, B, H): what entered W
        grads["W"] += dgh.reshape(TB, 3 * H).T @ h_rec.reshape(TB, H)   # sum_t [dar, daz, dhn] (x) h_{t-1}
        if self.bias:
            grads["b_hn"] += dgh[:, :, 2 * H:].reshape(TB, H).sum(axis=0)
        self._input_gradients(x, da, grads, dx)
        return dx, (dh_next,), returned_total

    def _upstream(self, dh, dstate, x, input_grad: bool, overwrite_dh: bool):
        """The reference backwards' start (both variants): dh as a (T, B, H) array (a
        ChunkedReadoutGrad is materialised: the reference holds all T steps), where dE/dh_t goes
        (dh_total) and what is returned for it (None when dh came chunked), dx (T, B, I) or None
        (readout.backward_outputs), and dE/dh_T = dstate's, zeros when not given."""
        chunked, dh_total, dx = backward_outputs(dh, x, self.params["U"], input_grad=input_grad,
                                                 overwrite_dh=overwrite_dh)
        returned_total = dh_total
        if chunked:
            dh = dh_total = dh.fill(0, dh.shape[0], np.empty(dh.shape, dh.dtype))
        B, H = dh.shape[1:]
        dh_next = (np.zeros((B, H), self.dtype) if dstate is None or dstate[0] is None
                   else np.array(dstate[0], self.dtype))
        return dh, dh_total, returned_total, dx, dh_next

    def _input_gradients(self, x, da: np.ndarray, grads: dict, dx) -> None:
        """The reference backwards' end (both variants): with da (T, B, 3H) = dE/d(U x_t + b),
        db = sum_t da_t; dU = sum_t da_t (x) x_t -- for ids a scatter-add into the columns x_t
        (U x_t is a column lookup) -- and dx_t = da_t U into dx when it is an array."""
        T, B, G = da.shape
        da2 = da.reshape(T * B, G)
        if self.bias:
            grads["b"] += da2.sum(axis=0)
        if x.dtype.kind in "iu":
            scatter_add_columns(grads["U"], x.reshape(-1), da2)
            return
        I = x.shape[2]
        grads["U"] += da2.T @ x.reshape(T * B, I)                  # sum_t da_t (x) x_t
        if dx is not None:
            dx[...] = (da2 @ self.params["U"]).reshape(T, B, I)     # dE/dx_t = da_t U

    def _noise_for_loop(self, noise: LayerNoise | None, T: int, B: int):
        """A LayerNoise as the reference loops use it: m (B, H) in the layer's dtype, or None (no
        recurrent dropout), and zone(t) -> d_t (B, H), the float p (evaluation), or None (no zoneout).
        Shapes are checked here, so a wrong mask fails with its shape named, not deep in the loop."""
        H, dtype = self.hidden_size, self.dtype
        if noise is None:
            return None, lambda t: None
        m = noise.recurrent
        if m is not None:
            m = np.asarray(m)
            if m.shape != (B, H):
                raise ValueError(f"noise.recurrent must have shape (B, H) = {(B, H)}, got {m.shape}")
            m = m.astype(dtype, copy=False)
        if noise.zoneout is not None:
            if len(noise.zoneout) != 1:
                raise ValueError(f"noise.zoneout must hold one mask for the GRU's state (h,), got {len(noise.zoneout)}")
            mask = np.asarray(noise.zoneout[0])
            if mask.shape != (T, B, H):
                raise ValueError(f"noise.zoneout[0] must have shape (T, B, H) = {(T, B, H)}, got {mask.shape}")
            mask = mask.astype(dtype, copy=False)
            return m, lambda t: mask[t]
        if not 0.0 <= noise.zoneout_p < 1.0:
            raise ValueError(f"noise.zoneout_p must be in [0, 1), got {noise.zoneout_p!r}")
        p = noise.zoneout_p
        return m, lambda t: (p if p > 0.0 else None)
