"""Train recurrent networks on the long-range tasks (``bptt.tasks``) and compare them with the
trivial baseline and with each other: the engine behind ``bptt experiment TASK``.

    result = run_experiment("adding", cells=["rnn", "irnn", "lstm"], seq_lens=[100],
                            seeds=[0, 1], steps=2000, out_dir="runs/adding")

For every (cell, T, seed) a fresh network trains on fresh batches from the task's generator
(never the same sequence twice, as in the papers) and is scored every ``eval_every`` steps
on one fixed held-out set with the task's own measure (``task.score``: the paper's units,
not bptt's summed-over-time loss). Writes ``result.json``, ``results.md`` (a table) and
``curves.png`` (learning curves with the baseline) to ``out_dir``.

Cells ("variants"): ``rnn`` (the lecture's tanh RNN), ``irnn`` (ReLU + identity recurrent
init, Le et al. 2015), ``lstm`` (forget-gate bias 1), ``lstm-forget3`` (forget-gate bias 3),
``gru``, ``rnn-sgd`` (tanh RNN, plain SGD, no clipping: the "before" of Pascanu et al. 2013),
``rnn-sgd-clip`` (+ gradient-norm clipping) and ``rnn-sgd-clip-omega`` (+ their regulariser
Omega, ``bptt.training.regularizers``) -- see ``VARIANTS``. Variants that name their own optimiser (the
``*-sgd*`` ones) use ``sgd_lr``.

Seeds: seed s builds the network with ``Network(seed=s)``, draws step k's batch from
``default_rng([s, 1, k])`` and the evaluation set from ``default_rng([s, 2, T])``: a run repeats
exactly given its seed.
"""

from __future__ import annotations

import inspect
import json
import os
import time

import numpy as np

from .. import validation as check
from ..io.files import write_text
from ..network import Network
from ..tasks import get_task

# name -> Network options and training overrides
VARIANTS = {
    "rnn": {"net": {"cell": "rnn", "nonlinearity": "tanh"}},
    "irnn": {"net": {"cell": "rnn", "nonlinearity": "relu", "recurrent_init": "identity"}},
    "lstm": {"net": {"cell": "lstm"}},
    "lstm-forget3": {"net": {"cell": "lstm", "forget_bias": 3.0}},      # forget gate starts at sigma(3) = 0.95
    "gru": {"net": {"cell": "gru"}},
    # Pascanu, Mikolov & Bengio 2013's comparison: plain SGD, SGD + clipping (SGD-C), and
    # SGD + clipping + their regulariser Omega (SGD-CR); learning rate ``sgd_lr``.
    "rnn-sgd": {"net": {"cell": "rnn", "nonlinearity": "tanh"}, "train": {"optimizer": "sgd", "clip": None}},
    "rnn-sgd-clip": {"net": {"cell": "rnn", "nonlinearity": "tanh"}, "train": {"optimizer": "sgd"}},
    "rnn-sgd-clip-omega": {"net": {"cell": "rnn", "nonlinearity": "tanh"},
                           "train": {"optimizer": "sgd", "omega": True}},
}

# Per-task defaults sized for a 2-core CPU in minutes (the papers train far longer: see
# docs/results.md, which also gives the flags of every measured run).
_COMMON = dict(lr=1e-3, optimizer="adam", clip=1.0, sgd_lr=0.3, omega=2.0)
DEFAULTS = {
    "adding": {**_COMMON, "T": 100, "hidden": 32, "batch": 32, "steps": 3000, "lr": 1e-2},
    "adding-hs": {**_COMMON, "T": 100, "hidden": 32, "batch": 32, "steps": 3000, "lr": 1e-2},
    "temporal-order": {**_COMMON, "T": 50, "hidden": 50, "batch": 32, "steps": 10000},
    "copying": {**_COMMON, "T": 20, "hidden": 64, "batch": 32, "steps": 3000, "lr": 1e-2},
    "latch": {**_COMMON, "T": 50, "hidden": 8, "batch": 32, "steps": 1000, "lr": 3e-2},
    "two-sequence": {**_COMMON, "T": 50, "hidden": 8, "batch": 32, "steps": 1000, "lr": 3e-2},
}
OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def make_network(task, variant: str, hidden: int, seed: int, dtype: str = "float32") -> Network:
    """The network for ``variant``; IRNN falls back to setting W = I by hand when this
    Network has no ``recurrent_init`` option."""
    options = dict(VARIANTS[check.one_of("cell", variant, tuple(VARIANTS))]["net"])
    identity = False
    if "recurrent_init" not in inspect.signature(Network).parameters:
        identity = options.pop("recurrent_init", None) == "identity"   # older Network: do it by hand
    net = Network(task.input_size, hidden, task.output_size, loss=task.loss, seed=seed, dtype=dtype, **options)
    if identity:
        for name, p in net.params.items():
            if name.endswith(".W"):
                p[...] = np.eye(hidden, dtype=p.dtype)                 # IRNN: h_t = relu(U x_t + h_{t-1} + b)
    return net


