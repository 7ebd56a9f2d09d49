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
init, Le et al. 2015), ``lstm`` (forget-gate bias 1; 5 on adding-hs, latch and two-sequence:
``TASK_VARIANTS``), ``lstm-forget3`` (forget-gate bias 3), ``lstm-input-3`` (forget bias 5,
input-gate bias -3), ``gru``, ``lnlstm`` (``cell="lstm", layer_norm=True``), ``mingru``,
``minlstm``, and Pascanu, Mikolov & Bengio 2013's three in their setup (sparse
N(0, 0.01^2) W at spectral radius 0.95, N(0, 0.01^2) U and V, zero biases, SGD lr 0.01, batch 20):
``rnn-sgd`` (no clipping), ``rnn-sgd-clip`` (clipping at norm 1 with their NaN/inf fallback,
``bptt.training.clip.clip_with_fallback``) and ``rnn-sgd-clip-omega`` (+ their regulariser Omega,
``bptt.training.regularizers``) -- see ``VARIANTS``. Variants that name their own optimiser (the
``*-sgd*`` ones) always use it, with ``sgd_lr``; an explicit ``batch`` overrides their 20.

Stopping (``stop_when_solved``): as the papers, checked every ``eval_every`` updates, stop when
solved by the task's criterion on their test size (``PAPER_TEST_SIZE``), report the updates it
took ("solved_at"); ``budget`` bounds each run's seconds.

Seeds: seed s builds the network with ``Network(seed=s)``, draws step k's batch from
``default_rng([s, 1, k])`` and the evaluation set from ``default_rng([s, 2, T])``: a run repeats
exactly given its seed.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import validation as check
from ..io.files import write_text
from ..network import Network
from ..tasks import get_task

# Pascanu, Mikolov & Bengio 2013's setup, from their code (pascanur/trainingRNNs, RNN.py, "smart_tanh"):
# W sparse N(0, 0.01^2) with 15 non-zero weights per unit rescaled to spectral radius 0.95; U, V
# N(0, 0.01^2); biases 0; plain SGD, lr 0.01, batch 20; clipping at norm 1 with their NaN/inf fallback.
PASCANU_NET = {"cell": "rnn", "nonlinearity": "tanh", "recurrent_init": "sparse", "sparsity": 15,
               "spectral_radius": 0.95, "input_init": "normal", "readout_init": "normal"}
PASCANU_TRAIN = {"optimizer": "sgd", "lr": 0.01, "batch": 20, "clip_mode": "global-norm+fallback"}

# name -> Network options and training overrides ("train": the variant's own optimizer, lr, batch,
# clipping; an explicit flag still wins over lr (--sgd-lr) and batch (--batch))
VARIANTS = {
    "rnn": {"net": {"cell": "rnn", "nonlinearity": "tanh"}},
    "irnn": {"net": {"cell": "rnn", "nonlinearity": "relu", "recurrent_init": "identity"}},
    "lstm": {"net": {"cell": "lstm"}},
    "lstm-forget3": {"net": {"cell": "lstm", "forget_bias": 3.0}},      # forget gate starts at sigma(3) = 0.95
    # forget gate sigma(5) = 0.993 (close to the 1997 LSTM's gate-less carousel), input gate sigma(-3) = 0.05:
    # a long latch needs the cell to ignore the noise it would otherwise write every step
    "lstm-input-3": {"net": {"cell": "lstm", "forget_bias": 5.0, "input_bias": -3.0}},
    "gru": {"net": {"cell": "gru"}},
    # the cells since 2014 (issue 17): layer-normalised LSTM (Ba et al. 2016) and the diagonal linear
    # recurrences minGRU / minLSTM (Feng et al. 2024), which parity tells apart (Grazzi et al. 2024)
    "lnlstm": {"net": {"cell": "lstm", "layer_norm": True}},
    "mingru": {"net": {"cell": "mingru"}},
    "minlstm": {"net": {"cell": "minlstm"}},
    # Pascanu, Mikolov & Bengio 2013's comparison in their setup: plain SGD, SGD + clipping (SGD-C), and
    # SGD + clipping + their regulariser Omega (SGD-CR); learning rate ``sgd_lr`` (default theirs, 0.01).
    "rnn-sgd": {"net": PASCANU_NET, "train": {**PASCANU_TRAIN, "clip": None}},
    "rnn-sgd-clip": {"net": PASCANU_NET, "train": PASCANU_TRAIN},
    "rnn-sgd-clip-omega": {"net": PASCANU_NET, "train": {**PASCANU_TRAIN, "omega": True}},
}

