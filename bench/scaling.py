"""How the cost of a bptt training step grows with T, B and H (and torch's, side by side).

    python bench/scaling.py --out docs/performance_scaling.png [--json bench/results/scaling.json]

From the base size (I=O=65, H=128, B=32, T=64) one of T, B, H varies at a time; each point
is the median of interleaved repeats (bptt, torch) at one pinned thread. The plot shows
milliseconds per step (log-log) and bptt's GFLOP/s. Expect time ~ T (the recurrence is
sequential), ~ B only once B is large enough to fill a GEMM, and ~ H^2 for large H.
"""

import argparse
import json
import os
import sys
import tempfile

BASE = {"I": 65, "H": 128, "B": 32, "T": 64}
SWEEPS = {"T": [8, 16, 32, 64, 128, 256], "B": [1, 4, 16, 32, 64, 128], "H": [32, 64, 128, 256, 512]}


def measure(cell: str, repeats: int, peers: list) -> dict:
    from bptt.benchmark import harness
    pinned = harness.pin_threads(1)  # noqa: F841  (keeps the limits alive)
    from bptt.benchmark.peers import PEERS, Problem, bptt_contestant

    out = {}
    for axis, values in SWEEPS.items():
        out[axis] = []
        for value in values:
            size = dict(BASE, **{axis: value})
            problem = Problem(cell, size["I"], size["H"], size["B"], size["T"])
            contestants = {"bptt": bptt_contestant(problem)}
            weights = {n: v.copy() for n, v in contestants["bptt"].step.net.params.items()}
            for peer in peers:
                try:
                    contestants[peer] = PEERS[peer](problem, weights)
                except ImportError:
                    pass
            times = harness.interleaved({n: c.step for n, c in contestants.items()}, repeats, budget_s=5)
            point = {axis: value, "flops": contestants["bptt"].flops,
                     **{f"{n}_ms": t["median_s"] * 1e3 for n, t in times.items()}}
            out[axis].append(point)
            print(f"{axis}={value:4d}: " + ", ".join(f"{n} {t['median_s'] * 1e3:8.3f} ms" for n, t in times.items()),
                  flush=True)
    return out


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (axis, points) in zip(axes, results.items()):
        xs = [p[axis] for p in points]
        for name, style in (("bptt", "o-"), ("torch", "s--")):
            key = f"{name}_ms"
            if all(key in p for p in points):
                ax.loglog(xs, [p[key] for p in points], style, label=f"{name} ms/step")
        ax2 = ax.twinx()
        ax2.semilogx(xs, [p["flops"] / p["bptt_ms"] / 1e6 for p in points], "g:", label="bptt GFLOP/s")
        ax2.set_ylabel("bptt GFLOP/s", color="g")
        others = ", ".join(f"{k}={v}" for k, v in BASE.items() if k != axis)
        ax.set_title(f"vary {axis} ({others})", fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(axis)
        ax.set_ylabel("ms per training step")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("bptt training step (rnn, float32, 1 thread): cost against T, B and H")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", default="rnn", choices=("rnn", "lstm", "gru"))
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--peers", nargs="*", default=["torch"])
    p.add_argument("--out", default="docs/performance_scaling.png", help="PNG to write")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--from-json", help="re-plot numbers saved by --json instead of measuring")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as handle:
            results = json.load(handle)["results"]
        plot(results, args.out)
        print(f"wrote {args.out}")
        return 0
    results = measure(args.cell, args.repeats, args.peers)
    plot(results, args.out)
    print(f"wrote {args.out}")
    if args.json:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.json)), suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump({"base": BASE, "cell": args.cell, "results": results}, handle, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
