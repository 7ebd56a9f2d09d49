"""The training engine: batches in, BPTT, a gradient hook, clipping, an optimiser step, records out.

    trainer = Trainer(net, Adam(net.params, lr=2e-3),
                      clip=make_clipper("global-norm", 5.0),      # or any grads -> ClipReport, or None
                      truncation=Chunked(25),                     # bptt.training.truncation: full/chunked/tbptt/window
                      schedule=make_schedule("constant", 2e-3),   # sets optimizer.lr before each step
                      callbacks=[fn],                             # fn(StepRecord) after every update
                      grad_hook=None,                             # hook(grads) after backward, before clipping
                      metrics_path="run/metrics.jsonl")           # one JSON line per step (append)
    trainer.fit(data, steps=1000, evaluate=fn, eval_every=100)

``data`` may be
  - an object with ``batch(step) -> Batch`` (``bptt.data.TextStreams``, ``bptt.data.ArrayBatches``):
    deterministic in the step number, so a resumed run sees the same batches;
  - a function ``step -> (inputs, targets[, mask])`` or ``Batch``;
  - an iterable or generator yielding ``(inputs, targets[, mask])`` or ``Batch`` (stops when exhausted);
  - a tuple of arrays ``(inputs, targets[, mask])``: the same batch every step.
Inputs are float (T, B, I) or token ids (T, B); targets ids (T, B) for cross-entropy or floats
(T, B, O) for mse; mask (T, B) weights; ``Batch(..., lengths=)`` (B,) for variable-length sequences
(packed, see bptt.layers.packed); many-to-one: ``Network(readout="last" | "mean")`` with (B,) targets.

One *step* is one batch. Inside it the truncation mode makes one or more *updates* (Chunked(k)
makes ceil(T/k)); each update runs, in this order:

    1. forward + BPTT on the piece (the mode's job)            -> grads
    2. ``grad_hook(grads)``   e.g. an MPI all-reduce, in place, before anything looks at them
    3. ``clip(grads)``        in place, returns a ClipReport (how often and how hard: ``ClipStats``)
    4. ``optimizer.step(grads)``
    5. every callback gets a ``StepRecord``: step, update, loss, tokens, lr, grads (after clipping),
       grads_unclipped (a copy, when clipping is on and ``keep_unclipped``), the ClipReport,
       and the truncation ``Piece`` (ForwardPass, BackwardPass, dh = dE/dh_t per layer).

Batches with ``reset=False`` continue from the hidden state the previous batch ended in
(``trainer.state``; streams of text, char-rnn style); no gradient crosses batches.
Everything is deterministic given the seeds: nothing here draws random numbers, except
``trainer.rng`` (seeded, saved in checkpoints) which is there for callbacks that need one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..io.files import LineAppender
from .clip import ClipReport, ClipStats, global_norm
from .numerics import NonFiniteGuard, TrainingDiverged
from .truncation import FullBPTT, Piece


@dataclass
class Batch:
    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray | None = None
    reset: bool = True            # start from the zero state; False: continue from trainer.state
    lengths: np.ndarray | None = None   # (B,) variable-length sequences (packed); None: all T steps


@dataclass
class StepRecord:
    step: int                     # the step (batch) this update belongs to, 1-based
    update: int                   # optimiser updates so far, this one included
    loss: float                   # loss of this update's outputs (summed over time, mean over batch)
    tokens: float                 # outputs counted in that loss (T*B, or the mask's sum)
    lr: float
    grads: dict                   # the gradients the optimiser used (after hook and clipping)
    grad_norm: float              # global norm after the hook, before clipping
    clip: ClipReport | None
    piece: Piece                  # forward / backward / dh / span of this update
    grads_unclipped: dict | None = None
    net: object = None


@dataclass
class StepSummary:
    step: int
    loss: float                   # loss of the whole batch
    tokens: float
    loss_per_token: float
    lr: float
    grad_norm: float              # largest pre-clip norm among this step's updates
    clipped: int                  # updates in this step where clipping fired
    seconds: float
    extra: dict = field(default_factory=dict)


def as_batch(item) -> Batch:
    if isinstance(item, Batch):
        return item
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return Batch(item[0], item[1], item[2] if len(item) == 3 else None)
    raise TypeError(f"a batch must be (inputs, targets), (inputs, targets, mask) or a Batch, got {type(item).__name__}")


class _Source:
    """Adapts every accepted kind of ``data`` to ``get(step) -> Batch or None``."""

    def __init__(self, data):
        self.data = data
        if hasattr(data, "batch") and callable(data.batch):
            self.get = lambda step: as_batch(data.batch(step))
        elif callable(data):
            self.get = lambda step: as_batch(data(step))
        elif isinstance(data, tuple) and len(data) in (2, 3) and isinstance(data[0], np.ndarray):
            fixed = as_batch(data)
            self.get = lambda step: fixed
        elif hasattr(data, "__iter__") or hasattr(data, "__next__"):
            iterator = iter(data)
            self.get = lambda step: (lambda item: None if item is None else as_batch(item))(next(iterator, None))
        else:
            raise TypeError(f"data must have batch(step), be callable, iterable, or a tuple of arrays, "
                            f"got {type(data).__name__}")


class Trainer:
    def __init__(self, net, optimizer, *, clip=None, truncation=None, schedule=None, callbacks=(),
                 grad_hook=None, metrics_path=None, log_every: int = 1, keep_unclipped: bool = False,
                 seed: int = 0, numerics="stop"):
        self.net = net
        self.optimizer = optimizer
        if clip is not None and not callable(clip):
            raise TypeError(f"clip must be a function grads -> ClipReport (see bptt.training.clip.make_clipper), got {clip!r}")
        self.clip = clip
        self.truncation = truncation if truncation is not None else FullBPTT()
        self.schedule = schedule
        self.callbacks = list(callbacks)
        self.grad_hook = grad_hook
        self.metrics_path = metrics_path
        self.log_every = max(1, int(log_every))
        self.keep_unclipped = keep_unclipped
        # bptt.training.numerics.NonFiniteGuard: checks E and dE/dtheta before every update and the weights after it;
        # "stop" (default), "skip", "rollback" or a guard; None: only a non-finite loss raises TrainingDiverged
        if isinstance(numerics, str):
            numerics = NonFiniteGuard(numerics)
        self.numerics = numerics
        self.rng = np.random.default_rng(seed)
        self.step = 0                     # completed steps (batches)
        self.updates = 0                  # optimiser updates
        self.state = None                 # hidden state carried between batches (format of h0)
        self.clip_stats = ClipStats()     # since the start of this process's fit (logged per step)
        self.history: list = []           # evaluations: {"step", "val_loss"}
        self.stopped_early = False        # did the last fit stop on its patience

    # ----------------------------------------------------------------- one step
    def train_step(self, batch) -> StepSummary:
        """One batch: the truncation mode's updates, then bookkeeping. Returns a StepSummary."""
        batch = as_batch(batch)
        net = self.net
        started = time.perf_counter()
        x = net.check_inputs(batch.inputs)
        T, B = x.shape[:2]
        targets = net.check_targets(batch.targets, T, B)
        mask = net.check_mask(batch.mask, T, B)
        lengths = net.check_lengths(batch.lengths, T, B) if hasattr(net, "check_lengths") else None
        if lengths is not None:
            # padded steps count for nothing: in the loss (Network.output_loss) and in the token counts here
            valid = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
            token_weights = valid if mask is None else mask * valid
        else:
            token_weights = mask
        if getattr(net, "pooled", False):          # readout "last"/"mean": one output per sequence
            token_weights = np.ones((1, B)) if mask is None else mask[None]
        state = None if batch.reset else self._carried_state(B)
        if self.numerics is not None:
            self.numerics.begin_step(self)
        if self.schedule is not None:
            self.optimizer.lr = self.schedule.lr(self.step) * (self.numerics.lr_scale if self.numerics else 1.0)
        step_no = self.step + 1
        norms, clipped = [], 0

        def update(piece: Piece) -> None:
            nonlocal clipped
            if self.numerics is None and not math.isfinite(piece.loss):
                raise TrainingDiverged(f"the loss became {piece.loss} at step {step_no}; "
                                       f"try a smaller learning rate or gradient clipping")
            grads = piece.grads
            if self.grad_hook is not None:
                self.grad_hook(grads)
            if self.numerics is not None and not self.numerics.admit(piece, step_no):
                norms.append(float("nan"))            # not applied: no clipping, no optimiser step
                return
            unclipped = None
            report = None
            if self.clip is not None:
                if self.keep_unclipped:
                    unclipped = {k: g.copy() for k, g in grads.items()}
                if getattr(self.clip, "per_token", False):       # bounds d(E/n)/dtheta (bptt.training.clip)
                    report = self.clip(grads, loss_steps=self._loss_steps(piece, mask, B))
                else:
                    report = self.clip(grads)
                self.clip_stats.add(report)
                clipped += int(report.clipped)
                norm = report.norm
            else:
                norm = global_norm(grads)
            norms.append(norm)
            self.optimizer.step(grads)
            self.updates += 1
            if self.callbacks:
                t0, t1 = piece.span
                tokens = float((t1 - t0) * B if token_weights is None else token_weights[t0:t1].sum())
                record = StepRecord(step_no, self.updates, piece.loss, tokens, self.optimizer.lr, grads, norm,
                                    report, piece, unclipped, net)
                for callback in self.callbacks:
                    callback(record)

        if lengths is None:
            loss, final_state = self.truncation.run(net, x, targets, mask, state, update)
        else:
            loss, final_state = self.truncation.run(net, x, targets, mask, state, update, lengths=lengths)
        self.state = final_state
        self.step = step_no
        tokens = float(T * B if token_weights is None else token_weights.sum())
        if getattr(self.truncation, "global_tokens", None) is not None:
            # data-parallel (bptt.training.data_parallel): the loss is already the whole job's; count its batch too
            B, tokens = self.truncation.global_batch, self.truncation.global_tokens
        summary = StepSummary(step_no, float(loss), tokens, float(loss) * B / max(tokens, 1e-12),
                              float(self.optimizer.lr), float(max(norms)), clipped,
                              time.perf_counter() - started)
        if self.numerics is not None:
            summary.extra.update(self.numerics.end_step(self))   # may roll back self.step and the weights
        return summary

    @staticmethod
    def _loss_steps(piece: Piece, mask, batch_size: int) -> float:
        """n of the per-token mean loss E / n: the update's output steps, or its mask's sum / B (E is
        already a mean over the batch). Under MPI with ragged masks each rank sees its own share of
        the mask, so give every rank the same mask pattern there (the CLI uses no mask)."""
        t0, t1 = piece.span
        return float(t1 - t0) if mask is None else float(mask[t0:t1].sum()) / batch_size

    def _carried_state(self, batch_size: int):
        s = self.state
        if s is None:
            return None
        first = s[0] if isinstance(s, tuple) else s
        return s if first.shape[1] == batch_size else None   # batch size changed: start afresh

    # ----------------------------------------------------------------- the loop
    def fit(self, data, steps: int | None = None, *, evaluate=None, eval_every: int = 0, on_step=None,
            time_limit: float | None = None, progress=None, stop=None, patience: int | None = None) -> list:
        """Train until ``self.step`` has advanced by ``steps`` (None: until the data runs out or the
        time limit). ``evaluate(net) -> loss`` runs every ``eval_every`` steps (feeds the schedule's
        ``observe``); ``on_step(trainer, summary)`` after every step (checkpointing);
        ``progress``: an object with ``update(summary)`` and ``close()`` (see ``Progress``);
        ``stop() -> bool`` is asked before every step (``bptt.training.interrupt.StopOnSignal``: Ctrl-C ends
        training between steps, never inside an update). ``patience`` N: stop early once N evaluations in a
        row (``self.history``, so counted across resumes) brought no new lowest loss; ``self.stopped_early``
        says whether it did. Returns the list of StepSummary of this call."""
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, (int, np.integer))
                                     or patience < 1):
            raise ValueError(f"patience must be an integer >= 1 or None, got {patience!r}")
        self.stopped_early = False
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0):
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        if steps is None and time_limit is None and not hasattr(data, "__iter__"):
            raise ValueError("give steps, a time_limit, or data that runs out (an iterable)")
        source = _Source(data)
        target = None if steps is None else self.step + int(steps)
        deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
        summaries = []
        # whole lines or none, never through a symlink, created with its first line (bptt.io.files)
        log = LineAppender(self.metrics_path, lazy=True) if self.metrics_path else None
        try:
            while target is None or self.step < target:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if stop is not None and stop():
                    break
                batch = source.get(self.step)
                if batch is None:
                    break
                summary = self.train_step(batch)
                summaries.append(summary)
                if evaluate is not None and eval_every and self.step % eval_every == 0:
                    val = float(evaluate(self.net))
                    self.history.append({"step": self.step, "val_loss": val})
                    if self.schedule is not None:
                        self.schedule.observe(val)
                    summary.extra["val_loss"] = val
                if log is not None and (self.step % self.log_every == 0 or "val_loss" in summary.extra):
                    log.append(json.dumps(self.metrics_line(summary)))
                if progress is not None:
                    progress.update(summary)
                if on_step is not None:
                    on_step(self, summary)
                if patience is not None and "val_loss" in summary.extra and \
                        self.evaluations_since_best() >= patience:
                    self.stopped_early = True
                    break
        finally:
            if log is not None:
                log.close()
            if progress is not None:
                progress.close()
        return summaries

    def evaluations_since_best(self) -> int:
        """Evaluations in ``self.history`` after the one with the lowest loss (0: the last was the best)."""
        losses = [h["val_loss"] for h in self.history]
        finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
        if not finite:
            return len(losses)
        best = min(finite, key=lambda i: (losses[i], i))     # the first of equal losses
        return len(losses) - 1 - best

    def metrics_line(self, summary: StepSummary) -> dict:
        line = {"step": summary.step, "updates": self.updates, "loss": summary.loss,
                "loss_per_token": summary.loss_per_token, "tokens": summary.tokens, "lr": summary.lr,
                "grad_norm": summary.grad_norm, "clipped": summary.clipped,
                "tokens_per_s": summary.tokens / max(summary.seconds, 1e-9), "seconds": summary.seconds}
        if self.clip is not None:
            line.update(self.clip_stats.summary())
        line.update(summary.extra)
        return line

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything beyond the weights that a bit-identical resume needs (arrays + JSON-ables)."""
        return {"step": self.step, "updates": self.updates, "carried_state": self.state,
                "optimizer": self.optimizer.state_dict(),
                "schedule": None if self.schedule is None else self.schedule.state_dict(),
                "rng": self.rng.bit_generator.state, "history": list(self.history),
                "numerics": None if self.numerics is None else self.numerics.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.updates = int(state.get("updates", 0))
        self.state = state.get("carried_state")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])
        if state.get("rng") is not None:
            self.rng.bit_generator.state = state["rng"]
        self.history = list(state.get("history", []))
        if self.numerics is not None:
            self.numerics.load_state_dict(state.get("numerics"))


class Progress:
    """A progress display: tqdm on a terminal (imported lazily), plain lines otherwise.

    Shows the step, the loss per token, the latest validation loss (kept after each evaluation),
    tokens/s, the elapsed time and the time left. With a step total (``total``) the bar counts steps
    and the time left is the smaller of the step-rate estimate and what is left of ``time_limit``;
    with a time limit alone the bar counts the seconds of that budget."""

    def __init__(self, total: int | None, every: int = 50, stream=None, use_tqdm: bool | None = None,
                 time_limit: float | None = None):
        import sys

        self.stream = stream if stream is not None else sys.stderr
        self.total, self.every, self.time_limit = total, max(1, every), time_limit
        self.started = time.perf_counter()
        self.tokens = 0.0
        self.count = 0
        self.val = None                   # (step, loss) of the latest evaluation
        self.bar = None
        self.by_time = total is None and time_limit is not None
        if use_tqdm is None:
            use_tqdm = hasattr(self.stream, "isatty") and self.stream.isatty()
        if use_tqdm:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                # our own time fields, not tqdm's: its estimate knows nothing of the time budget
                if self.by_time:
                    self.bar = tqdm(total=float(time_limit), file=self.stream, dynamic_ncols=True,
                                    bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}")
                else:
                    self.bar = tqdm(total=total, file=self.stream, dynamic_ncols=True,
                                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps{postfix}")

    def left(self, elapsed: float) -> float:
        """Seconds left: from the step rate (with a total), capped by the time budget (with a limit)."""
        left = float("nan")
        if self.total:
            left = elapsed / max(self.count, 1) * (self.total - self.count)
        if self.time_limit:
            budget = max(0.0, self.time_limit - elapsed)
            left = min(left, budget) if math.isfinite(left) else budget
        return left

    def fields(self, summary: StepSummary, elapsed: float) -> list:
        rate = self.tokens / max(elapsed, 1e-9)
        shown = [f"step {summary.step}", f"loss {summary.loss_per_token:.4f}"]
        if self.val is not None:
            shown.append(f"val {self.val[1]:.4f} (step {self.val[0]})")
        shown += [f"{rate:,.0f} tok/s", f"elapsed {_clock(elapsed)}", f"left {_clock(self.left(elapsed))}"]
        return shown

    def update(self, summary: StepSummary) -> None:
        self.count += 1
        self.tokens += summary.tokens
        elapsed = time.perf_counter() - self.started
        val = summary.extra.get("val_loss")
        if val is not None:
            self.val = (summary.step, val)
        if self.bar is not None:
            self.bar.set_postfix_str("  ".join(self.fields(summary, elapsed)), refresh=False)
            if self.by_time:
                self.bar.update(min(elapsed, self.time_limit) - self.bar.n)
            else:
                self.bar.update(1)
            return
        if self.count % self.every == 0 or val is not None or (self.total and self.count == self.total):
            print("  ".join(self.fields(summary, elapsed)), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def write_json_atomic(path: str, obj) -> None:
    """Small helper for run files: temp file + os.replace."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
