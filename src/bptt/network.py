"""A stacked recurrent network with an output layer and a loss: the object users hold.

    layer 1:   h^1_t = f(U_1 x_t     + W_1 h^1_{t-1} + b_1)
    layer l:   h^l_t = f(U_l h^{l-1}_t + W_l h^l_{t-1} + b_l)     (stacked RNN: layer l's h is layer l+1's x)
    output:    z_t   = V h^L_t + c,   y^_t = softmax(z_t)
    loss:      E     = (1/B) sum_b sum_t m_{t,b} E_t

Each layer has its own U, W, b, shared across time. Forward runs bottom-up, BPTT
top-down; every parameter gradient is accumulated with ``+=``.

Parameter names follow the lecture: ``layers.0.U``, ``layers.0.W``, ``layers.0.b``, ...,
``V``, ``c``. ``net.params[name]`` *is* the array the layer computes with, so
optimisers update it in place; assigning ``net.params[name] = array`` copies into it
(shape and dtype checked), and ``state_dict`` / ``load_state_dict`` work as in PyTorch.

Sequences as users have them (README "Sequences"):

    lengths      (B,)  sequence b is its first L_b steps (PyTorch's packed sequences, layers/packed.py)
    embedding    x_t = E[id_t]  (vocab, E) before layer 0;  tie_weights: V = E (Press & Wolf 2017)
    readout      "all":  z_t = V h_t + c for every t           (T, B, O)
                 "last": z = V h_{L_b} + c                      (B, O)   many-to-one
                 "mean": z = V (1/L_b) sum_{t <= L_b} h_t + c   (B, O)
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import init, kernels, workspace
from . import validation as check
from .layers.bidirectional import BidirectionalLayer
from .layers.factory import CELLS, make_layer, refuse_absurd_size, state_sizes
from .layers.gru import GRU_VARIANTS
from .layers.noise import LayerNoise
from .layers.readout import Readout
from .functional import scatter_add_columns
from .losses import LOSSES, compute_loss
from .layers.packed import packed, valid_mask
from .layers.pooling import pool, unpool
from .params import ParamDict
from .passes import BackwardPass, ForwardPass, Result

READOUTS = ("all", "last", "mean")
# T B H O (the readout's multiply-adds) at or below which loss_and_grads fuses the readout and the loss
# into one kernel call (see _fused_readout_applies); above, numpy's GEMMs over all rows at once win.
# Measured (bench/fused_readout.py, 1 thread, float32): step time fused / numpy 0.66-0.68 at
# (I=O, H, B, T) = (65, 64, 1, 25) (104,000), 0.93 at 208,000, 1.01-1.19 from 416,000.
FUSED_READOUT_WORK = 2 ** 18
# float32 only: in float64 (the gradient checks' dtype) the lean step stays bit for bit the plain
# forward/backward's, which the fused pass (other summation order) is not.
FUSED_READOUT_DTYPES = (np.float32,)
_NO_CONTEXT = contextlib.nullcontext()          # reusable: nullcontext keeps no state
RECURRENCE_WITHOUT_W = ("mingru", "minlstm")      # h_t = a_t * h_(t-1) + b_t: nothing for recurrent dropout to mask


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
                 forget_bias: float = 1.0, recurrent_init: str = "uniform", spectral_radius=None,
                 embedding_size: int | None = None, tie_weights: bool = False, readout: str = "all",
                 readout_bias: bool | None = None, layer_norm: bool = False, proj_size: int | None = None,
                 weight_dropout: float = 0.0, recurrent_dropout: float = 0.0, zoneout: float = 0.0,
                 sparsity: int | None = None, input_init: str = "uniform", readout_init: str = "uniform",
                 input_bias: float = 0.0):
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
        self.weight_dropout = check.positive_float("weight_dropout", weight_dropout, allow_zero=True)
        if self.weight_dropout >= 1.0:
            raise ValueError(f"weight_dropout must be in [0, 1), got {self.weight_dropout}")
        self.recurrent_dropout = self._check_rate("recurrent_dropout", recurrent_dropout)
        self.zoneout = self._check_rate("zoneout", zoneout)
        if self.recurrent_dropout > 0 and self.cell in RECURRENCE_WITHOUT_W:
            raise ValueError(f"recurrent_dropout={self.recurrent_dropout} masks h_(t-1) before the recurrent matrix W; "
                             f"cell={self.cell!r} has no W (its recurrence is element-wise): use zoneout instead")
        if self.dropout > 0 and self.num_layers == 1:
            import warnings
            warnings.warn(f"dropout={self.dropout} has no effect with num_layers=1: it acts between "
                          "stacked layers only (as in torch)", stacklevel=2)
        self.gru_variant = check.one_of("gru_variant", gru_variant, GRU_VARIANTS)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.integer, np.floating)) \
                or not np.isfinite(forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
        self.forget_bias = float(forget_bias)
        self.embedding_size = None if embedding_size is None else check.positive_int("embedding_size", embedding_size)
        if not isinstance(tie_weights, (bool, np.bool_)):
            raise ValueError(f"tie_weights must be True or False, got {tie_weights!r}")
        self.tie_weights = bool(tie_weights)
        self.readout_mode = check.one_of("readout", readout, READOUTS)
        if readout_bias is not None and not isinstance(readout_bias, (bool, np.bool_)):
            raise ValueError(f"readout_bias must be True, False or None (= bias), got {readout_bias!r}")
        self.readout_bias = self.bias if readout_bias is None else bool(readout_bias)
        if not isinstance(layer_norm, (bool, np.bool_)):
            raise ValueError(f"layer_norm must be True or False, got {layer_norm!r}")
        if layer_norm and self.cell != "lstm":
            raise ValueError(f"layer_norm=True is the layer-normalised LSTM (Ba et al. 2016): it needs cell='lstm', "
                             f"got cell={self.cell!r}")
        self.layer_norm = bool(layer_norm)
        self.proj_size = None if proj_size is None else check.positive_int("proj_size", proj_size)
        if self.proj_size is not None:
            if self.cell != "lstm" or self.layer_norm:
                raise ValueError(f"proj_size is the LSTM with projection (torch's nn.LSTM(proj_size=P)): it needs "
                                 f"cell='lstm' without layer_norm, got cell={self.cell!r}, layer_norm={self.layer_norm}")
            if self.proj_size >= self.hidden_size:
                raise ValueError(f"proj_size must be smaller than hidden_size={self.hidden_size} (as in torch), "
                                 f"got {self.proj_size}")
        width = self.output_width                                # what each layer outputs per step
        if self.tie_weights:
            if self.embedding_size is None:
                raise ValueError("tie_weights=True needs an embedding (embedding_size=E): the readout V "
                                 "shares the embedding matrix")
            if self.output_size != self.input_size:
                raise ValueError(f"tie_weights=True needs output_size == input_size (one vocabulary in and out), "
                                 f"got output_size={self.output_size}, input_size={self.input_size}")
            if self.embedding_size != width:
                raise ValueError(f"tie_weights=True needs embedding_size == the top layer's output width "
                                 f"({'2 x ' if self.bidirectional else ''}hidden_size = {width}), "
                                 f"got embedding_size={self.embedding_size}")
        self.training = True
        # Dropout masks come from their own generator so the weights drawn from `seed` do not
        # depend on whether dropout is on; seeded, so runs repeat.
        self.dropout_rng = np.random.default_rng([self.seed, 1])
        refuse_absurd_size(self)                 # a typo like hidden_size=10**7 is an error, not an OOM kill

        rng = np.random.default_rng(self.seed)
        options = {"nonlinearity": self.nonlinearity, "bias": self.bias, "forget_bias": self.forget_bias,
                   "gru_variant": self.gru_variant, "bidirectional": self.bidirectional,
                   "layer_norm": self.layer_norm, "proj_size": self.proj_size}
        self.layers = []
        first_input = self.input_size if self.embedding_size is None else self.embedding_size
        for layer_index in range(self.num_layers):
            layer_input = first_input if layer_index == 0 else width
            self.layers.append(make_layer(self.cell, layer_input, self.hidden_size, options, rng, self.dtype))
        self.readout = (None if self.output_size is None
                        else Readout(width, self.output_size, bias=self.readout_bias, rng=rng, dtype=self.dtype))
        # The embedding is drawn after every other weight, so a network without one is unchanged.
        # U(-0.1, 0.1), the usual choice of word-level language models (Zaremba et al. 2014, AWD-LSTM).
        self.embedding = (None if self.embedding_size is None
                          else init.uniform(rng, (self.input_size, self.embedding_size), 0.1, self.dtype))
        if self.tie_weights:
            self.readout.params["V"] = self.embedding     # one array: z_t = E h_t + c
        self.params = ParamDict(self._collect(lambda sub: sub.params))
        self._refuse_unsupported_noise()
        self.workspaces: dict = {}                # scratch arrays of loss_and_grads, per layer (see workspace.py)
        self.sparsity = self._check_paper_options(recurrent_init, sparsity, input_init, readout_init, input_bias)
        self._init_recurrent(recurrent_init, spectral_radius, rng)
        self._init_paper(rng)

    # ------------------------------------------------------------ bookkeeping
    @property
    def config(self) -> dict:
        """Everything needed to rebuild this network (JSON-serialisable)."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "num_layers": self.num_layers, "cell": self.cell,
                "nonlinearity": self.nonlinearity, "bias": self.bias, "seed": self.seed,
                "dtype": self.dtype.name, "loss": self.loss, "bidirectional": self.bidirectional,
                "dropout": self.dropout, "gru_variant": self.gru_variant, "forget_bias": self.forget_bias,
                "recurrent_init": self.recurrent_init, "spectral_radius": self.spectral_radius,
                "embedding_size": self.embedding_size, "tie_weights": self.tie_weights,
                "readout": self.readout_mode, "readout_bias": self.readout_bias, "layer_norm": self.layer_norm,
                "proj_size": self.proj_size, "weight_dropout": self.weight_dropout,
                "recurrent_dropout": self.recurrent_dropout, "zoneout": self.zoneout,
                "sparsity": self.sparsity, "input_init": self.input_init, "readout_init": self.readout_init,
                "input_bias": self.input_bias}

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
                    init.init_recurrent(layer.params[name], self.recurrent_init, rng, self.spectral_radius,
                                        **({"sparsity": self.sparsity} if self.sparsity is not None else {}))

    # ---- the papers' initialisations (issue 16): sparse W, small-Gaussian U and V, LSTM input-gate bias
    def _check_paper_options(self, recurrent_init, sparsity, input_init, readout_init, input_bias):
        """Validate sparsity=, input_init=, readout_init=, input_bias=; returns the sparsity to use."""
        self.input_init = check.one_of("input_init", input_init, init.INPUT_INITS)
        self.readout_init = check.one_of("readout_init", readout_init, init.INPUT_INITS)
        if isinstance(input_bias, bool) or not isinstance(input_bias, (int, float, np.integer, np.floating)) \
                or not np.isfinite(input_bias):
            raise ValueError(f"input_bias must be a finite number, got {input_bias!r}")
        self.input_bias = float(input_bias)
        if self.input_bias and (self.cell != "lstm" or not self.bias):
            raise ValueError(f"input_bias={self.input_bias} needs cell='lstm' with bias=True (it is added to the "
                             f"input gate's bias b[0:H]), got cell={self.cell!r}, bias={self.bias}")
        if self.readout_init != "uniform" and self.tie_weights:
            raise ValueError(f"readout_init={self.readout_init!r} cannot apply with tie_weights=True: V is the embedding")
        if sparsity is None:
            return init.PAPER_SPARSITY if recurrent_init == "sparse" else None
        if recurrent_init != "sparse":
            raise ValueError(f"sparsity= applies to recurrent_init='sparse' only, got recurrent_init={recurrent_init!r}")
        sparsity = check.positive_int("sparsity", sparsity)
        if sparsity > self.hidden_size:
            raise ValueError(f"sparsity must be <= hidden_size ({self.hidden_size}), got {sparsity}")
        return sparsity

    def _init_paper(self, rng) -> None:
        """input_init="normal": every layer's U ~ N(0, 0.01^2) and its biases 0 (the LSTM keeps forget_bias
        on b[H:2H]); readout_init="normal": V ~ N(0, 0.01^2), c = 0 (Pascanu et al. 2013's code);
        input_bias: added to the LSTM's input-gate slice b[0:H], like forget_bias. Draws come after all
        others, so the defaults leave a network unchanged."""
        H = self.hidden_size
        for layer in self.layers:
            for name, p in layer.params.items():
                kind = name.replace("_reverse", "")
                if self.input_init == "normal" and kind == "U":
                    p[...] = init.normal(rng, p.shape, p.dtype)
                elif self.input_init == "normal" and kind.startswith("b"):         # b, and the GRU's b_hn
                    p[...] = 0.0
                    if self.cell == "lstm":
                        p[H:2 * H] = self.forget_bias                        # gates [i, f, g, o]
                if kind == "b" and self.cell == "lstm":
                    p[0:H] += self.input_bias                                # input gate: sigma(b_i) at start
        if self.readout_init == "normal" and self.readout is not None and not self.tie_weights:
            self.readout.params["V"][...] = init.normal(rng, self.readout.params["V"].shape, self.dtype)
            if "c" in self.readout.params:
                self.readout.params["c"][...] = 0.0

    @classmethod
    def from_config(cls, config: dict) -> "Network":
        return cls(**config)

    def _collect(self, pick) -> dict:
        named = {}
        if self.embedding is not None:
            named["embedding"] = self.embedding
        for index, layer in enumerate(self.layers):
            for name, array in pick(layer).items():
                named[f"layers.{index}.{name}"] = array
        if self.readout is not None:
            for name, array in pick(self.readout).items():
                if not (self.tie_weights and name == "V"):         # tied: V *is* "embedding"
                    named[name] = array
        return named

    def state_dict(self) -> dict:
        """name -> a copy of every parameter (like torch's ``state_dict``)."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy ``state`` into the parameters. Every name, shape and dtype is checked first (nothing is
        copied when one is wrong). ``strict=True``: the names must be exactly ``net.params``'s;
        ``strict=False`` loads the names present. Returns (missing, unexpected) names, like torch."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of name -> array, got {type(state).__name__}")
        missing = sorted(set(self.params) - set(state))
        unexpected = sorted(set(state) - set(self.params))
        if strict and (missing or unexpected):
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {unexpected}"] if unexpected else [])
            raise ValueError(f"load_state_dict: {' and '.join(parts)} (strict=True)")
        staged = {}
        for name in state:
            if name in self.params:
                live = self.params[name]
                arr = np.asarray(state[name])
                if arr.dtype.kind != "f":
                    raise ValueError(f"load_state_dict: {name!r} must be a float array, got dtype {arr.dtype}")
                if arr.shape != live.shape:
                    raise ValueError(f"load_state_dict: {name!r} must have shape {live.shape}, got {arr.shape}")
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"load_state_dict: {name!r} contains a non-finite value")
                staged[name] = arr
        for name, arr in staged.items():
            self.params[name][...] = arr
        return missing, unexpected

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
        sizes = state_sizes(self.layers[0])                    # h: P with a projection, else H
        arrays = [check.float_array(name + "0" if name != "h" else "h0", part,
                                    (len(self.layers) * D, batch, size), self.dtype)
                  for name, part, size in zip(names, parts, sizes)]
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
        width = self.output_width
        return [(self.dropout_rng.random((T, B, width)) < keep).astype(self.dtype) / self.dtype.type(keep)
                for _ in range(len(self.layers) - 1)]

    def _check_dropout_masks(self, masks, T: int, B: int) -> list:
        """Masks given back to forward (e.g. a ForwardPass's): one (T, B, D*H) array per layer below the top."""
        if not isinstance(masks, (list, tuple)) or len(masks) != len(self.layers) - 1:
            got = f"a list of {len(masks)}" if isinstance(masks, (list, tuple)) else type(masks).__name__
            raise ValueError(f"dropout_masks must be a list of {len(self.layers) - 1} arrays "
                             f"(one per layer below the top), got {got}")
        shape = (T, B, self.output_width)
        return [check.float_array(f"dropout_masks[{i}]", m, shape, self.dtype) for i, m in enumerate(masks)]

    # ------------------------------------------- recurrent dropout and zoneout
    @staticmethod
    def _check_rate(name: str, value) -> float:
        value = check.positive_float(name, value, allow_zero=True)
        if value >= 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
        return value

    def _layer_parts(self) -> list:
        """Per layer, the one-direction layers that run a time loop: (layer,) or (forward, reverse)."""
        return [(layer.forward_layer, layer.reverse_layer) if isinstance(layer, BidirectionalLayer) else (layer,)
                for layer in self.layers]

    def _refuse_unsupported_noise(self) -> None:
        """A layer honours recurrent dropout / zoneout only if its class declares ``noise`` (layers/noise.py)."""
        if self.recurrent_dropout == 0.0 and self.zoneout == 0.0:
            return
        for parts in self._layer_parts():
            for part in parts:
                if not hasattr(type(part), "noise"):
                    name = type(part).__name__
                    raise ValueError(f"recurrent_dropout / zoneout are not implemented for {name} (cell={self.cell!r}"
                                     f"{', layer_norm=True' if self.layer_norm else ''}"
                                     f"{f', proj_size={self.proj_size}' if self.proj_size else ''}); "
                                     f"got recurrent_dropout={self.recurrent_dropout}, zoneout={self.zoneout}")

    def _draw_noise(self, B: int, T: int) -> list | None:
        """Recurrent dropout and zoneout (layers/noise.py) for one forward call: per layer, one
        LayerNoise per direction. Training: the recurrent mask (B, H) in {0, 1/(1-p)}, one per sequence
        and direction; zoneout masks (T, B, size) in {0, 1} (1 = keep), one per state. Evaluation:
        zoneout's expectation p only. None when neither option is on."""
        if self.recurrent_dropout == 0.0 and self.zoneout == 0.0:
            return None
        if not self.training:
            return None if self.zoneout == 0.0 else [tuple(LayerNoise(zoneout_p=self.zoneout) for _ in parts)
                                                     for parts in self._layer_parts()]
        rng, dtype = self.dropout_rng, self.dtype
        keep = 1.0 - self.recurrent_dropout
        noise = []
        for parts in self._layer_parts():
            directions = []
            for part in parts:
                sizes = state_sizes(part)
                recurrent = (None if self.recurrent_dropout == 0.0
                             else (rng.random((B, sizes[0])) < keep).astype(dtype) / dtype.type(keep))
                zoneout = (None if self.zoneout == 0.0
                           else tuple((rng.random((T, B, size)) < self.zoneout).astype(dtype) for size in sizes))
                directions.append(LayerNoise(recurrent, zoneout, self.zoneout))
            noise.append(tuple(directions))
        return noise

    def _check_noise(self, noise, B: int, T: int) -> list:
        """Noise given back to forward (a ForwardPass's ``noise``): one tuple of LayerNoise per layer."""
        parts = self._layer_parts()
        if (not isinstance(noise, (list, tuple)) or len(noise) != len(parts)
                or any(not isinstance(n, tuple) or len(n) != len(p) or not all(isinstance(d, LayerNoise) for d in n)
                       for n, p in zip(noise, parts))):
            raise ValueError(f"noise must be a ForwardPass's noise: a list of {len(parts)} tuples of LayerNoise "
                             f"(one per direction), got {type(noise).__name__}")
        for index, (layer_noise, layer_parts) in enumerate(zip(noise, parts)):
            for d, part in zip(layer_noise, layer_parts):
                sizes = state_sizes(part)
                if d.recurrent is not None:
                    check.float_array(f"noise[{index}].recurrent", d.recurrent, (B, sizes[0]), self.dtype)
                if d.zoneout is not None:
                    for k, size in enumerate(sizes):
                        check.float_array(f"noise[{index}].zoneout[{k}]", d.zoneout[k], (T, B, size), self.dtype)
        return list(noise)

    def _noisy_layers(self, noise: list | None):
        """Context: each one-direction layer sees its LayerNoise as ``layer.noise`` (None after)."""
        if noise is None:
            return _NO_CONTEXT          # (building a generator context costs ~10 us: a B = 1 step is ~300 us)

        @contextlib.contextmanager
        def set_noise():
            parts = [part for layer_parts in self._layer_parts() for part in layer_parts]
            try:
                for part, d in zip(parts, [d for layer_noise in noise for d in layer_noise]):
                    part.noise = d
                yield
            finally:
                for part in parts:
                    part.noise = None
        return set_noise()

    # ----------------------------------------------------- DropConnect on W
    def _recurrent_owners(self) -> list:
        """(layer object, name in ``net.params``) for every recurrent matrix W a cell computes with."""
        owners = []
        for index, layer in enumerate(self.layers):
            parts = ([(layer.forward_layer, ""), (layer.reverse_layer, "_reverse")]
                     if isinstance(layer, BidirectionalLayer) else [(layer, "")])
            owners += [(part, f"layers.{index}.W{suffix}") for part, suffix in parts if "W" in part.params]
        return owners

    def _draw_weight_masks(self) -> dict | None:
        """DropConnect (Wan et al. 2013; on W as in AWD-LSTM, Merity et al. 2017): one inverted keep-mask
        per recurrent matrix per forward pass (= per update), W_eff = W * m, m in {0, 1/(1-p)}."""
        if not self.training or self.weight_dropout == 0.0:
            return None
        keep = 1.0 - self.weight_dropout
        return {name: (self.dropout_rng.random(part.params["W"].shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                for part, name in self._recurrent_owners()}

    def _dropped_weights(self, masks: dict | None):
        """Context: each cell computes with W * mask (its own params entry swapped, net.params untouched)."""
        if masks is None:
            return _NO_CONTEXT

        @contextlib.contextmanager
        def swapped():
            owners = self._recurrent_owners()
            originals = [part.params["W"] for part, _ in owners]
            try:
                for (part, name), W in zip(owners, originals):
                    part.params["W"] = W * masks[name]
                yield
            finally:
                for (part, _), W in zip(owners, originals):
                    part.params["W"] = W
        return swapped()

    # -------------------------------------------------------------- validation
    def check_inputs(self, inputs) -> np.ndarray:
        arr = np.asarray(inputs)
        if arr.dtype.kind in "iu":
            if arr.ndim != 2:
                raise ValueError(f"inputs: integer inputs are token ids of shape (T, B); got an integer array of "
                                 f"shape {arr.shape} (pass float one-hot vectors as float)")
            return check.id_array("inputs", arr, (None, None), self.input_size)
        if self.embedding is not None:
            raise ValueError(f"inputs must be integer token ids of shape (T, B) for a network with an embedding "
                             f"(embedding_size={self.embedding_size}), got dtype {arr.dtype}")
        return check.float_array("inputs", arr, (None, None, self.input_size), self.dtype)

    @property
    def output_width(self) -> int:
        """What the top (and every) layer outputs per step: D x H, or D x P for an LSTM with projection."""
        return self.num_directions * (self.proj_size or self.hidden_size)

    @property
    def pooled(self) -> bool:
        """readout "last" or "mean": one output per sequence, (B, O), instead of one per step."""
        return self.readout_mode != "all"

    def check_targets(self, targets, T: int, B: int) -> np.ndarray:
        width = self.output_size if self.output_size is not None else self.output_width
        lead = (B,) if self.pooled else (T, B)
        if self.loss == "cross_entropy":
            return check.id_array("targets", targets, lead, width)
        return check.float_array("targets", targets, lead + (width,), self.dtype)

    def check_mask(self, mask, T: int, B: int) -> np.ndarray | None:
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.dtype.kind in "biu":                          # 0/1 masks may come as bool or int
            mask = mask.astype(self.dtype)
        mask = check.float_array("mask", mask, (B,) if self.pooled else (T, B), self.dtype)
        if np.any(mask < 0):
            raise ValueError(f"mask must be >= 0, got minimum {mask.min()}")
        return mask

    def check_lengths(self, lengths, T: int, B: int, allow_zero: bool = False):
        """lengths (B,) in [1, T] -> int64 array, or None when absent or all equal to T (then every
        pass is exactly the fixed-length one, bit for bit)."""
        if lengths is None:
            return None
        lengths = check.lengths_array("lengths", lengths, B, T, allow_zero=allow_zero)
        return None if np.all(lengths == T) else lengths

    # ---------------------------------------------------------------- passes
    def forward(self, inputs, h0=None, *, lengths=None, validate: bool = True,
                dropout_masks: list | None = None, final_grad: bool = True,
                weight_masks: dict | None = None, noise: list | None = None) -> ForwardPass:
        """Run every layer bottom-up over the whole sequence, then the readout.

        ``lengths`` (B,): sequence b is its first L_b steps (PyTorch's packed sequences): its state
        stops at step L_b (the final state returned is that one), a bidirectional layer's reverse
        direction starts there, and outputs at padded steps are zero.
        In training mode with ``dropout > 0`` fresh masks are drawn from ``net.dropout_rng``
        unless ``dropout_masks`` (a previous ``ForwardPass.dropout_masks``) fixes them; the same for
        ``weight_dropout`` and ``weight_masks``, and for ``recurrent_dropout`` / ``zoneout`` and ``noise``
        (a previous ``ForwardPass.noise``).
        ``final_grad=False`` promises that backward gets no ``dfinal_state`` (lets packed LSTM layers
        make fewer pieces; see layers/packed.py)."""
        x = self.check_inputs(inputs) if validate else inputs
        T, B = x.shape[:2]
        lengths = self.check_lengths(lengths, T, B, allow_zero=not validate)
        states0 = self._split_state(h0, B)
        masks = (self._check_dropout_masks(dropout_masks, T, B) if dropout_masks is not None
                 else self._draw_dropout_masks(T, B))
        weight_masks = weight_masks if weight_masks is not None else self._draw_weight_masks()
        noise = self._check_noise(noise, B, T) if noise is not None else self._draw_noise(B, T)
        layer_input = x if self.embedding is None else self.embedding[x]     # x_t = E[id_t], (T, B, E)
        hidden, caches, finals = [], [], []
        with self._dropped_weights(weight_masks), self._noisy_layers(noise):
            for index, (layer, state0) in enumerate(zip(self.layers, states0)):
                runner = layer if lengths is None else packed(layer, lengths, final_grad)
                h, state_T, cache = runner.forward(layer_input, state0)
                hidden.append(h)
                caches.append(cache)
                finals.append(state_T)
                layer_input = h                                   # stacked: this h is the next layer's x
                if masks is not None and index < len(self.layers) - 1:
                    layer_input = h * masks[index]                # dropout between layers, not after the last
        pooled = (pool(layer_input, lengths, self.readout_mode, self.bidirectional)   # (B, W)
                  if self.pooled else None)
        top = pooled[None] if self.pooled else layer_input   # (1, B, W) or (T, B, W)
        outputs = self.readout.forward(top) if self.readout is not None else top
        if self.pooled:
            outputs = outputs[0]                              # (B, O): one output per sequence
        elif lengths is not None:
            outputs = outputs * valid_mask(lengths, T, outputs.dtype)[:, :, None]   # zero at padded steps
        return ForwardPass(outputs, self._join_state(finals), hidden, caches, x, masks, lengths, pooled,
                           weight_masks, noise)

    def loss_mask(self, mask, fwd: ForwardPass):
        """The weights the loss uses: ``mask`` times the valid steps of ``fwd``'s lengths."""
        if fwd.lengths is None or self.pooled:
            return mask
        valid = valid_mask(fwd.lengths, fwd.inputs.shape[0], fwd.outputs.dtype)
        return valid if mask is None else mask * valid

    def output_loss(self, fwd: ForwardPass, targets, mask=None, *, overwrite_outputs: bool = False):
        """(E, dE/doutputs) of ``fwd.outputs`` against validated ``targets``: summed over valid
        time steps, averaged over the batch (padded steps add nothing)."""
        weights = self.loss_mask(mask, fwd)
        if self.pooled:                                       # one output per sequence: a "sequence" of 1 step
            loss, d = compute_loss(self.loss, fwd.outputs[None], targets[None],
                                   None if weights is None else weights[None], overwrite_outputs=overwrite_outputs)
            return loss, d[0]
        return compute_loss(self.loss, fwd.outputs, targets, weights, overwrite_outputs=overwrite_outputs)

    def backward(self, fwd: ForwardPass, doutputs: np.ndarray, grads: dict | None = None,
                 dfinal_state=None, *, input_grad: bool = True) -> BackwardPass:
        """BPTT top-down. ``doutputs`` = dE/dz_t, (T, B, O) (or (B, O) for readout "last"/"mean");
        ``dfinal_state`` (format of h0) adds a gradient arriving at the last state (with ``lengths``:
        at each sequence's own last step). Accumulates into ``grads`` (+=).
        ``input_grad=False`` skips dE/dx of the first layer (``dinputs`` is then None): a
        (T B, G H) x (G H, I) GEMM that training does not need."""
        return self._backward(fwd, doutputs, grads, dfinal_state, input_grad=input_grad)

    def _readout_grads(self, grads: dict) -> dict:
        names = {"V": "embedding"} if self.tie_weights else {}      # tied: dE/dV adds into dE/dE
        return {k: grads[names.get(k, k)] for k in self.readout.params}

    def _backward(self, fwd: ForwardPass, doutputs: np.ndarray, grads: dict | None = None,
                  dfinal_state=None, *, input_grad: bool = True, lean: bool = False) -> BackwardPass:
        """``backward``; with ``lean=True`` (loss_and_grads only) the top layer may take dE/dh_t
        from the readout a chunk of steps at a time (readout.ChunkedReadoutGrad) when it accepts
        that: no (T, B, H) dE/dh array, and its ``BackwardPass.dh`` entry is None -- which is
        why only the lean step, which returns the loss and grads alone, asks for it."""
        grads = self.zero_grads() if grads is None else grads
        T, B = fwd.inputs.shape[:2]
        lengths = fwd.lengths
        if lengths is not None and not self.pooled:
            # Outputs at padded steps are constant zeros: nothing flows back from them.
            doutputs = doutputs * valid_mask(lengths, T, doutputs.dtype)[:, :, None]
        if self.pooled:
            dtop = doutputs
            if self.readout is not None:
                dtop = self.readout.backward(doutputs[None], fwd.pooled[None], self._readout_grads(grads))[0]
            dtop = unpool(dtop, T, lengths, self.readout_mode, self.bidirectional)
            owned = True
        elif self.readout is not None:
            # RNN, LSTM and torch-variant GRU layers accept it; bidirectional and Cho-GRU layers
            # take the whole (T, B, H) array as before (and so does every layer over packed sequences).
            chunked = lean and lengths is None and getattr(self.layers[-1], "accepts_chunked_dh", False)
            dtop = self.readout.backward(doutputs, fwd.hidden[-1], self._readout_grads(grads), chunked=chunked)
            owned = True
        else:
            dtop = doutputs
            owned = False
        # dtop is ours to overwrite (each layer then writes dE/dh_t into it in place, one
        # (T, B, H) array less) unless it is the caller's doutputs; below the top it is always
        # the fresh dE/dx of the layer above.
        dfinal = None if dfinal_state is None else self._split_state(dfinal_state, B)
        embedded = self.embedding is not None
        if fwd.weight_masks is not None:
            # DropConnect: the cells differentiate W_eff = W * m; dE/dW = dE/dW_eff * m, added to grads
            W_eff_grads = {name: np.zeros_like(grads[name]) for name in fwd.weight_masks}
            saved = {name: grads[name] for name in fwd.weight_masks}
            grads.update(W_eff_grads)
        with self._dropped_weights(fwd.weight_masks):
            dtop, dh_all, dh0 = self._backward_layers(fwd, grads, dtop, dfinal, owned, input_grad, lean,
                                                      lengths, embedded)
        if fwd.weight_masks is not None:
            for name, mask in fwd.weight_masks.items():
                saved[name] += grads[name] * mask
                grads[name] = saved[name]
        if embedded:
            # x_t = E[id_t]: row id_t of E receives dE/dx_t (repeated ids add up; with tying, on top of dE/dV)
            E = self.embedding_size
            scatter_add_columns(grads["embedding"].T, fwd.inputs.reshape(-1), dtop.reshape(-1, E))
            dtop = None                                        # token ids have no gradient
        return BackwardPass(grads, dh_all, dtop, self._join_state(dh0))

    def _backward_layers(self, fwd, grads, dtop, dfinal, owned, input_grad, lean, lengths, embedded):
        """BPTT through the stacked layers, top-down: (dE/dx of the first layer, dE/dh_t per layer, dE/dstate0)."""
        dh_all = [None] * len(self.layers)
        dh0 = [None] * len(self.layers)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            runner = layer if lengths is None else packed(layer, lengths)
            if lean and lengths is not None:
                runner.keep_dh = False                         # dE/dh_t is not returned by the lean step
            dx, dstate0, dh_total = runner.backward(dtop, None if dfinal is None else dfinal[index],
                                                    fwd.caches[index], self._layer_grads(grads, index),
                                                    input_grad=input_grad or index > 0 or embedded,
                                                    overwrite_dh=owned)
            owned = True
            dh_all[index] = dh_total
            dh0[index] = dstate0
            dtop = dx                                          # dE/dx of layer l is dE/dh of layer l-1
            if fwd.dropout_masks is not None and index > 0:
                dtop = dtop * fwd.dropout_masks[index - 1]     # through the (fixed) dropout mask
        return dtop, dh_all, dh0

    def forward_backward(self, inputs, targets, mask=None, h0=None, *, lengths=None,
                         input_grad: bool = True) -> Result:
        """Loss, every gradient, and what diagnostics read (dE/dh_t per layer, dE/dx, dE/dh0).
        ``input_grad=False`` skips dE/dx (``Result.dinputs`` is then None)."""
        fwd = self.forward(inputs, h0, lengths=lengths)
        T, B = fwd.inputs.shape[:2]
        targets = self.check_targets(targets, T, B)
        mask = self.check_mask(mask, T, B)
        loss, doutputs = self.output_loss(fwd, targets, mask)
        bwd = self.backward(fwd, doutputs, input_grad=input_grad)
        return Result(loss, bwd.grads, fwd.outputs, fwd.final_state, bwd.dh, bwd.dinputs, bwd.dh0)

    def loss_and_grads(self, inputs, targets, mask=None, h0=None, *, lengths=None, truncation=None):
        """(E, grads) with grads[name] = dE/dparams[name].

        ``truncation``: a mode from ``bptt.training.truncation`` -- ``Chunked(k)``, ``TBPTT(k1, k2)``,
        ``Window(k)`` (or ``FullBPTT()``, the default): the gradient that mode computes for this batch,
        every piece at the current weights (no update between pieces), summed; E is the loss of all outputs.

        The lean training step: no dE/dx, the loss gradient built in the logits' array, and
        the step's large scratch arrays (h_t, logits, dE/dh_t, ...) kept in a per-network
        ``workspace.Workspace`` and reused by the next call of the same shapes -- safe because
        only the loss and fresh gradient arrays are returned. The network holds on to those
        arrays between calls (``net.workspaces``; ``net.workspaces.clear()`` frees them)."""
        if truncation is not None:
            return self._truncated_loss_and_grads(inputs, targets, mask, h0, lengths, truncation)
        x = self.check_inputs(inputs)
        if self.check_lengths(lengths, *x.shape[:2]) is not None:
            # Packed sequences run each layer piece by piece, with caches alive at once: fresh arrays.
            return self._loss_and_grads(x, targets, mask, h0, lengths)
        if not workspace.LOCK.acquire(blocking=False):          # another thread is stepping: fresh arrays
            return self._loss_and_grads(x, targets, mask, h0, None)
        owners = self._scratch_owners()
        try:
            for name, part in owners:
                part.workspace = self.workspaces.setdefault(name, workspace.Workspace())
            return self._loss_and_grads(x, targets, mask, h0, None)
        finally:
            for _, part in owners:
                part.workspace = None                       # forward/backward called directly: fresh arrays
            workspace.LOCK.release()

    def _truncated_loss_and_grads(self, inputs, targets, mask, h0, lengths, truncation):
        from .training.truncation import TRUNCATION_TYPES
        if not isinstance(truncation, TRUNCATION_TYPES):
            raise ValueError(f"truncation must be one of bptt.training.truncation's modes "
                             f"(FullBPTT(), Chunked(k), TBPTT(k1, k2), Window(k)), got {truncation!r}")
        x = self.check_inputs(inputs)
        T, B = x.shape[:2]
        targets = self.check_targets(targets, T, B)
        mask = self.check_mask(mask, T, B)
        lengths = self.check_lengths(lengths, T, B)
        if h0 is not None:
            self._split_state(h0, B)                            # validated here, used by the mode
        total = self.zero_grads()

        def collect(piece):
            for name, g in piece.grads.items():
                total[name] += g

        loss, _ = truncation.run(self, x, targets, mask, h0, collect, lengths=lengths)
        return loss, total

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

    def _fused_readout_applies(self, x: np.ndarray, mask, lengths) -> bool:
        """The small-step path (kernels/readout_loss.py): few rows, softmax cross-entropy on a readout at
        every step, nothing drawn at random, numba on. There the readout and the loss are a dozen numpy
        calls on tiny arrays (~100 us of a ~300 us step at B = 1); one compiled pass replaces them."""
        T, B = x.shape[:2]
        if self.readout is None or T * B * self.readout.params["V"].size > FUSED_READOUT_WORK:
            return False
        return (self.readout is not None and self.loss == "cross_entropy"
                and not self.pooled and mask is None and lengths is None and not self.tie_weights
                and (self.dropout == 0.0 or len(self.layers) == 1 or not self.training)
                and (not self.training or self.weight_dropout == 0.0) and self.recurrent_dropout == 0.0
                and self.zoneout == 0.0 and self.dtype in FUSED_READOUT_DTYPES and kernels.enabled()
                and kernels.fast_paths())

    def _fused_loss_and_grads(self, x, targets, h0):
        """loss_and_grads for small steps: the layers' own forward and backward, and between them the
        readout, loss and their backward in one kernel call (the same equations as readout.py/losses.py)."""
        from .kernels.readout_loss import readout_cross_entropy
        T, B = x.shape[:2]
        targets = self.check_targets(targets, T, B)
        layer_input = x if self.embedding is None else self.embedding[x]
        hidden, caches = [], []
        for layer, state0 in zip(self.layers, self._split_state(h0, B)):
            h, _, cache = layer.forward(layer_input, state0)
            hidden.append(h)
            caches.append(cache)
            layer_input = h
        grads = self.zero_grads()
        V = self.readout.params["V"]
        c = self.readout.params["c"] if "c" in self.readout.params else np.zeros(V.shape[0], self.dtype)
        dc = grads["c"] if "c" in grads else np.zeros(V.shape[0], self.dtype)
        dh = np.empty(layer_input.shape, self.dtype)                   # dE/dh_t of the top layer, from the readout
        loss = readout_cross_entropy(layer_input, np.ascontiguousarray(V.T), V, c, targets,
                                     self.dtype.type(1.0 / B), grads["V"], dc, dh, np.empty(V.shape[0], self.dtype))
        fwd = ForwardPass(None, None, hidden, caches, x)
        dtop, _, _ = self._backward_layers(fwd, grads, dh, None, True, False, True, None, self.embedding is not None)
        if self.embedding is not None:
            scatter_add_columns(grads["embedding"].T, x.reshape(-1), dtop.reshape(-1, self.embedding_size))
        return float(loss), grads

    def _loss_and_grads(self, inputs, targets, mask, h0, lengths):
        if self._fused_readout_applies(inputs, mask, lengths):
            return self._fused_loss_and_grads(inputs, targets, h0)
        fwd = self.forward(inputs, h0, lengths=lengths, validate=False, final_grad=False)
        T, B = fwd.inputs.shape[:2]
        targets = self.check_targets(targets, T, B)
        mask = self.check_mask(mask, T, B)
        # The logits are not returned here, so the loss gradient may reuse their array (not
        # without a readout: the outputs are then the top layer's h_t, which backward reads).
        loss, doutputs = self.output_loss(fwd, targets, mask, overwrite_outputs=self.readout is not None)
        # dE/dx unused here; nor is dE/dh_t, so the top layer may take it a chunk at a time (lean)
        bwd = self._backward(fwd, doutputs, input_grad=False, lean=True)
        return loss, bwd.grads

    def loss_only(self, inputs, targets, mask=None, h0=None, *, lengths=None) -> float:
        fwd = self.forward(inputs, h0, lengths=lengths)
        T, B = fwd.inputs.shape[:2]
        loss, _ = self.output_loss(fwd, self.check_targets(targets, T, B), self.check_mask(mask, T, B))
        return loss

    def predict_proba(self, inputs, lengths=None, h0=None) -> np.ndarray:
        """y^ = softmax(z): the probabilities the lecture writes (``forward().outputs`` are the logits z).
        (T, B, O), or (B, O) for readout "last"/"mean"; rows of padded steps are zero."""
        if self.loss != "cross_entropy":
            raise ValueError(f"predict_proba needs loss='cross_entropy' (softmax outputs), the network has {self.loss!r}")
        fwd = self.forward(inputs, h0, lengths=lengths)
        z = fwd.outputs
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        if fwd.lengths is not None and not self.pooled:
            p *= valid_mask(fwd.lengths, z.shape[0], p.dtype)[:, :, None]
        return p

    def step(self, x_t, state):
        """One time step for generation: x_t (B, I) or ids (B,); state in the format of h0.
        Returns (outputs_t (B, O), new_state)."""
        if self.bidirectional:
            raise ValueError("step() is not defined for a bidirectional network: the reverse direction "
                             "needs the whole sequence; use forward()")
        if self.pooled:
            raise ValueError(f"step() gives one output per time step; readout={self.readout_mode!r} gives one "
                             f"per sequence: use forward()")
        x_t = np.asarray(x_t)
        B = x_t.shape[0]
        states = self._split_state(state, B)
        new_states = []
        layer_input = x_t if self.embedding is None else self.embedding[x_t]
        for layer, s in zip(self.layers, states):
            layer_input, s_new = layer.step(layer_input, s)
            if self.zoneout > 0.0:
                # zoneout at generation: its expectation, state = p * previous + (1 - p) * update (the
                # update is the cell's from the previous state: for the LSTM h~ = o tanh(c~), as in forward)
                p = self.dtype.type(self.zoneout)
                s_new = tuple(p * old + (1 - p) * new for old, new in zip(s, s_new))
                layer_input = s_new[0]                    # every cell outputs its first state (h, or r for LSTMP)
            new_states.append(s_new)
        out = layer_input
        if self.readout is not None:
            out = self.readout.forward(layer_input[None])[0]
        return out, self._join_state(new_states)
