"""Non-finite losses and gradients, caught before they reach the weights.

A NaN or an infinity in E or in dE/dtheta, once stepped into the parameters, spreads to every
later forward pass (one NaN in W makes every h_t NaN) and cannot be undone. So every update is
checked *before* clipping and the optimiser step (after the gradient hook, so under MPI every
rank sees the same all-reduced values and decides the same way):

    E finite?  and  every dE/dtheta finite?      -> clip, step as usual
    otherwise, by policy:
      "stop"      raise NonFiniteError (a TrainingDiverged, a ValueError) naming the step and what went
                  non-finite (the Trainer's default);
                  the weights are as they were before this update
      "skip"      do not apply this update; warn; the carried hidden state is reset to zero if
                  it went non-finite too; after ``max_skips`` non-finite updates in a row, stop
      "rollback"  restore the weights, optimiser, schedule, step and RNGs saved at the last good
                  snapshot (taken every ``snapshot_every`` steps -- ``bptt train`` uses its
                  checkpoint interval, so this is the last checkpoint -- and before the first
                  step), multiply the learning rate by ``lr_factor``, and go on from there;
                  after ``max_rollbacks`` rollbacks, stop

    trainer = Trainer(net, opt, numerics=NonFiniteGuard("rollback", lr_factor=0.5, snapshot_every=100))

Every step's metrics line gets ``nonfinite`` (events this step), ``skipped_updates``,
``rollbacks`` and ``lr_scale`` (the product of the rollback factors so far). The guard's
counters and ``lr_scale`` are saved in checkpoints, so a resumed run keeps its lowered rate.

``first_nonfinite(arrays)`` is also what ``bptt.io.checkpoint.save_checkpoint`` uses to refuse to
write a non-finite parameter to disk.
"""

from __future__ import annotations

import collections
import math
import statistics
import sys

import numpy as np

