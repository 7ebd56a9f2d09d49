"""Success rate against T for Pascanu et al.'s three methods, from the result.json files of
`bptt experiment temporal-order ... --stop-when-solved` runs (docs/results.md, temporal order).

    python docs/results_figures/order_success.py runs/results/torder-*/result.json --out docs/results_figures/order-paper.png

Prints the markdown table (solved / run, updates to solve per seed) and draws the figure:
share of seeds solved against T, one line per method, with the median updates to solve beside
each point. Runs of the same (cell, T, seed) in several files count once (the first).
"""

import argparse
import json

import numpy as np

METHODS = {"rnn-sgd": "SGD", "rnn-sgd-clip": "SGD-C", "rnn-sgd-clip-omega": "SGD-CR"}


def collect(paths):
    runs = {}
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        for run in result["runs"]:
            runs.setdefault((run["cell"], run["T"], run["seed"]), run)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = collect(args.results)
    lengths = sorted({T for _, T, _ in runs})
    print("| method | " + " | ".join(f"T = {T}" for T in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for index, (cell, label) in enumerate(METHODS.items()):
        cells, xs, ys = [], [], []
        for T in lengths:
            group = [r for (c, t, _), r in sorted(runs.items()) if c == cell and t == T]
            if not group:
                cells.append("-")
                continue
            solved = [r["solved_at"] for r in group if r["solved_at"] is not None]
            per_seed = ", ".join(f"{r['solved_at']:,}" if r["solved_at"] is not None
                                 else f"no ({r['steps_done']:,})" for r in group)
            cells.append(f"{len(solved)}/{len(group)}: {per_seed}")
            xs.append(T)
            ys.append(len(solved) / len(group))
            if solved:
                ax.annotate(f"{label}: {int(np.median(solved)) // 1000}k ({len(group)} seeds)",
                            (T, len(solved) / len(group)), fontsize=7, textcoords="offset points",
                            xytext=(4, -12 - 9 * index))
        print(f"| {label} (`{cell}`) | " + " | ".join(cells) + " |")
        if xs:
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("share of seeds solved")
    ax.set_ylim(-0.05, 1.1)
    ax.set_xticks(lengths)
    ax.set_title("temporal order, Pascanu et al.'s setup\n(labels: median updates to solve; "
                 "unsolved runs were stopped by --budget)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
