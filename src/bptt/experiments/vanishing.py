"""The vanishing-gradient lab: the lecture's closing question, measured.

    from bptt.experiments.vanishing import run_vanishing
    result = run_vanishing("runs/vanishing", steps=2000, seq_len=100, seeds=(0, 1), quick=False)
    # or:  bptt experiment vanishing --out runs/vanishing --T 100 --steps 2000 --seeds 0,1

Trains, on the adding problem of Le, Jaitly & Hinton (2015) (``bptt.tasks``, form "le":
two marked values in [0, 1] among T, predict their sum at the last step; always answering
1 scores MSE 0.167), under the same budget -- the same steps, batch, hidden size,
optimiser (Adam), learning rate, data and seeds -- every method in ``METHODS``:

    tanh          the lecture's RNN, torch's uniform init, no clipping (the "before")
    tanh+clip     + clipping of the global gradient norm (Pascanu et al. 2013, Alg. 1)
    tanh+orth     + orthogonal recurrent init (every singular value of W is 1)
    tanh+rho1     + W rescaled to spectral radius 1
    tanh+omega    + Pascanu et al.'s regulariser Omega (with clipping: their SGD-CR)
    irnn          ReLU + identity init (Le et al. 2015), with clipping
    lstm, gru     the architectural remedy, with clipping

and measures, on a fixed probe batch, the *lag profile* of the gradient at initialisation
and after training: ||term k of dE_T/dW|| (the lecture's decomposition, see
``bptt.diagnostics``) against the lag tau = T - 1 - k, and the effective memory (the lag
where it falls below 1% of its lag-0 value). Task result: MSE on 1000 held-out sequences.

Writes ``out_dir/vanishing.json`` (everything), ``vanishing.md`` (the table) and
``vanishing.png`` (lag profiles at init and after training, one curve per method).

Sizes are reduced to fit a shared 2-core CPU in minutes (the papers train for 10^5-10^6
steps): hidden 32, batch 32, ``steps`` updates. ``quick=True`` shrinks everything (T=20,
30 steps, hidden 8) for tests. Seeds: seed s builds every network with ``seed=s`` and draws
training batches from ``default_rng([s, 1])``, the held-out set from ``[s, 2]`` and the
probe from ``[s, 3]``: a run repeats exactly.
"""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

from .. import validation as check
from ..training.clip import clip_by_global_norm
from ..diagnostics.decomposition import contribution_norms, effective_memory, lag_profile
from ..diagnostics.spectra import spectrum
from ..network import Network
from ..training.optim import Adam
from ..training.regularizers import loss_and_grads_with_omega
from ..tasks import get_task

# name -> (Network options, clip threshold or None, Omega strength or None).
# IRNN also starts with zero recurrent biases, as in Le et al. 2015 (see ZERO_BIAS).
ZERO_BIAS = ("irnn",)
METHODS = {
    "tanh": ({}, None, None),
    "tanh+clip": ({}, 1.0, None),
    "tanh+orth": ({"recurrent_init": "orthogonal"}, None, None),
    "tanh+rho1": ({"spectral_radius": 1.0}, None, None),
    "tanh+omega": ({}, 1.0, 1.0),
    "irnn": ({"nonlinearity": "relu", "recurrent_init": "identity"}, 1.0, None),
    "lstm": ({"cell": "lstm"}, 1.0, None),
    "gru": ({"cell": "gru"}, 1.0, None),
}
FULL = dict(seq_len=100, steps=2000, hidden=32, batch=32, lr=1e-3, eval_batch=1000, probe_batch=8)
QUICK = dict(seq_len=20, steps=30, hidden=8, batch=8, lr=1e-3, eval_batch=64, probe_batch=2)
FRACTION = 0.01          # effective memory: lag where the profile falls below 1% of lag 0


def _profile(net, probe) -> np.ndarray:
    """Lag profile of dE_T/dW on the probe: one row (many-to-one), folded by lag, lags 0..T-2.

    The last lag (k = 0) is left out: with h_{-1} = 0 its term da_0 (x) h_{-1} is exactly
    zero for every method, which says nothing about the gradient's reach."""
    inputs, targets, mask = probe
    table = contribution_norms(net, inputs, targets, "W", mask=mask)
    return lag_profile(table, reduce="mean")[:-1]


def held_out_set(task, T: int, seed: int, settings: dict):
    """The fixed evaluation sequences of seed ``seed``."""
    return task.generate(T, settings["eval_batch"], np.random.default_rng([seed, 2]))


def trivial_mse(task, T: int, seed: int, settings: dict) -> float:
    """The memoryless predictor (always 1) on the same held-out set: the bar to beat."""
    inputs, targets, mask = held_out_set(task, T, seed, settings)
    return float(task.score(task.trivial_outputs(inputs, targets, mask), targets, mask)[task.metric])


def _radius(net) -> float:
    """Largest spectral radius over the gate blocks of the top layer's W."""
    return float(max(next(iter(spectrum(net).values()))["spectral_radius"]))


