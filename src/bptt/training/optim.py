"""Optimisers that update ``net.params`` in place from a gradient dict.

Each one matches its ``torch.optim`` namesake step for step (tests compare them in
float64 over several steps). With g = dE/dtheta (plus ``weight_decay * theta`` when
weight decay is on, as torch does for all but AdamW) and step count t = 1, 2, ...:

    SGD        theta <- theta - lr g                               (the lecture's update)
      momentum   v <- mu v + (1 - dampening) g   (v = g at t = 1);  theta <- theta - lr v
      Nesterov   theta <- theta - lr (g + mu v)
    Adagrad    s <- s + g^2;   theta <- theta - lr_t g / (sqrt(s) + eps),  lr_t = lr / (1 + (t-1) lr_decay)
    RMSprop    s <- alpha s + (1 - alpha) g^2;  theta <- theta - lr g / (sqrt(s) + eps)
               (centered: divide by sqrt(s - m^2) + eps, m the running mean of g; momentum: as SGD on g / denom)
    Adam       m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
               theta <- theta - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
               (``decoupled_weight_decay=True`` is AdamW: theta <- theta (1 - lr wd) first, g unchanged)

``opt.lr`` is a plain attribute: a schedule (``bptt.training.schedules``) sets it before each step.
``opt.state_dict()`` returns ``{"kind", "hyper", "t", "slots": {slot: {param name: array}}}``:
plain arrays plus JSON-able scalars, which ``bptt.io.checkpoint`` stores without pickle;
``opt.load_state_dict(d)`` restores it bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .. import validation as check

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")


class Optimizer(ABC):
    """Shared machinery: parameter dict, learning rate, step count, per-parameter slots."""

    kind = "base"
    slot_names: tuple = ()

    def __init__(self, params: dict, lr: float, weight_decay: float = 0.0):
        if not isinstance(params, dict) or not params:
            raise TypeError(f"params must be a non-empty dict name -> array (net.params), got {type(params).__name__}")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"params[{name!r}] must be a float numpy array, got {type(p).__name__}")
        self.params = params
        self.lr = check.positive_float("lr", lr)
        self.weight_decay = check.positive_float("weight_decay", weight_decay, allow_zero=True)
        self.t = 0                                     # steps taken (torch's state["step"])
        self.slots = {slot: {name: np.zeros_like(p) for name, p in params.items()} for slot in self.slot_names}

    # ------------------------------------------------------------------ API
    def step(self, grads: dict) -> None:
        """Update every parameter in place from ``grads`` (same keys as params); grads are not modified."""
        missing = [name for name in self.params if name not in grads]
        if missing:
            raise ValueError(f"grads lacks gradients for {missing}")
        self.t += 1
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay and not self._decoupled():
                g = g + self.weight_decay * p          # L2 penalty (weight_decay/2)||theta||^2, as torch adds it
            self._update(name, p, g)

    def _decoupled(self) -> bool:
        return False

    @abstractmethod
    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        """Each subclass defines its rule here."""

    def hyper(self) -> dict:
        """The hyper-parameters (JSON-able), enough to rebuild this optimiser with ``make_optimizer``."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def state_dict(self) -> dict:
        return {"kind": self.kind, "hyper": self.hyper(), "t": self.t,
                "slots": {slot: {name: a.copy() for name, a in arrays.items()} for slot, arrays in self.slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore slots and step count (shapes and names must match this optimiser's parameters)."""
        if state.get("kind") != self.kind:
            raise ValueError(f"optimizer state is for {state.get('kind')!r}, not {self.kind!r}")
        slots = state.get("slots", {})
        for slot in self.slot_names:
            for name, p in self.params.items():
                try:
                    saved = slots[slot][name]
                except KeyError:
                    raise ValueError(f"optimizer state lacks slot {slot!r} for parameter {name!r}") from None
                if np.shape(saved) != p.shape:
                    raise ValueError(f"optimizer slot {slot}/{name} has shape {np.shape(saved)}, parameter has {p.shape}")
                self.slots[slot][name][...] = saved
        self.t = int(state.get("t", 0))
        for key, value in state.get("hyper", {}).items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """theta <- theta - lr g; with ``momentum`` mu > 0, heavy-ball or (``nesterov=True``) Nesterov momentum."""

    kind = "sgd"

    def __init__(self, params: dict, lr: float = 0.1, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        self.momentum = check.positive_float("momentum", momentum, allow_zero=True)
        self.dampening = check.positive_float("dampening", dampening, allow_zero=True)
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(f"nesterov needs momentum > 0 and dampening 0, got momentum={momentum}, dampening={dampening}")
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr, weight_decay)

    def _update(self, name, p, g):
        if self.momentum:
            v = self.slots["momentum_buffer"][name]
            if self.t == 1:
                v[...] = g                                 # torch starts the buffer at g (no dampening)
            else:
                v *= self.momentum
                v += (1.0 - self.dampening) * g
            g = g + self.momentum * v if self.nesterov else v
        p -= self.lr * g

    def hyper(self):
        return {**super().hyper(), "momentum": self.momentum, "dampening": self.dampening, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    """Duchi et al. (2011), as in min-char-rnn: a per-entry step lr / sqrt(sum of past g^2)."""

    kind = "adagrad"
    slot_names = ("sum",)

    def __init__(self, params: dict, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        self.lr_decay = check.positive_float("lr_decay", lr_decay, allow_zero=True)
        self.initial_accumulator_value = check.positive_float("initial_accumulator_value",
                                                              initial_accumulator_value, allow_zero=True)
        self.eps = check.positive_float("eps", eps)
        super().__init__(params, lr, weight_decay)
        for s in self.slots["sum"].values():
            s += self.initial_accumulator_value

    def _update(self, name, p, g):
        s = self.slots["sum"][name]
        s += g * g
        clr = self.lr / (1.0 + (self.t - 1) * self.lr_decay)
        p -= clr * g / (np.sqrt(s) + self.eps)

    def hyper(self):
        return {**super().hyper(), "lr_decay": self.lr_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}


class RMSprop(Optimizer):
    """Tieleman & Hinton (2012): divide by a running root-mean-square of the gradient."""

    kind = "rmsprop"

    def __init__(self, params: dict, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        self.alpha = check.positive_float("alpha", alpha, allow_zero=True)
        if self.alpha >= 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.eps = check.positive_float("eps", eps)
        self.momentum = check.positive_float("momentum", momentum, allow_zero=True)
        self.centered = bool(centered)
        self.slot_names = (("square_avg",) + (("grad_avg",) if self.centered else ())
                           + (("momentum_buffer",) if self.momentum else ()))
        super().__init__(params, lr, weight_decay)

    def _update(self, name, p, g):
        sq = self.slots["square_avg"][name]
        sq *= self.alpha
        sq += (1.0 - self.alpha) * g * g
        if self.centered:
            m = self.slots["grad_avg"][name]
            m *= self.alpha
            m += (1.0 - self.alpha) * g
            denom = np.sqrt(sq - m * m) + self.eps
        else:
            denom = np.sqrt(sq) + self.eps
        if self.momentum:
            buf = self.slots["momentum_buffer"][name]
            buf *= self.momentum
            buf += g / denom
            p -= self.lr * buf
        else:
            p -= self.lr * g / denom

    def hyper(self):
        return {**super().hyper(), "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "centered": self.centered}


class Adam(Optimizer):
    """Kingma & Ba (2015) with torch's bias correction; ``decoupled_weight_decay=True`` is AdamW."""

    kind = "adam"

    def __init__(self, params: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, decoupled_weight_decay: bool = False):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(0 <= float(b) < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = check.positive_float("eps", eps)
        self.amsgrad = bool(amsgrad)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        self.slot_names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())
        super().__init__(params, lr, weight_decay)

    def _decoupled(self):
        return self.decoupled_weight_decay

    def _update(self, name, p, g):
        b1, b2 = self.betas
        if self.decoupled_weight_decay and self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay          # AdamW: decay the weights, not the gradient
        m, v = self.slots["exp_avg"][name], self.slots["exp_avg_sq"][name]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * g * g
        if self.amsgrad:
            vmax = self.slots["max_exp_avg_sq"][name]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        bias1 = 1.0 - b1 ** self.t
        bias2 = 1.0 - b2 ** self.t
        denom = np.sqrt(v) / np.sqrt(bias2) + self.eps
        p -= (self.lr / bias1) * m / denom

    def hyper(self):
        return {**super().hyper(), "betas": list(self.betas), "eps": self.eps, "amsgrad": self.amsgrad,
                "decoupled_weight_decay": self.decoupled_weight_decay}


_CLASSES = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def make_optimizer(kind: str, params: dict, **hyper) -> Optimizer:
    """Build an optimiser by name (``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``) -- how checkpoints rebuild one."""
    kind = check.one_of("optimizer", kind, OPTIMIZERS)
    return _CLASSES[kind](params, **hyper)


def optimizer_from_state(params: dict, state: dict) -> Optimizer:
    """Rebuild an optimiser from ``state_dict()`` output (hyper-parameters, slots, step count)."""
    hyper = dict(state.get("hyper", {}))
    if "betas" in hyper:
        hyper["betas"] = tuple(hyper["betas"])
    opt = make_optimizer(state.get("kind"), params, **hyper)
    opt.load_state_dict(state)
    return opt