from .. import validation as check


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite (raised by the Trainer and by the guards below)."""

POLICIES = ("stop", "skip", "rollback")


class NonFiniteError(TrainingDiverged):
    """Training met a non-finite loss, gradient or weight and the policy says stop (a ValueError)."""


def first_nonfinite(arrays: dict) -> str | None:
    """The name of the first floating array in ``arrays`` holding a NaN or an infinity, or None."""
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return name
    return None


def describe_nonfinite(name: str, a) -> str:
    """e.g. ``layers.0.W (3 NaN, 1 inf of 64 entries, first at (2, 5))``."""
    a = np.asarray(a)
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    where = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0]) if a.ndim else ()
    return f"{name} ({nan} NaN, {inf} inf of {a.size} entries, first at {where})"


def _stderr(message: str) -> None:
    print(f"bptt: warning: {message}", file=sys.stderr, flush=True)


class NonFiniteGuard:
    """The check-and-policy object a ``Trainer`` consults before every update (see the module doc)."""

    def __init__(self, policy: str = "stop", *, lr_factor: float = 0.5, max_skips: int = 10,
                 max_rollbacks: int = 5, snapshot_every: int | None = None, warn=_stderr,
                 divergence_factor: float | None = None, divergence_patience: int = 3,
                 divergence_window: int = 50):
        self.policy = check.one_of("policy", policy, POLICIES)
        self.lr_factor = check.positive_float("lr_factor", lr_factor)
        if self.lr_factor >= 1:
            raise ValueError(f"lr_factor must be < 1 (it lowers the learning rate), got {lr_factor}")
        self.max_skips = check.positive_int("max_skips", max_skips)
        self.max_rollbacks = check.positive_int("max_rollbacks", max_rollbacks)
        self.snapshot_every = None if snapshot_every is None else check.positive_int("snapshot_every", snapshot_every)
        self.warn = warn if warn is not None else (lambda message: None)
        self.nonfinite = 0                # non-finite updates seen (all policies)
        self.skipped = 0                  # updates not applied
        self.rollbacks = 0
        self.lr_scale = 1.0               # product of lr_factor over the rollbacks
        self._in_a_row = 0
        self._this_step = 0
        self._pending = None              # rollback: the message of the update that triggered it
        self._snapshot = None
        # divergence with finite numbers: the loss per step far above its running median
        self.divergence_factor = None if divergence_factor is None else \
            check.positive_float("divergence_factor", divergence_factor)
        if self.divergence_factor is not None and self.divergence_factor <= 1:
            raise ValueError(f"divergence_factor must be > 1, got {divergence_factor}")
        self.divergence_patience = check.positive_int("divergence_patience", divergence_patience)
        self._recent = collections.deque(maxlen=check.positive_int("divergence_window", divergence_window))
        self._streak = 0                  # updates in a row with the loss above the threshold
        self._worst = 0.0

    # ------------------------------------------------------------ per update
    def admit(self, piece, step: int) -> bool:
        """True if this update may be applied; False if it must not (skip / rollback pending);
        raises NonFiniteError under ``stop`` or past the limits."""
        if self._pending is not None:
            return False                  # a rollback is coming: the rest of this step is void
        problem = self._problem(piece)
        if problem is None:
            self._in_a_row = 0
            problem = self._diverging(piece, step)
            if problem is None:
                return True
            if self.policy != "rollback":           # the weights are bad already: skipping cannot help
                raise NonFiniteError(f"{problem}; stopped before the update (policy {self.policy!r}"
                                     f"{'' if self.policy == 'stop' else ' cannot undo a divergence'}); the last "
                                     f"checkpoint saved before it is kept; lower the learning rate, clip "
                                     f"gradients, or use rollback")
            if self.rollbacks >= self.max_rollbacks:
                raise NonFiniteError(f"{problem}: still diverging after {self.rollbacks} rollbacks "
                                     f"(max_rollbacks={self.max_rollbacks}); stopping")
            self._streak = 0
            self._pending = problem
            return False
        self.nonfinite += 1
        self._this_step += 1
        message = f"{problem} at step {step}"
        if self.policy == "stop":
            raise NonFiniteError(f"{message}; stopped before the update (non-finite policy 'stop'; "
                                 f"'skip' or 'rollback' go on; or lower the learning rate, clip gradients)")
        if self.policy == "skip":
            self.skipped += 1
            self._in_a_row += 1
            if self._in_a_row >= self.max_skips:
                raise NonFiniteError(f"{message}: {self._in_a_row} non-finite updates in a row, stopping "
                                     f"(non-finite policy 'skip', max_skips={self.max_skips}); lower the "
                                     f"learning rate or try 'rollback'")
            self.warn(f"{message}: update skipped")
            return False
        if self.rollbacks >= self.max_rollbacks:
            raise NonFiniteError(f"{message}: still non-finite after {self.rollbacks} rollbacks "
                                 f"(max_rollbacks={self.max_rollbacks}, learning rate scaled by {self.lr_scale:g}); "
                                 f"stopping")
        self.skipped += 1
        self._pending = message
        return False

    # ------------------------------------------------------------ divergence
    def threshold(self) -> float | None:
        """The loss per step above which an update counts as diverging: factor x the running median
        of the recent sound updates' losses (None until there is one, or when detection is off)."""
        if self.divergence_factor is None or not self._recent:
            return None
        # The median is floored at 0.1 nats per step: a model that has memorised its text (loss ~0.001)
        # must not be called diverging over a bump to 0.05 -- measured on a repetitive text, where 1e-3
        # stopped a healthy run; a diverging one (lr 1e6: 1e7 per step) is far above any floor.
        return self.divergence_factor * max(statistics.median(self._recent), 0.1)

    @property
    def suspect(self) -> bool:
        """True while the loss is above the threshold (not yet for ``divergence_patience`` updates):
        the weights may be diverging, so ``bptt train`` does not checkpoint them."""
        return self._streak > 0

    def judge(self, loss_per_step: float, floor: float | None = None) -> str | None:
        """Why a model with this loss per step must not be saved as good (None: it may be). ``floor``:
        the limit is at least this (for a loss not measured like the running median's)."""
        limit = self.threshold()
        if limit is not None and floor is not None:
            limit = max(limit, floor)
        if not math.isfinite(loss_per_step):
            return f"its loss is {loss_per_step}"
        if limit is not None and loss_per_step > limit:
            return (f"its loss {loss_per_step:.4g} per step is more than {self.divergence_factor:g}x the running "
                    f"median {limit / self.divergence_factor:.4g}")
        return None

    def _diverging(self, piece, step: int) -> str | None:
        if self.divergence_factor is None:
            return None
        t0, t1 = piece.span
        per_step = piece.loss / max(t1 - t0, 1)
        limit = self.threshold()
        if limit is None or per_step <= limit:
            self._streak, self._worst = 0, 0.0
            self._recent.append(per_step)          # only sound losses make the median
            return None
        self._streak += 1
        self._worst = max(self._worst, per_step)
        if self._streak < self.divergence_patience:
            return None
        self.nonfinite += 1
        self._this_step += 1
        return (f"the loss diverged at step {step}: {per_step:.4g} per step, more than {self.divergence_factor:g}x "
                f"its running median {limit / self.divergence_factor:.4g} for {self._streak} updates in a row")

    @staticmethod
    def _problem(piece) -> str | None:
        if not math.isfinite(piece.loss):
            return f"the loss became {piece.loss}"
        name = first_nonfinite(piece.grads)
        if name is not None:
            return f"the gradient of {describe_nonfinite(name, piece.grads[name])} is not finite"
        return None

    # ------------------------------------------------------------ per step
    def begin_step(self, trainer) -> None:
        self._this_step = 0
        if self.policy == "rollback" and self._snapshot is None:
            self._snapshot = _Snapshot(trainer)          # the state before the first step of this run

    def end_step(self, trainer) -> dict:
        """After the step's bookkeeping: roll back if an update asked to, reset a non-finite carried
        state, snapshot when due. Returns the fields for the step's metrics line.

        A finite gradient can still overflow in the update (a huge learning rate in float32): the
        weights are checked here too; ``rollback`` undoes such a step, the other policies stop."""
        if self._pending is None:
            bad = first_nonfinite(trainer.net.params)
            if bad is not None:
                self.nonfinite += 1
                self._this_step += 1
                message = (f"parameter {describe_nonfinite(bad, trainer.net.params[bad])} became non-finite in the "
                           f"update of step {trainer.step} (its gradient was finite: the step overflowed)")
                if self.policy != "rollback":
                    raise NonFiniteError(f"{message}; stopping (non-finite policy {self.policy!r}); lower the "
                                         f"learning rate")
                if self.rollbacks >= self.max_rollbacks:
                    raise NonFiniteError(f"{message}; still non-finite after {self.rollbacks} rollbacks "
                                         f"(max_rollbacks={self.max_rollbacks}, learning rate scaled by "
                                         f"{self.lr_scale:g}); stopping")
                self._pending = message
        if self._pending is not None:
            message, self._pending = self._pending, None
            self._snapshot.restore(trainer)
            self.rollbacks += 1
            self.lr_scale *= self.lr_factor
            if trainer.schedule is None:                  # with a schedule the Trainer applies lr_scale
                trainer.optimizer.lr *= self.lr_factor
            self.warn(f"{message}: rolled back to step {trainer.step} with the learning rate scaled by "
                      f"{self.lr_scale:g} (rollback {self.rollbacks} of at most {self.max_rollbacks})")
        else:
            state = trainer.state
            parts = state if isinstance(state, tuple) else (state,)
            if state is not None and any(not np.isfinite(p).all() for p in parts):
                trainer.state = None                      # start the next batch from zero, not from NaN
            if self.policy == "rollback" and self.snapshot_every and trainer.step % self.snapshot_every == 0 \
                    and not self.suspect:                 # never snapshot weights that may be diverging
                self._snapshot = _Snapshot(trainer)
        return {"nonfinite": self._this_step, "skipped_updates": self.skipped, "rollbacks": self.rollbacks,
                "lr_scale": self.lr_scale}

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"policy": self.policy, "nonfinite": self.nonfinite, "skipped": self.skipped,
                "rollbacks": self.rollbacks, "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict | None) -> None:
        if not state:
            return
        self.nonfinite = int(state.get("nonfinite", 0))
        self.skipped = int(state.get("skipped", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self._snapshot = None             # the next step's begin_step snapshots the resumed state


class _Snapshot:
    """Copies of everything a rollback restores: the weights, the Trainer's state (step, optimiser
    slots and hyper-parameters, schedule, carried state, RNG) and the dropout generator."""

    def __init__(self, trainer):
        net = trainer.net
        self.params = {name: p.copy() for name, p in net.params.items()}
        state = trainer.state_dict()                      # optimizer slots are copies already
        carried = state["carried_state"]
        if carried is not None:
            state["carried_state"] = tuple(p.copy() for p in carried) if isinstance(carried, tuple) else carried.copy()
        self.trainer_state = state
        rng = getattr(net, "dropout_rng", None)
        self.dropout_rng = None if rng is None else rng.bit_generator.state

    def restore(self, trainer) -> None:
        for name, p in trainer.net.params.items():
            p[...] = self.params[name]                    # in place: optimisers and layers hold these arrays
        state = dict(self.trainer_state)
        state.pop("numerics", None)                       # the guard's own counters move on
        trainer.load_state_dict(state)
        if self.dropout_rng is not None:
            trainer.net.dropout_rng.bit_generator.state = self.dropout_rng


def loss_per_step(net, batch) -> float:
    """E / T of ``net`` on ``batch`` (inputs, targets[, mask]) from the zero state, in evaluation mode:
    no dropout mask drawn, no RNG advanced, no state kept -- so checking a model before saving it
    changes nothing about the run (a resumed run stays bit-identical)."""
    from ..losses import compute_loss

    inputs, targets = batch.inputs, batch.targets
    was_training = getattr(net, "training", False)
    if hasattr(net, "eval"):
        net.eval()
    try:
        fwd = net.forward(inputs)
        loss, _ = compute_loss(net.loss, fwd.outputs, targets, getattr(batch, "mask", None))
    finally:
        if was_training:
            net.train()
    return float(loss) / max(1, np.asarray(inputs).shape[0])


def unsound_to_save(trainer, loss_of_model) -> str | None:
    """Why the trainer's current weights must not overwrite the last good checkpoint, or None.
    ``loss_of_model(net) -> loss per step`` (e.g. ``loss_per_step`` on the batch just trained; under
    MPI run on rank 0 and broadcast, so every rank decides alike). Only with divergence detection on."""
    guard = trainer.numerics
    if guard is None or getattr(guard, "divergence_factor", None) is None:
        return None
    if guard.suspect:
        return f"its loss is far above the running median ({guard._streak} updates in a row)"
    # The probe starts from the zero state, training batches of a text stream from the carried one: a
    # model that memorised its text trains at ~0.001 per step but probes at several nats per step
    # (measured: 7.6 on a 20-symbol text), so the probe is also allowed factor x the uniform guess
    # log(O). A diverged model (lr 1e6: 1e7 per step) is far above both.
    net = trainer.net
    floor = None
    if getattr(net, "loss", None) == "cross_entropy" and getattr(net, "output_size", None):
        floor = guard.divergence_factor * math.log(max(net.output_size, 2))
    return guard.judge(loss_of_model(net), floor=floor)