# Per task, what the "lstm" variant changes: with forget bias 1 (f = 0.73) a value stored 50 steps
# back keeps 0.73^50 ~ 1.5e-7 of itself, so adding-hs and the latch start with the forget gate
# open, sigma(5) = 0.993 -- the 1997 LSTM had no forget gate at all (f = 1).
TASK_VARIANTS = {
    "adding-hs": {"lstm": {"forget_bias": 5.0}},
    "latch": {"lstm": {"forget_bias": 5.0}},
    "two-sequence": {"lstm": {"forget_bias": 5.0}},
}

# Stopping as the papers do: the task's criterion (``task.solved``) on their test size. Checked
# every ``eval_every`` updates on the held-out set; when that set meets it, a fresh set of this
# size must meet it too (cheap two-stage check: the paper's size every time would cost more than
# training). Pascanu et al. test on 10,000 sequences, H&S 1997 (Table 7) on 2,560.
PAPER_TEST_SIZE = {"temporal-order": 10000, "adding-hs": 2560}

# Per-task defaults sized for a 2-core CPU in minutes (the papers train far longer: see
# docs/results.md, which also gives the flags of every measured run).
_COMMON = dict(lr=1e-3, optimizer="adam", clip=1.0, sgd_lr=None, omega=2.0)
DEFAULTS = {
    "adding": {**_COMMON, "T": 100, "hidden": 32, "batch": 32, "steps": 3000, "lr": 1e-2},
    "adding-hs": {**_COMMON, "T": 100, "hidden": 32, "batch": 32, "steps": 3000, "lr": 1e-2},
    "temporal-order": {**_COMMON, "T": 50, "hidden": 50, "batch": 32, "steps": 10000},
    "copying": {**_COMMON, "T": 20, "hidden": 64, "batch": 32, "steps": 3000, "lr": 1e-2},
    "latch": {**_COMMON, "T": 50, "hidden": 8, "batch": 32, "steps": 1000, "lr": 3e-2},
    "two-sequence": {**_COMMON, "T": 50, "hidden": 8, "batch": 32, "steps": 1000, "lr": 3e-2},
    "parity": {**_COMMON, "T": 50, "hidden": 32, "batch": 32, "steps": 3000, "lr": 1e-2},
}
OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def network_options(task_name: str, variant: str, hidden: int | None = None) -> dict:
    """The Network options of ``variant`` on this task (``TASK_VARIANTS`` applied); a sparse W
    keeps at most ``hidden`` weights per unit (quick runs with 8 units: all 8)."""
    options = dict(VARIANTS[check.one_of("cell", variant, tuple(VARIANTS))]["net"])
    options.update(TASK_VARIANTS.get(task_name, {}).get(variant, {}))
    if "sparsity" in options and hidden is not None:
        options["sparsity"] = min(options["sparsity"], hidden)
    return options


def make_network(task, variant: str, hidden: int, seed: int, dtype: str = "float32") -> Network:
    """The network for ``variant`` on ``task``."""
    options = network_options(task.name, variant, hidden)
    return Network(task.input_size, hidden, task.output_size, loss=task.loss, seed=seed, dtype=dtype, **options)


def make_optimizer(name: str, params: dict, lr: float):
    from ..training import optim
    name = check.one_of("optimizer", name, tuple(OPTIMIZER_CLASSES))
    cls = getattr(optim, OPTIMIZER_CLASSES[name], None)
    if cls is None:
        raise ValueError(f"optimizer {name!r} is not available in this version of bptt.training.optim")
    return cls(params, lr=lr)


def resolve(task_name: str, variant: str, *, batch=None, lr=None, optimizer=None, clip="default",
            sgd_lr=None, omega=None) -> dict:
    """The training settings of one run: an explicit value > the variant's own > the task's default.
    Variants that name their optimiser (rnn-sgd*) always use it, with ``sgd_lr`` (whatever
    ``optimizer`` says: passing --optimizer sgd must not turn their rate into --lr)."""
    d = DEFAULTS[task_name]
    own = VARIANTS[check.one_of("cell", variant, tuple(VARIANTS))].get("train", {})
    out = {"batch": batch or own.get("batch") or d["batch"], "optimizer": optimizer or d["optimizer"],
           "lr": lr or d["lr"], "clip": d["clip"] if clip == "default" else clip, "clip_mode": "global-norm",
           "omega": 0.0}
    if "optimizer" in own:
        out["optimizer"] = own["optimizer"]
        out["lr"] = sgd_lr or own.get("lr") or d["sgd_lr"] or d["lr"]
    if "clip" in own:
        out["clip"] = own["clip"]                                      # rnn-sgd: no clipping at all
    if out["clip"] is not None:
        out["clip_mode"] = own.get("clip_mode", "global-norm")
    else:
        out["clip_mode"] = "none"
    if own.get("omega"):
        out["omega"] = d["omega"] if omega is None else omega          # strength alpha of Omega
    return out


