"""Learning-rate schedules: ``schedule.lr(step)`` gives the rate for update ``step`` (0-based).

    Constant(lr)                       lr
    StepDecay(lr, every, gamma)        lr * gamma ** (step // every)       (torch StepLR)
    Exponential(lr, gamma)             lr * gamma ** step                  (torch ExponentialLR)
    Warmup(inner, steps)               inner.lr(step) * min(1, (step + 1) / steps)   (linear warm-up)
    HalveOnRise(lr, factor=0.5)        the WildML tutorial: after each evaluation, if the evaluated loss
                                       rose above the previous evaluation's, lr <- lr * factor
    Offset(inner, start)               inner.lr(step - start): a schedule begun at step ``start``
                                       (``bptt train --resume --lr ...`` counts the new schedule from there)

Only ``HalveOnRise`` has state that training changes (it hears ``observe(loss)`` after
each evaluation); every schedule still has ``state_dict()``/``load_state_dict()`` so a
checkpoint stores and restores any of them as JSON.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import math

from .. import validation as check

SCHEDULES = ("constant", "step", "exponential", "halve-on-rise")


class Schedule(ABC):
    kind = "base"

    @abstractmethod
    def lr(self, step: int) -> float:
        """Each subclass defines its rule here."""

    def observe(self, loss: float) -> None:
        """Hear an evaluated loss (only HalveOnRise reacts)."""

    def state_dict(self) -> dict:
        return {"kind": self.kind, **self._fields()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"schedule state is for {state.get('kind')!r}, not {self.kind!r}")
        for key, value in state.items():
            if key != "kind" and key != "inner":
                setattr(self, key, value)

    def _fields(self) -> dict:
        return dict(vars(self))


class Constant(Schedule):
    kind = "constant"

    def __init__(self, lr: float):
        self.base_lr = check.positive_float("lr", lr)

    def lr(self, step):
        return self.base_lr


class StepDecay(Schedule):
    kind = "step"

    def __init__(self, lr: float, every: int, gamma: float = 0.5):
        self.base_lr = check.positive_float("lr", lr)
        self.every = check.positive_int("every", every)
        self.gamma = check.positive_float("gamma", gamma)

    def lr(self, step):
        return self.base_lr * self.gamma ** (step // self.every)


class Exponential(Schedule):
    kind = "exponential"

    def __init__(self, lr: float, gamma: float):
        self.base_lr = check.positive_float("lr", lr)
        self.gamma = check.positive_float("gamma", gamma)

    def lr(self, step):
        return self.base_lr * self.gamma ** step


class Warmup(Schedule):
    """Linear warm-up over the first ``steps`` updates, then whatever ``inner`` says."""

    kind = "warmup"

    def __init__(self, inner: Schedule, steps: int):
        if not isinstance(inner, Schedule):
            raise TypeError(f"inner must be a Schedule, got {type(inner).__name__}")
        self.inner = inner
        self.steps = check.positive_int("steps", steps)

    def lr(self, step):
        return self.inner.lr(step) * min(1.0, (step + 1) / self.steps)

    def observe(self, loss):
        self.inner.observe(loss)

    def _fields(self):
        return {"steps": self.steps, "inner": self.inner.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.inner.load_state_dict(state["inner"])


class HalveOnRise(Schedule):
    """WildML RNN tutorial, part 2: ``if losses[-1] > losses[-2]: learning_rate *= 0.5``."""

    kind = "halve-on-rise"

    def __init__(self, lr: float, factor: float = 0.5):
        self.current_lr = check.positive_float("lr", lr)
        self.factor = check.positive_float("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"factor must be < 1, got {factor}")
        self.last_loss = None                       # the previous evaluation's loss
        self.halvings = 0

    def lr(self, step):
        return self.current_lr

    def observe(self, loss):
        loss = float(loss)
        if self.last_loss is not None and math.isfinite(loss) and loss > self.last_loss:
            self.current_lr *= self.factor
            self.halvings += 1
        self.last_loss = loss


class Offset(Schedule):
    """``inner`` started at step ``start``: lr(step) = inner.lr(step - start). When a run's learning
    rate or schedule changes on resume, the new one begins where the run stands (its decays and
    warm-up count from there) instead of jumping to where it would be had it run from step 0."""

    kind = "offset"

    def __init__(self, inner: Schedule, start: int):
        if not isinstance(inner, Schedule):
            raise TypeError(f"inner must be a Schedule, got {type(inner).__name__}")
        self.inner = inner
        if isinstance(start, bool) or int(start) != start or start < 0:
            raise ValueError(f"start must be an integer >= 0, got {start!r}")
        self.start = int(start)

    def lr(self, step):
        return self.inner.lr(max(0, step - self.start))

    def observe(self, loss):
        self.inner.observe(loss)

    def _fields(self):
        return {"start": self.start, "inner": self.inner.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.inner.load_state_dict(state["inner"])


def make_schedule(kind: str, lr: float, *, every: int = 1000, gamma: float = 0.5, warmup: int = 0,
                  factor: float = 0.5, start: int = 0) -> Schedule:
    """A schedule by name (``constant``, ``step``, ``exponential``, ``halve-on-rise``), optionally warmed up,
    optionally begun at step ``start`` (``Offset``)."""
    kind = check.one_of("schedule", kind, SCHEDULES)
    if kind == "constant":
        schedule = Constant(lr)
    elif kind == "step":
        schedule = StepDecay(lr, every, gamma)
    elif kind == "exponential":
        schedule = Exponential(lr, gamma)
    else:
        schedule = HalveOnRise(lr, factor)
    if warmup:
        schedule = Warmup(schedule, warmup)
    if start:
        schedule = Offset(schedule, start)
    return schedule
