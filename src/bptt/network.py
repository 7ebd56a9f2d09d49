"""A stacked recurrent network with an output layer and a loss: the object users hold.

    layer 1:   h^1_t = f(U_1 x_t     + W_1 h^1_{t-1} + b_1)
    layer l:   h^l_t = f(U_l h^{l-1}_t + W_l h^l_{t-1} + b_l)     (stacked RNN: layer l's h is layer l+1's x)
    output:    z_t   = V h^L_t + c,   y^_t = softmax(z_t)
    loss:      E     = (1/B) sum_b sum_t m_{t,b} E_t

Each layer has its own U, W, b, shared across time. Forward runs bottom-up, BPTT
top-down; every parameter gradient is accumulated with ``+=``.

Parameter names follow the lecture: ``layers.0.U``, ``layers.0.W``, ``layers.0.b``, ...,
``V``, ``c``. ``net.params[name]`` *is* the array the layer computes with, so
optimisers update it in place.
"""

from __future__ import annotations

import numpy as np

from . import init, workspace
from . import validation as check
from .layers.bidirectional import BidirectionalLayer
from .layers.factory import CELLS, make_layer, refuse_absurd_size
from .layers.gru import GRU_VARIANTS
from .layers.readout import Readout
from .losses import LOSSES, compute_loss
from .passes import BackwardPass, ForwardPass, Result

def _stack(parts: list) -> np.ndarray:
    """np.stack for equally shaped (B, H) states -> (L, B, H), a new array; without np.stack's
    generic checks (~4 us a call, twice per training step: a few % of a step at B = 1)."""
    out = np.empty((len(parts),) + parts[0].shape, np.result_type(*parts))
    for index, part in enumerate(parts):
        out[index] = part
    return out