def train_one(task_name: str, variant: str, T: int, seed: int, *, steps: int, hidden: int, batch: int | None = None,
              lr: float | None = None, optimizer: str | None = None, clip="default", eval_every: int = 50,
              eval_batch: int = 500, dtype: str = "float32", sgd_lr: float | None = None,
              omega: float | None = None, stop_when_solved: bool = False, test_size: int | None = None,
              budget: float | None = None, progress=None) -> dict:
    """Train one network; returns {"cell", "T", "seed", "curve", "final", "solved", "solved_at", "seconds", ...}.

    Settings: ``resolve`` (explicit > the variant's > the task's). ``stop_when_solved``: stop at the
    first check where the held-out set meets ``task.solved`` and a fresh set of ``test_size``
    sequences (default ``PAPER_TEST_SIZE`` or ``eval_batch``) does too; "solved_at" is that update
    (None if never), "sequences_to_solve" = solved_at x batch. ``budget``: seconds of training
    at most (the run stops, as it is, when they are spent; "budget_hit" says so).

    curve: "step"; since the previous point, "train_loss" (bptt's loss on the training batches,
    mean), "max_grad_norm" (global norm before clipping, max) and "clipped_fraction" (share of
    steps where clipping fired); and every key of ``task.score`` on the held-out set -- at step 0
    and every ``eval_every`` steps."""
    from ..training.clip import make_clipper, make_fallback_clipper
    from ..training.train import Trainer, TrainingDiverged
    task = get_task(task_name)
    s = resolve(task_name, variant, batch=batch, lr=lr, optimizer=optimizer, clip=clip, sgd_lr=sgd_lr, omega=omega)
    batch, lr, optimizer, clip, omega = s["batch"], s["lr"], s["optimizer"], s["clip"], s["omega"]
    batch = check.positive_int("batch", batch)
    steps = check.positive_int("steps", steps)
    eval_every = check.positive_int("eval_every", eval_every)
    if budget is not None:
        budget = check.positive_float("budget", budget)
    test_size = check.positive_int("test_size", test_size or PAPER_TEST_SIZE.get(task_name, eval_batch))
    net = make_network(task, variant, hidden, seed, dtype)
    if s["clip_mode"] == "global-norm+fallback":       # Pascanu's code: rescale, and 0.02 W when the norm is NaN/inf
        clipper = make_fallback_clipper(clip, net.params)
    else:
        clipper = None if clip is None else make_clipper("global-norm", clip)          # Pascanu et al., Alg. 1
    trainer = Trainer(net, make_optimizer(optimizer, net.params, lr), clip=clipper,
                      truncation=OmegaBPTT(omega) if omega else None,                  # None: full BPTT
                      # the fallback clipper handles a NaN/inf gradient itself; only a NaN loss ends the run
                      numerics=None if s["clip_mode"] == "global-norm+fallback" else "stop")
    eval_inputs, eval_targets, eval_mask = task.generate(T, eval_batch, np.random.default_rng([seed, 2, T]))

    def batches(step: int):
        """Fresh sequences every step, a function of (seed, step) alone."""
        return task.generate(T, batch, np.random.default_rng([seed, 1, step]))

    curve: dict = {"step": [], "train_loss": [], "max_grad_norm": [], "clipped_fraction": []}
    losses, norms, clipped = [], [], []                                      # since the last point
    solved_at, confirmations = None, []

    def confirmed(trained) -> dict:
        """The criterion on ``test_size`` fresh sequences (new ones at every check), 1,000 at a time."""
        rng = np.random.default_rng([seed, 3, T, trainer.step])
        parts, done = [], 0
        while done < test_size:
            n = min(1000, test_size - done)
            inputs, targets, mask = task.generate(T, n, rng)
            parts.append((n, task.score(trained.forward(inputs).outputs, targets, mask)))
            done += n
        return {key: float(sum(n * m[key] for n, m in parts) / test_size) for key in parts[0][1]}

    def evaluate(trained) -> float:
        nonlocal solved_at
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
        if stop_when_solved and solved_at is None and trainer.step and task.solved(metrics):
            test = confirmed(trained)
            confirmations.append({"step": trainer.step, **test})
            if task.solved(test):
                solved_at = trainer.step
        return metrics[task.metric]

    start = time.perf_counter()
    evaluate(net)                                                            # step 0: the untrained network
    diverged_at = None
    try:
        trainer.fit(batches, steps, evaluate=evaluate, eval_every=eval_every, time_limit=budget,
                    stop=lambda: solved_at is not None,
                    on_step=lambda _, summary: (losses.append(summary.loss), norms.append(summary.grad_norm),
                                                clipped.append(summary.clipped > 0)))
    except TrainingDiverged:
        diverged_at = trainer.step + 1           # plain SGD without clipping can blow up: a result, not a crash
    if curve["step"][-1] != trainer.step:
        evaluate(net)
    metrics = {key: curve[key][-1] for key in curve if key not in ("step", "train_loss", "max_grad_norm",
                                                                  "clipped_fraction")}
    solved = solved_at is not None if stop_when_solved else task.solved(metrics)
    return {"cell": variant, "T": T, "seed": seed, "curve": curve, "final": metrics,
            "solved": bool(solved), "seconds": time.perf_counter() - start,
            "optimizer": optimizer, "lr": lr, "batch": batch, "clip": clip, "clip_mode": s["clip_mode"],
            "omega": omega, "parameters": net.num_parameters, "net": network_options(task_name, variant, hidden),
            "diverged_at": diverged_at, "steps_done": trainer.step,
            "budget_hit": bool(budget is not None and solved_at is None and diverged_at is None
                               and trainer.step < steps),
            "solved_at": solved_at, "sequences_to_solve": None if solved_at is None else solved_at * batch,
            "test_size": test_size if stop_when_solved else None, "confirmations": confirmations}


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
                     "max_grad_norm": _mean_of(group, "max_grad_norm", np.max),
                     # updates to solve (the papers' measure): per seed, None where not solved
                     "solved_at": [r.get("solved_at") for r in group],
                     "median_updates_to_solve": _median_solved(group)})
    return rows