def make_optimizer(name: str, params: dict, lr: float):
    from ..training import optim
    name = check.one_of("optimizer", name, tuple(OPTIMIZER_CLASSES))
    cls = getattr(optim, OPTIMIZER_CLASSES[name], None)
    if cls is None:
        raise ValueError(f"optimizer {name!r} is not available in this version of bptt.training.optim")
    return cls(params, lr=lr)


def train_one(task_name: str, variant: str, T: int, seed: int, *, steps: int, hidden: int, batch: int,
              lr: float, optimizer: str = "adam", clip: float | None = 1.0, eval_every: int = 50,
              eval_batch: int = 500, dtype: str = "float32", sgd_lr: float = 0.3, omega: float = 2.0,
              progress=None) -> dict:
    """Train one network; returns {"cell", "T", "seed", "curve", "final", "solved", "seconds"}.

    curve: "step"; since the previous point, "train_loss" (bptt's loss on the training batches,
    mean), "max_grad_norm" (global norm before clipping, max) and "clipped_fraction" (share of
    steps where clipping fired); and every key of ``task.score`` on the held-out set -- at step 0
    and every ``eval_every`` steps."""
    from ..training.clip import make_clipper
    from ..training.train import Trainer, TrainingDiverged
    task = get_task(task_name)
    overrides = VARIANTS[check.one_of("cell", variant, tuple(VARIANTS))].get("train", {})
    if overrides.get("optimizer", optimizer) != optimizer:
        optimizer, lr = overrides["optimizer"], sgd_lr
    clip = overrides["clip"] if "clip" in overrides else clip
    omega = omega if overrides.get("omega") else 0.0                  # strength alpha of Omega
    steps = check.positive_int("steps", steps)
    eval_every = check.positive_int("eval_every", eval_every)
    net = make_network(task, variant, hidden, seed, dtype)
    trainer = Trainer(net, make_optimizer(optimizer, net.params, lr),
                      clip=None if clip is None else make_clipper("global-norm", clip),   # Pascanu et al., Alg. 1
                      truncation=OmegaBPTT(omega) if omega else None)                     # None: full BPTT
    eval_inputs, eval_targets, eval_mask = task.generate(T, eval_batch, np.random.default_rng([seed, 2, T]))

    def batches(step: int):
        """Fresh sequences every step, a function of (seed, step) alone."""
        return task.generate(T, batch, np.random.default_rng([seed, 1, step]))

    curve: dict = {"step": [], "train_loss": [], "max_grad_norm": [], "clipped_fraction": []}
    losses, norms, clipped = [], [], []                                      # since the last point

    def evaluate(trained) -> float:
        metrics = task.score(trained.forward(eval_inputs).outputs, eval_targets, eval_mask)
        curve["step"].append(trainer.step)
        curve["train_loss"].append(float(np.mean(losses)) if losses else None)
        curve["max_grad_norm"].append(float(np.max(norms)) if norms else None)          # before clipping
        curve["clipped_fraction"].append(float(np.mean(clipped)) if clipped else None)  # steps clipped
        for pending in (losses, norms, clipped):
            pending.clear()
        for key, value in metrics.items():
            curve.setdefault(key, []).append(value)
        if progress is not None and trainer.step:
            progress(variant, T, seed, trainer.step, metrics)
        return metrics[task.metric]

    start = time.perf_counter()
    evaluate(net)                                                            # step 0: the untrained network
    diverged_at = None
    try:
        trainer.fit(batches, steps, evaluate=evaluate, eval_every=eval_every,
                    on_step=lambda _, summary: (losses.append(summary.loss), norms.append(summary.grad_norm),
                                                clipped.append(summary.clipped > 0)))
    except TrainingDiverged:
        diverged_at = trainer.step + 1           # plain SGD without clipping can blow up: a result, not a crash
    if curve["step"][-1] != trainer.step:
        evaluate(net)
    metrics = {key: curve[key][-1] for key in curve if key not in ("step", "train_loss", "max_grad_norm",
                                                                  "clipped_fraction")}
    return {"cell": variant, "T": T, "seed": seed, "curve": curve, "final": metrics,
            "solved": bool(task.solved(metrics)), "seconds": time.perf_counter() - start,
            "optimizer": optimizer, "lr": lr, "clip": clip, "omega": omega, "parameters": net.num_parameters,
            "diverged_at": diverged_at}


