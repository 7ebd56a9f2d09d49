"""The table and the figure of a task experiment (``run_experiment``'s result dict).

matplotlib is imported lazily, with the Agg backend (no display needed).
"""

from __future__ import annotations

import numpy as np

LOG_SCALE_METRICS = ("mse", "cross_entropy")


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.3f}"


def write_table(result: dict) -> str:
    """Markdown: one row per (cell, T) with mean +- sd over seeds, per-seed values, solved count,
    the share of steps where clipping fired and the largest gradient norm seen (seed means)."""
    s = result["settings"]
    lines = [f"# {result['task']}: {result['reference']}", "",
             f"Metric: `{result['metric']}` on {s['eval_batch']} held-out sequences "
             f"({'lower' if result['lower_is_better'] else 'higher'} is better), after {s['steps']} steps of "
             f"batch {s['batch']}, hidden {s['hidden']}, {s['optimizer']} lr {s['lr']}, "
             f"clip {s['clip'] if s['clip'] is not None else 'off'}, {s['dtype']}"
             + (f"; the rnn-sgd* rows: SGD lr {s.get('sgd_lr')}, Omega strength {s.get('omega')}"
                if any(c.startswith("rnn-sgd") for c in result["cells"]) else "") + ".", ""]
    if result.get("command"):
        lines += ["Command:", "", "```", result["command"], "```", ""]
    lines += [f"| cell | T | {result['metric']} (mean ± sd) | per seed | solved | trivial baseline "
              "| steps clipped | max grad norm | s / run |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in result["summary"]:
        per_seed = ", ".join(_fmt(v) for v in row["values"])
        clipped = "-" if row.get("clipped_fraction") is None else f"{100 * row['clipped_fraction']:.0f}%"
        norm = "-" if row.get("max_grad_norm") is None else f"{row['max_grad_norm']:.3g}"
        diverged = f" ({row['diverged']} diverged)" if row.get("diverged") else ""
        lines.append(f"| {row['cell']} | {row['T']} | {_fmt(row['mean'])} ± {_fmt(row['std'])} | {per_seed} | "
                     f"{row['solved']}/{row['runs']}{diverged} | {_fmt(row['baseline'])} | {clipped} | {norm} "
                     f"| {row['seconds']:.0f} |")
    lines.append("")
    return "\n".join(lines)


def write_figure(result: dict, path: str) -> None:
    """Learning curves (held-out metric vs step), one panel per T: thin lines per seed, a
    thick line for the seed median (robust to one seed's spike), the trivial baseline dashed.
    On log axes the top is cut at 30 x the baseline so a transient blow-up keeps the rest legible."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metric = result["metric"]
    seq_lens = result["seq_lens"]
    fig, axes = plt.subplots(1, len(seq_lens), figsize=(5.2 * len(seq_lens) + 3.2, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, T in zip(axes[0], seq_lens):
        for index, cell in enumerate(result["cells"]):
            runs = [r for r in result["runs"] if r["cell"] == cell and r["T"] == T]
            color = colors[index % len(colors)]
            for run in runs:
                ax.plot(run["curve"]["step"], run["curve"][metric], color=color, alpha=0.3, linewidth=0.8)
            # runs that stopped early (solved, diverged, out of --budget) are shorter: the median
            # covers the steps every seed reached
            n = min(len(run["curve"]["step"]) for run in runs)
            while n and len({tuple(run["curve"]["step"][:n]) for run in runs}) > 1:
                n -= 1
            steps = runs[0]["curve"]["step"][:n]
            values = np.array([run["curve"][metric][:n] for run in runs], dtype=float)
            label = (f"{cell} (median of {len(runs)} seeds; thin: each seed)" if len(runs) > 1
                     else f"{cell} (seed {runs[0].get('seed', '?')})")
            ax.plot(steps, np.median(values, axis=0), color=color, linewidth=2, label=label)
        baseline = result["baseline"][str(T)][metric]
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1,
                   label="trivial baseline (its value in each panel's title)")
        if metric in LOG_SCALE_METRICS:
            ax.set_yscale("log")
            ax.set_ylim(top=30 * baseline)
        ax.set_title(f"{result['task']}, T = {T} (baseline {metric} {_fmt(baseline)})", fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"held-out {metric}")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # one legend for the figure, outside the panels so it hides no curve
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    from ..io.files import atomic_output
    try:
        with atomic_output(path, suffix=".png") as tmp:  # never a half-written figure
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