class Network:
    """Stacked recurrent layers + readout + loss.

    Inputs are either float features (T, B, input_size) or integer token ids (T, B) with
    ids in [0, input_size) -- for ids, U x_t is a column lookup, never a one-hot matmul.
    Targets: token ids (T, B) for ``loss="cross_entropy"``, floats (T, B, output_size)
    for ``loss="mse"``. ``output_size=None`` drops the readout (the loss reads h^L_t).

    Gated cells and options (see the README's "Gated cells"):
    ``cell="lstm"`` (state a tuple (h0, c0)), ``cell="gru"`` with ``gru_variant="torch"|"cho"``,
    ``forget_bias`` added to the LSTM forget-gate bias at initialisation (default 1.0),
    ``bidirectional=True`` (outputs (T, B, 2H), states (L*2, B, H) like torch, names
    ``layers.k.U_reverse``, ...), and ``dropout=p`` on the outputs of every layer but the last,
    applied in training mode only (``net.train()`` / ``net.eval()``; training is the default,
    as in torch) with inverted scaling 1/(1-p). Masks come from ``net.dropout_rng`` (seeded
    from ``seed``), are kept in ``ForwardPass.dropout_masks`` and reused by ``backward``; pass
    ``forward(..., dropout_masks=fwd.dropout_masks)`` to run again under the same masks.

    Remedies for vanishing/exploding gradients that keep the architecture (``init.init_recurrent``,
    applied to every H x H gate block of each W): ``recurrent_init="orthogonal"`` or ``"identity"``
    (with ``nonlinearity="relu"``: the IRNN of Le et al. 2015), and ``spectral_radius=rho``.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None,
                 num_layers: int = 1, cell: str = "rnn", nonlinearity: str = "tanh",
                 bias: bool = True, seed: int = 0, dtype="float64", loss: str = "cross_entropy",
                 bidirectional: bool = False, dropout: float = 0.0, gru_variant: str = "torch",
                 forget_bias: float = 1.0, recurrent_init: str = "uniform", spectral_radius=None):
        self.input_size = check.positive_int("input_size", input_size)
        self.hidden_size = check.positive_int("hidden_size", hidden_size)
        self.output_size = None if output_size is None else check.positive_int("output_size", output_size)
        self.num_layers = check.positive_int("num_layers", num_layers)
        self.cell = check.one_of("cell", cell, CELLS)
        self.nonlinearity = check.one_of("nonlinearity", nonlinearity, ("tanh", "relu"))
        if not isinstance(bias, (bool, np.bool_)):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        self.bias = bool(bias)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.dtype = check.dtype(dtype)
        self.loss = check.one_of("loss", loss, LOSSES)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise ValueError(f"bidirectional must be True or False, got {bidirectional!r}")
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.dropout = check.positive_float("dropout", dropout, allow_zero=True)
        if self.dropout >= 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dropout > 0 and self.num_layers == 1:
            import warnings
            warnings.warn(f"dropout={self.dropout} has no effect with num_layers=1: it acts between "
                          "stacked layers only (as in torch)", stacklevel=2)
        self.gru_variant = check.one_of("gru_variant", gru_variant, GRU_VARIANTS)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.integer, np.floating)) \
                or not np.isfinite(forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
        self.forget_bias = float(forget_bias)
        self.training = True
        # Dropout masks come from their own generator so the weights drawn from `seed` do not
        # depend on whether dropout is on; seeded, so runs repeat.
        self.dropout_rng = np.random.default_rng([self.seed, 1])
        refuse_absurd_size(self)                 # a typo like hidden_size=10**7 is an error, not an OOM kill

        rng = np.random.default_rng(self.seed)
        options = {"nonlinearity": self.nonlinearity, "bias": self.bias, "forget_bias": self.forget_bias,
                   "gru_variant": self.gru_variant, "bidirectional": self.bidirectional}
        width = self.num_directions * self.hidden_size          # what each layer outputs per step
        self.layers = []
        for layer_index in range(self.num_layers):
            layer_input = self.input_size if layer_index == 0 else width
            self.layers.append(make_layer(self.cell, layer_input, self.hidden_size, options, rng, self.dtype))
        self.readout = (None if self.output_size is None
                        else Readout(width, self.output_size, bias=self.bias, rng=rng, dtype=self.dtype))
        self.params = self._collect(lambda sub: sub.params)
        self.workspaces: dict = {}                # scratch arrays of loss_and_grads, per layer (see workspace.py)
        self._init_recurrent(recurrent_init, spectral_radius, rng)

    # ------------------------------------------------------------ bookkeeping
    @property
    def config(self) -> dict:
        """Everything needed to rebuild this network (JSON-serialisable)."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "num_layers": self.num_layers, "cell": self.cell,
                "nonlinearity": self.nonlinearity, "bias": self.bias, "seed": self.seed,
                "dtype": self.dtype.name, "loss": self.loss, "bidirectional": self.bidirectional,
                "dropout": self.dropout, "gru_variant": self.gru_variant, "forget_bias": self.forget_bias,
                "recurrent_init": self.recurrent_init, "spectral_radius": self.spectral_radius}

    def _init_recurrent(self, scheme: str, radius, rng) -> None:
        """Remedies for vanishing/exploding gradients without changing the architecture: re-draw
        every recurrent W (and W_reverse) block-wise, see ``init.init_recurrent``. Draws come after
        all default draws, so "uniform" without a radius leaves the network unchanged."""
        self.recurrent_init = check.one_of("recurrent_init", scheme, init.RECURRENT_INITS)
        self.spectral_radius = None if radius is None else check.positive_float("spectral_radius", radius)
        if self.recurrent_init == "uniform" and self.spectral_radius is None:
            return
        for layer in self.layers:
            for name in ("W", "W_reverse"):
                if name in layer.params:
                    init.init_recurrent(layer.params[name], self.recurrent_init, rng, self.spectral_radius)

    @classmethod
    def from_config(cls, config: dict) -> "Network":
        return cls(**config)

    def _collect(self, pick) -> dict:
        named = {}
        for index, layer in enumerate(self.layers):
            for name, array in pick(layer).items():
                named[f"layers.{index}.{name}"] = array
        if self.readout is not None:
            named.update(pick(self.readout))
        return named

    def zero_grads(self) -> dict:
        # np.zeros(shape, dtype), not zeros_like: 3x less call overhead, which counts at B = 1.
        return {name: np.zeros(p.shape, p.dtype) for name, p in self.params.items()}

    @property
    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def _layer_grads(self, grads: dict, index: int) -> dict:
        prefix = f"layers.{index}."
        return {name[len(prefix):]: g for name, g in grads.items() if name.startswith(prefix)}

    # ------------------------------------------------------------------ state
    @property
    def state_names(self) -> tuple:
        return self.layers[0].state_names

    def zero_state(self, batch: int):
        """The initial state in the user format: h0 (L, B, H), or (h0, c0) for cells with a cell state."""
        batch = check.positive_int("batch", batch)
        return self._join_state([layer.zero_state(batch) for layer in self.layers])

    def _join_state(self, per_layer: list):
        # bidirectional layers hold (2, B, H) per state: concatenating gives torch's (L*2, B, H)
        join = np.concatenate if self.bidirectional else _stack
        stacked = tuple(join([s[i] for s in per_layer]) for i in range(len(self.state_names)))
        return stacked[0] if len(stacked) == 1 else stacked

    def _split_state(self, state, batch: int) -> list:
        if state is None:
            return [layer.zero_state(batch) for layer in self.layers]
        names = self.state_names
        parts = (state,) if len(names) == 1 else state
        if len(names) > 1 and (not isinstance(state, (tuple, list)) or len(state) != len(names)):
            raise ValueError(f"h0 must be a tuple {names} for cell {self.cell!r}, got {type(state).__name__}")
        D = self.num_directions
        shape = (len(self.layers) * D, batch, self.hidden_size)
        arrays = [check.float_array(name + "0" if name != "h" else "h0", part, shape, self.dtype)
                  for name, part in zip(names, parts)]
        if D == 2:                                   # rows 2k, 2k+1: layer k forward, reverse (torch's order)
            return [tuple(a[2 * index:2 * index + 2] for a in arrays) for index in range(len(self.layers))]
        return [tuple(a[index] for a in arrays) for index in range(len(self.layers))]

    # ---------------------------------------------------------------- dropout
    def train(self, mode: bool = True) -> "Network":
        """Training mode (dropout active, the default) or, with mode=False, evaluation mode."""
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"mode must be True or False, got {mode!r}")
        self.training = bool(mode)
        return self

    def eval(self) -> "Network":
        """Evaluation mode: no dropout (same as ``train(False)``)."""
        return self.train(False)

    def _draw_dropout_masks(self, T: int, B: int) -> list | None:
        """Inverted dropout: keep with probability 1-p and scale by 1/(1-p), so E[mask] = 1 and
        evaluation needs no rescaling. One (T, B, D*H) mask per layer below the top."""
        if not self.training or self.dropout == 0.0 or len(self.layers) < 2:
            return None
        keep = 1.0 - self.dropout
        width = self.num_directions * self.hidden_size
        return [(self.dropout_rng.random((T, B, width)) < keep).astype(self.dtype) / self.dtype.type(keep)
                for _ in range(len(self.layers) - 1)]

    def _check_dropout_masks(self, masks, T: int, B: int) -> list:
        """Masks given back to forward (e.g. a ForwardPass's): one (T, B, D*H) array per layer below the top."""
        if not isinstance(masks, (list, tuple)) or len(masks) != len(self.layers) - 1:
            got = f"a list of {len(masks)}" if isinstance(masks, (list, tuple)) else type(masks).__name__
            raise ValueError(f"dropout_masks must be a list of {len(self.layers) - 1} arrays "
                             f"(one per layer below the top), got {got}")
        shape = (T, B, self.num_directions * self.hidden_size)
        return [check.float_array(f"dropout_masks[{i}]", m, shape, self.dtype) for i, m in enumerate(masks)]

    # -------------------------------------------------------------- validation
    def check_inputs(self, inputs) -> np.ndarray:
        arr = np.asarray(inputs)
        if arr.dtype.kind in "iu":
            return check.id_array("inputs", arr, (None, None), self.input_size)
        return check.float_array("inputs", arr, (None, None, self.input_size), self.dtype)

    def check_targets(self, targets, T: int, B: int) -> np.ndarray:
        if self.loss == "cross_entropy":
            vocab = self.output_size if self.output_size is not None else self.num_directions * self.hidden_size
            return check.id_array("targets", targets, (T, B), vocab)
        width = self.output_size if self.output_size is not None else self.num_directions * self.hidden_size
        return check.float_array("targets", targets, (T, B, width), self.dtype)

    def check_mask(self, mask, T: int, B: int) -> np.ndarray | None:
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.dtype.kind in "biu":                          # 0/1 masks may come as bool or int
            mask = mask.astype(self.dtype)
        mask = check.float_array("mask", mask, (T, B), self.dtype)
        if np.any(mask < 0):
            raise ValueError(f"mask must be >= 0, got minimum {mask.min()}")
        return mask

    # ---------------------------------------------------------------- passes
    def forward(self, inputs, h0=None, *, validate: bool = True, dropout_masks: list | None = None) -> ForwardPass:
        """Run every layer bottom-up over the whole sequence, then the readout.

        In training mode with ``dropout > 0`` fresh masks are drawn from ``net.dropout_rng``
        unless ``dropout_masks`` (a previous ``ForwardPass.dropout_masks``) fixes them."""
        x = self.check_inputs(inputs) if validate else inputs
        T, B = x.shape[:2]
        states0 = self._split_state(h0, B)
        masks = (self._check_dropout_masks(dropout_masks, T, B) if dropout_masks is not None
                 else self._draw_dropout_masks(T, B))
        layer_input = x
        hidden, caches, finals = [], [], []
        for index, (layer, state0) in enumerate(zip(self.layers, states0)):
            h, state_T, cache = layer.forward(layer_input, state0)
            hidden.append(h)
            caches.append(cache)
            finals.append(state_T)
            layer_input = h                                   # stacked: this h is the next layer's x
            if masks is not None and index < len(self.layers) - 1:
                layer_input = h * masks[index]                # dropout between layers, not after the last
        outputs = self.readout.forward(layer_input) if self.readout is not None else layer_input
        return ForwardPass(outputs, self._join_state(finals), hidden, caches, x, masks)

    def backward(self, fwd: ForwardPass, doutputs: np.ndarray, grads: dict | None = None,
                 dfinal_state=None, *, input_grad: bool = True) -> BackwardPass:
        """BPTT top-down. ``doutputs`` (T, B, O) = dE/dz_t; ``dfinal_state`` (format of h0)
        adds a gradient arriving at the last state. Accumulates into ``grads`` (+=).
        ``input_grad=False`` skips dE/dx of the first layer (``dinputs`` is then None): a
        (T B, G H) x (G H, I) GEMM that training does not need."""
        return self._backward(fwd, doutputs, grads, dfinal_state, input_grad=input_grad)

    def _backward(self, fwd: ForwardPass, doutputs: np.ndarray, grads: dict | None = None,
                  dfinal_state=None, *, input_grad: bool = True, lean: bool = False) -> BackwardPass:
        """``backward``; with ``lean=True`` (loss_and_grads only) the top layer may take dE/dh_t
        from the readout a chunk of steps at a time (readout.ChunkedReadoutGrad) when it accepts
        that: no (T, B, H) dE/dh array, and its ``BackwardPass.dh`` entry is None -- which is
        why only the lean step, which returns the loss and grads alone, asks for it."""
        grads = self.zero_grads() if grads is None else grads
        T, B = doutputs.shape[:2]
        if self.readout is not None:
            readout_grads = {k: grads[k] for k in self.readout.params}
            # RNN, LSTM and torch-variant GRU layers accept it; bidirectional and Cho-GRU layers
            # take the whole (T, B, H) array as before.
            chunked = lean and getattr(self.layers[-1], "accepts_chunked_dh", False)
            dtop = self.readout.backward(doutputs, fwd.hidden[-1], readout_grads, chunked=chunked)
        else:
            dtop = doutputs
        # dtop is ours to overwrite (each layer then writes dE/dh_t into it in place, one
        # (T, B, H) array less) unless it is the caller's doutputs; below the top it is always
        # the fresh dE/dx of the layer above.
        owned = self.readout is not None
        dfinal = None if dfinal_state is None else self._split_state(dfinal_state, B)
        dh_all = [None] * len(self.layers)
        dh0 = [None] * len(self.layers)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            dx, dstate0, dh_total = layer.backward(dtop, None if dfinal is None else dfinal[index],
                                                   fwd.caches[index], self._layer_grads(grads, index),
                                                   input_grad=input_grad or index > 0, overwrite_dh=owned)
            owned = True
            dh_all[index] = dh_total
            dh0[index] = dstate0
            dtop = dx                                          # dE/dx of layer l is dE/dh of layer l-1
            if fwd.dropout_masks is not None and index > 0:
                dtop = dtop * fwd.dropout_masks[index - 1]     # through the (fixed) dropout mask
        return BackwardPass(grads, dh_all, dtop, self._join_state(dh0))

    def forward_backward(self, inputs, targets, mask=None, h0=None, *, input_grad: bool = True) -> Result:
        """Loss, every gradient, and what diagnostics read (dE/dh_t per layer, dE/dx, dE/dh0).
        ``input_grad=False`` skips dE/dx (``Result.dinputs`` is then None)."""
        fwd = self.forward(inputs, h0)
        T, B = fwd.inputs.shape[:2]
        targets = self.check_targets(targets, T, B)
        mask = self.check_mask(mask, T, B)
        loss, doutputs = compute_loss(self.loss, fwd.outputs, targets, mask)
        bwd = self.backward(fwd, doutputs, input_grad=input_grad)
        return Result(loss, bwd.grads, fwd.outputs, fwd.final_state, bwd.dh, bwd.dinputs, bwd.dh0)

    def loss_and_grads(self, inputs, targets, mask=None, h0=None):
        """(E, grads) with grads[name] = dE/dparams[name].

        The lean training step: no dE/dx, the loss gradient built in the logits' array, and
        the step's large scratch arrays (h_t, logits, dE/dh_t, ...) kept in a per-network
        ``workspace.Workspace`` and reused by the next call of the same shapes -- safe because
        only the loss and fresh gradient arrays are returned. The network holds on to those
        arrays between calls (``net.workspaces``; ``net.workspaces.clear()`` frees them)."""
        if not workspace.LOCK.acquire(blocking=False):          # another thread is stepping: fresh arrays
            return self._loss_and_grads(inputs, targets, mask, h0)
        owners = self._scratch_owners()
        try:
            for name, part in owners:
                part.workspace = self.workspaces.setdefault(name, workspace.Workspace())
            return self._loss_and_grads(inputs, targets, mask, h0)
        finally:
            for _, part in owners:
                part.workspace = None                       # forward/backward called directly: fresh arrays
            workspace.LOCK.release()

    def _scratch_owners(self) -> list:
        """(name, object) for every layer, direction and the readout: each gets its own workspace."""
        owners = []
        for index, layer in enumerate(self.layers):
            if isinstance(layer, BidirectionalLayer):
                owners += [(f"layers.{index}", layer.forward_layer), (f"layers.{index}.reverse", layer.reverse_layer)]
            else:
                owners.append((f"layers.{index}", layer))
        if self.readout is not None:
            owners.append(("readout", self.readout))
        return owners

    def _loss_and_grads(self, inputs, targets, mask, h0):
        fwd = self.forward(inputs, h0)
        T, B = fwd.inputs.shape[:2]
        targets = self.check_targets(targets, T, B)
        mask = self.check_mask(mask, T, B)
        # The logits are not returned here, so the loss gradient may reuse their array (not
        # without a readout: the outputs are then the top layer's h_t, which backward reads).
        loss, doutputs = compute_loss(self.loss, fwd.outputs, targets, mask,
                                      overwrite_outputs=self.readout is not None)
        # dE/dx unused here; nor is dE/dh_t, so the top layer may take it a chunk at a time (lean)
        bwd = self._backward(fwd, doutputs, input_grad=False, lean=True)
        return loss, bwd.grads

    def loss_only(self, inputs, targets, mask=None, h0=None) -> float:
        fwd = self.forward(inputs, h0)
        T, B = fwd.inputs.shape[:2]
        loss, _ = compute_loss(self.loss, fwd.outputs, self.check_targets(targets, T, B), self.check_mask(mask, T, B))
        return loss

    def step(self, x_t, state):
        """One time step for generation: x_t (B, I) or ids (B,); state in the format of h0.
        Returns (outputs_t (B, O), new_state)."""
        if self.bidirectional:
            raise ValueError("step() is not defined for a bidirectional network: the reverse direction "
                             "needs the whole sequence; use forward()")
        x_t = np.asarray(x_t)
        B = x_t.shape[0]
        states = self._split_state(state, B)
        new_states = []
        layer_input = x_t
        for layer, s in zip(self.layers, states):
            layer_input, s_new = layer.step(layer_input, s)
            new_states.append(s_new)
        out = layer_input
        if self.readout is not None:
            out = self.readout.forward(layer_input[None])[0]
        return out, self._join_state(new_states)