class OmegaBPTT:
    """Full BPTT whose gradient includes Pascanu et al.'s regulariser: E + alpha Omega, with
    alpha d+Omega/dW added to each W gradient (``bptt.training.regularizers``). A truncation mode for
    the Trainer (``run(net, inputs, targets, mask, state, update)``)."""

    name = "full+omega"

    def __init__(self, strength: float):
        self.strength = check.positive_float("omega", strength)

    def run(self, net, inputs, targets, mask, state, update):
        from ..training.regularizers import loss_and_grads_with_omega
        from ..training.truncation import Piece
        T = inputs.shape[0]
        loss, grads, _ = loss_and_grads_with_omega(net, inputs, targets, mask, state, strength=self.strength)
        update(Piece(loss, grads, (0, T), (0, T)))
        return loss, None

    def describe(self) -> dict:
        return {"mode": self.name, "omega": self.strength}


def summarise(task, runs: list) -> list:
    """One row per (cell, T): mean and sd over seeds of the headline metric, solved count."""
    rows = []
    keys = sorted({(r["cell"], r["T"]) for r in runs}, key=lambda k: (k[1], list(VARIANTS).index(k[0])))
    for cell, T in keys:
        group = [r for r in runs if r["cell"] == cell and r["T"] == T]
        values = np.array([r["final"][task.metric] for r in group])
        rows.append({"cell": cell, "T": T, "seeds": [r["seed"] for r in group],
                     "values": values.tolist(), "mean": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                     "solved": int(sum(r["solved"] for r in group)), "runs": len(group),
                     "diverged": int(sum(r.get("diverged_at") is not None for r in group)),
                     "baseline": task.baseline(T)[task.metric],
                     "seconds": float(np.mean([r["seconds"] for r in group])),
                     "clipped_fraction": _mean_of(group, "clipped_fraction", np.mean),
                     "max_grad_norm": _mean_of(group, "max_grad_norm", np.max)})
    return rows


def _mean_of(group: list, key: str, reduce) -> float | None:
    """Seed mean of ``reduce`` over a run's curve[key] (None where a run has no such record)."""
    values = [reduce([v for v in r["curve"].get(key, []) if v is not None]) for r in group
              if any(v is not None for v in r["curve"].get(key, []))]
    return float(np.mean(values)) if values else None


def run_experiment(task_name: str, *, cells, seq_lens, seeds, out_dir, steps=None, hidden=None, batch=None,
                   lr=None, optimizer=None, clip="default", eval_every=None, eval_batch=500,
                   dtype="float32", sgd_lr=None, omega=None, command: str = "", progress=None) -> dict:
    """Every (cell, T, seed) in turn; writes result.json, results.md, curves.png to out_dir
    (None: write nothing). With an out_dir, matplotlib is checked before any training."""
    if out_dir is not None:
        from ..diagnostics.plots import require_matplotlib
        require_matplotlib("the experiment's figure (curves.png)")
    task = get_task(task_name)
    d = DEFAULTS[task_name]
    settings = {"steps": steps or d["steps"], "hidden": hidden or d["hidden"], "batch": batch or d["batch"],
                "lr": lr or d["lr"], "optimizer": optimizer or d["optimizer"],
                "clip": d["clip"] if clip == "default" else clip, "eval_batch": eval_batch, "dtype": dtype,
                "sgd_lr": sgd_lr or d["sgd_lr"], "omega": d["omega"] if omega is None else omega}
    settings["eval_every"] = eval_every or max(1, settings["steps"] // 30)
    if not cells:
        raise ValueError("cells must name at least one of " + ", ".join(VARIANTS))
    for cell in cells:
        check.one_of("cell", cell, tuple(VARIANTS))
    runs = []
    for T in seq_lens:
        for cell in cells:
            for seed in seeds:
                runs.append(train_one(task_name, cell, T, seed, progress=progress, **settings))
    result = {"task": task_name, "reference": task.reference, "metric": task.metric,
              "lower_is_better": task.lower_is_better, "settings": settings, "command": command,
              "cells": list(cells), "seq_lens": list(seq_lens), "seeds": list(seeds),
              "baseline": {str(T): task.baseline(T) for T in seq_lens},
              "summary": summarise(task, runs), "runs": runs,
              "machine": {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count()}}
    if out_dir is not None:
        from .task_report import write_figure, write_table
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, "result.json"), result)
        write_text(os.path.join(out_dir, "results.md"), write_table(result))
        write_figure(result, os.path.join(out_dir, "curves.png"))
    return result


def write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=1, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