def train_method(method: str, seed: int, settings: dict, task, T: int) -> dict:
    """Train one method with one seed; profiles and scores before and after."""
    options, clip, omega = METHODS[method]
    net = Network(task.input_size, settings["hidden"], task.output_size, loss=task.loss, seed=seed,
                  dtype="float64", **options)
    if method in ZERO_BIAS:
        for layer in net.layers:
            layer.params["b"][...] = 0.0
    optimizer = Adam(net.params, lr=settings["lr"])
    train_rng = np.random.default_rng([seed, 1])
    held_out = held_out_set(task, T, seed, settings)
    probe = task.generate(T, settings["probe_batch"], np.random.default_rng([seed, 3]))

    def score() -> float:
        inputs, targets, mask = held_out
        return float(task.score(net.forward(inputs).outputs, targets, mask)[task.metric])

    profile_init, mse_init, rho_init = _profile(net, probe), score(), _radius(net)
    started = time.perf_counter()
    diverged_at, clipped, losses = None, 0, []
    for step in range(1, settings["steps"] + 1):
        inputs, targets, mask = task.generate(T, settings["batch"], train_rng)
        if omega is None:
            loss, grads = net.loss_and_grads(inputs, targets, mask)
        else:
            loss, grads, _ = loss_and_grads_with_omega(net, inputs, targets, mask, strength=omega)
        if not np.isfinite(loss) or not all(np.all(np.isfinite(g)) for g in grads.values()):
            diverged_at = step
            break
        if clip is not None:
            clipped += int(clip_by_global_norm(grads, clip).clipped)
        optimizer.step(grads)
        losses.append(loss)
    seconds = time.perf_counter() - started
    finite = diverged_at is None and all(np.all(np.isfinite(p)) for p in net.params.values())
    profile_final = _profile(net, probe) if finite else np.full(T - 1, np.nan)
    return {"method": method, "seed": seed, "mse_init": mse_init, "mse": score() if finite else float("nan"),
            "mse_trivial": trivial_mse(task, T, seed, settings),
            "diverged_at": diverged_at, "clipped_updates": clipped, "seconds": seconds,
            "rho_init": rho_init, "rho_final": _radius(net) if finite else float("nan"),
            "profile_init": profile_init.tolist(), "profile_final": profile_final.tolist(),
            "memory_init": effective_memory(profile_init, FRACTION),
            "memory_final": effective_memory(profile_final, FRACTION) if finite else None,
            "train_loss_last": float(np.mean(losses[-20:])) if losses else None}


def _reach(profile) -> float:
    """||term at the largest lag (T - 2)|| / ||term at lag 0||: what reaches back to the start."""
    profile = np.asarray(profile, dtype=np.float64)
    return float(profile[-1] / profile[0]) if profile[0] > 0 else float("nan")


def summarise(runs: list, methods) -> list:
    rows = []
    for method in methods:
        group = [r for r in runs if r["method"] == method]
        mse = np.array([r["mse"] for r in group])
        rows.append({"method": method, "seeds": len(group),
                     "mse_mean": float(np.nanmean(mse)) if np.isfinite(mse).any() else float("nan"),
                     "mse_values": mse.tolist(), "diverged": sum(r["diverged_at"] is not None for r in group),
                     "trivial_values": [r.get("mse_trivial") for r in group],
                     "reach_init": float(np.median([_reach(r["profile_init"]) for r in group])),
                     "reach_final": float(np.median([_reach(r["profile_final"]) for r in group])),
                     "memory_init": [r["memory_init"] for r in group],
                     "memory_final": [r["memory_final"] for r in group],
                     "rho_init": float(np.mean([r["rho_init"] for r in group])),
                     "rho_final": float(np.mean([r["rho_final"] for r in group])),
                     "clipped_updates": int(sum(r["clipped_updates"] for r in group)),
                     "seconds": float(np.mean([r["seconds"] for r in group]))})
    return rows


def _fmt(value, digits=3) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "nan"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def _memory(values, T) -> str:
    return ", ".join(f">={T - 1}" if v is None else str(v) for v in values)