def _median_solved(group: list) -> float | None:
    """Median of solved_at over the seeds that solved (None if none did)."""
    done = [r["solved_at"] for r in group if r.get("solved_at") is not None]
    return float(np.median(done)) if done else None


def _mean_of(group: list, key: str, reduce) -> float | None:
    """Seed mean of ``reduce`` over a run's curve[key] (None where a run has no such record)."""
    values = [reduce([v for v in r["curve"].get(key, []) if v is not None]) for r in group
              if any(v is not None for v in r["curve"].get(key, []))]
    return float(np.mean(values)) if values else None


def run_experiment(task_name: str, *, cells, seq_lens, seeds, out_dir, steps=None, hidden=None, batch=None,
                   lr=None, optimizer=None, clip="default", eval_every=None, eval_batch=500,
                   dtype="float32", sgd_lr=None, omega=None, stop_when_solved=False, test_size=None,
                   budget=None, command: str = "", progress=None) -> dict:
    """Every (cell, T, seed) in turn; writes result.json, results.md, curves.png to out_dir
    (None: write nothing). With an out_dir, matplotlib is checked before any training.
    ``settings`` holds the task's values; a variant's own batch/lr/clipping (``resolve``) are in each run."""
    if out_dir is not None:
        from ..diagnostics.plots import require_matplotlib
        require_matplotlib("the experiment's figure (curves.png)")
    task = get_task(task_name)
    d = DEFAULTS[task_name]
    given = {"batch": batch, "lr": lr, "optimizer": optimizer, "clip": clip, "sgd_lr": sgd_lr, "omega": omega}
    settings = {"steps": steps or d["steps"], "hidden": hidden or d["hidden"], "batch": batch or d["batch"],
                "lr": lr or d["lr"], "optimizer": optimizer or d["optimizer"],
                "clip": d["clip"] if clip == "default" else clip, "eval_batch": eval_batch, "dtype": dtype,
                "sgd_lr": sgd_lr or PASCANU_TRAIN["lr"], "omega": d["omega"] if omega is None else omega,
                "stop_when_solved": bool(stop_when_solved), "budget": budget,
                "test_size": (test_size or PAPER_TEST_SIZE.get(task_name, eval_batch)) if stop_when_solved else None}
    settings["eval_every"] = eval_every or max(1, settings["steps"] // 30)
    if not cells:
        raise ValueError("cells must name at least one of " + ", ".join(VARIANTS))
    for cell in cells:
        check.one_of("cell", cell, tuple(VARIANTS))
    for key in ("batch", "optimizer", "lr", "clip"):          # what the runs use, where all cells agree
        used = {resolve(task_name, cell, **given)[key] for cell in cells}
        if len(used) == 1:
            settings[key] = used.pop()
    runs = []
    for T in seq_lens:
        for cell in cells:
            for seed in seeds:
                runs.append(train_one(task_name, cell, T, seed, progress=progress, steps=settings["steps"],
                                      hidden=settings["hidden"], eval_every=settings["eval_every"],
                                      eval_batch=eval_batch, dtype=dtype, stop_when_solved=stop_when_solved,
                                      test_size=test_size, budget=budget, **given))
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