def write_table(result: dict) -> str:
    s, T = result["settings"], result["seq_len"]
    lines = [f"# Vanishing gradients on the adding problem (T = {T})", "",
             f"Same budget for every method: {s['steps']} Adam updates (lr {s['lr']}), batch {s['batch']}, "
             f"hidden {s['hidden']}, seeds {result['seeds']}; clipping at global norm 1 where marked. "
             f"MSE on {s['eval_batch']} held-out sequences per seed; always answering 1 scores "
             f"{_fmt(result['baseline'])} in expectation (per seed's set: the always-1 column). Gradient reach = ||term at lag {T - 2}|| / ||term at lag 0|| "
             f"of dE_T/dW on a probe batch of {s['probe_batch']} sequences (median over seeds); effective memory = "
             f"first lag where the term falls below {FRACTION:g} of lag 0 (>= {T - 1}: never within the sequence).",
             "",
             "| method | MSE (mean) | MSE per seed | always-1 per seed | reach at init | reach after | memory at init "
             "| memory after | rho(W) init -> after | clipped updates | s per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["summary"]:
        per_seed = ", ".join(_fmt(v) for v in row["mse_values"])
        diverged = f" ({row['diverged']} diverged)" if row["diverged"] else ""
        trivial = ", ".join(_fmt(v) for v in row.get("trivial_values", []))
        lines.append(f"| {row['method']} | {_fmt(row['mse_mean'])}{diverged} | {per_seed} | {trivial} "
                     f"| {_fmt(row['reach_init'])} "
                     f"| {_fmt(row['reach_final'])} | {_memory(row['memory_init'], T)} | "
                     f"{_memory(row['memory_final'], T)} | {_fmt(row['rho_init'], 2)} -> {_fmt(row['rho_final'], 2)} "
                     f"| {row['clipped_updates']} | {_fmt(row['seconds'], 1)} |")
    return "\n".join(lines) + "\n"


def write_figure(result: dict, path: str) -> str:
    from ..diagnostics.plots import _figure, _integer_ticks, _legend, _positive, _save

    fig = _figure(12.5, 4.2)
    panels = [("profile_init", "at initialisation"), ("profile_final", f"after {result['settings']['steps']} updates")]
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for ax, (key, title) in zip(axes, panels):
        for method in result["methods"]:
            curves = np.array([r[key] for r in result["runs"] if r["method"] == method], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)              # all-NaN lags of diverged runs
                relative = curves / curves[:, :1]                         # each seed relative to its lag 0
                shown = np.exp(np.nanmean(np.log(_positive(relative)), axis=0))   # geometric mean over seeds
            style = "--" if method.startswith("tanh") and method != "tanh" else "-"
            ax.semilogy(np.arange(shown.size), shown, style, label=method)
        ax.axhline(FRACTION, color="gray", linewidth=0.8, linestyle=":",
                   label=f"{FRACTION:g} of lag 0 (effective memory)")
        ax.set_title(f"dE_T/dW by lag, {title}", fontsize=10)
        ax.set_xlabel("lag tau = T - 1 - k")
        ax.set_ylabel("||term k|| / ||term at lag 0||")
        ax.grid(True, which="both", alpha=0.3)
        _integer_ticks(ax.xaxis)
    seeds = len(result["seeds"])
    for ax in axes:
        ax.set_title(ax.get_title() + (f"\n(geometric mean of {seeds} seeds)" if seeds > 1
                                       else f"\n(seed {result['seeds'][0]})"), fontsize=10)
    _legend(axes[1])                                      # one legend, outside the panels: hides no curve
    return _save(fig, path)


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def run_vanishing(out_dir, steps: int | None = None, seq_len: int | None = None, seeds=(0,),
                  quick: bool = False, methods=None, progress=print) -> dict:
    """Train every method of ``METHODS`` (or ``methods``) on the adding problem with each seed.

    out_dir: where vanishing.json / .md / .png go (None: write nothing); steps: Adam updates
    per run (default 2000; quick 30); seq_len: T (default 100; quick 20); seeds: iterable of
    ints; quick: tiny sizes for tests. ``progress``: called with one line per run (None: silent).
    Returns the result dict (settings, per-run numbers and profiles, summary rows). With an
    out_dir, matplotlib is checked before any training."""
    if out_dir is not None:
        from ..diagnostics.plots import require_matplotlib
        require_matplotlib("the vanishing experiment's figure (vanishing.png)")
    settings = dict(QUICK if quick else FULL)
    if steps is not None:
        settings["steps"] = check.positive_int("steps", steps)
    if seq_len is not None:
        settings["seq_len"] = check.positive_int("seq_len", seq_len)
    T = settings["seq_len"]
    if T < 2:
        raise ValueError(f"seq_len must be >= 2 for the adding problem, got {T}")
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be one or more integers >= 0, got {seeds!r}")
    methods = list(METHODS) if methods is None else list(methods)
    for method in methods:
        check.one_of("method", method, tuple(METHODS))
    task = get_task("adding")
    runs = []
    for seed in seeds:
        for method in methods:
            run = train_method(method, seed, settings, task, T)
            runs.append(run)
            if progress is not None:
                progress(f"vanishing: {method:11s} seed {seed}: MSE {run['mse_init']:.4f} -> {run['mse']:.4f}, "
                         f"memory {run['memory_init']} -> {run['memory_final']}, {run['seconds']:.1f} s")
    result = {"task": "adding", "reference": task.reference, "seq_len": T, "seeds": seeds, "methods": methods,
              "settings": settings, "baseline": float(task.baseline(T)[task.metric]), "fraction": FRACTION,
              "runs": runs, "summary": summarise(runs, methods)}
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        _write_text(os.path.join(out_dir, "vanishing.json"), json.dumps(result, indent=1) + "\n")
        _write_text(os.path.join(out_dir, "vanishing.md"), write_table(result))
        write_figure(result, os.path.join(out_dir, "vanishing.png"))
    return result
