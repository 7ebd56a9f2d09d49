"""The default BLAS thread count against fixed 1 and 2 threads, idle and with a CPU hog.

    python bench/threads_default.py                      # the table for docs/performance.md
    python bench/threads_default.py --repeats 5 --sizes rnn:128:32 --json out.json

For each condition -- "idle" (nothing started by us; a shared machine is only roughly idle) and
"loaded" (a busy-loop subprocess this script starts, pinned to core 0, and stops afterwards) --
it asks ``bptt.threads.default_threads`` what it would choose *under that condition*, then
times one float32 training step (``net.loss_and_grads``: forward, loss, every gradient) with
the default, 1 and 2 BLAS threads (set through threadpoolctl, ``bptt.set_threads``),
interleaved step by step (the order rotated every round; after each switch one untimed step), and
reports medians and default / best-fixed. Same process, same weights and data for every choice.
Where the default *is* one of the fixed choices the two columns time the same thing: their
difference is the noise of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import bptt  # noqa: E402
from bptt import threads  # noqa: E402

HOG = "import os\ntry:\n    os.sched_setaffinity(0, {0})\nexcept (AttributeError, OSError):\n    pass\nwhile True:\n    pass\n"
# cell:hidden:batch[:layers]; I = O = 65 (the char model's vocabulary), T = 64
DEFAULT_SIZES = ["rnn:128:32", "lstm:128:32:2", "rnn:512:64"]


def parse_size(text):
    parts = text.split(":")
    cell, hidden, batch = parts[0], int(parts[1]), int(parts[2])
    layers = int(parts[3]) if len(parts) > 3 else 1
    return cell, hidden, batch, layers


def problem(cell, hidden, batch, layers, T=64, vocab=65, seed=0):
    net = bptt.Network(vocab, hidden, vocab, num_layers=layers, cell=cell, seed=seed, dtype="float32")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, size=(T, batch))
    y = rng.integers(0, vocab, size=(T, batch))
    return net, x, y


def time_step(net, x, y, inner=1):
    """Median of ``inner`` consecutive steps (seconds)."""
    times = []
    for _ in range(inner):
        t0 = time.perf_counter()
        net.loss_and_grads(x, y)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(size, repeats):
    cell, hidden, batch, layers = size
    net, x, y = problem(cell, hidden, batch, layers)
    default, why = threads.default_threads(cell, hidden, batch)        # decided under the current load
    choices = {"default": default, "1": 1, "2": 2}
    for n in (1, 2):                                                   # warm-up (numba compile, buffers)
        bptt.set_threads(n)
        net.loss_and_grads(x, y)
    samples = {k: [] for k in choices}
    keys = list(choices)
    for r in range(repeats):                                           # interleaved rounds, order rotated
        for key in keys[r % 3:] + keys[:r % 3]:
            bptt.set_threads(choices[key])
            # one untimed step first: OpenBLAS's threads keep spinning for a while after a call, so a
            # step right after a 2-thread step would pay for the previous choice's spin
            net.loss_and_grads(x, y)
            samples[key].append(time_step(net, x, y))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    best = min(medians["1"], medians["2"])
    return {"size": f"{cell} {layers}x{hidden} B={batch} T=64", "default_threads": default, "why": why,
            "ms": {k: 1e3 * v for k, v in medians.items()}, "default_over_best": medians["default"] / best}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="cell:hidden:batch[:layers]")
    parser.add_argument("--repeats", type=int, default=11,
                        help="interleaved rounds per size and condition (one step per choice per round: "
                             "fine interleaving, so that a burst of another job's work hits every choice alike)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes]
    rows = []
    for condition in ("idle", "loaded"):
        hog = None
        if condition == "loaded":
            hog = subprocess.Popen([sys.executable, "-c", HOG])
            time.sleep(1.0)                                            # let it take its core
        try:
            for size in sizes:
                row = measure(size, args.repeats)
                row["condition"] = condition
                row["idle_cores_seen"] = round(threads.idle_cores(), 2)      # after the size, for the record
                row["loadavg_1min"] = os.getloadavg()[0]
                rows.append(row)
                print(f"{condition:6s} {row['size']:24s} default={row['default_threads']} "
                      f"({row['why']}): " + "  ".join(f"{k} {v:.1f} ms" for k, v in row["ms"].items())
                      + f"  default/best {row['default_over_best']:.2f}", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    blas = threads.current_threads()
    header = (f"float32, one training step (forward + loss + every gradient), median of {args.repeats} "
              f"interleaved rounds (one step per choice each); BLAS: "
              f"{', '.join(sorted({i.get('internal_api', '?') for i in _info()}))}; kernels: "
              f"{bptt.kernels.describe()}; {os.cpu_count()} cores; Python {platform.python_version()}; "
              f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    print()
    print(header)
    print()
    print("| condition | size | default threads (why) | default ms | 1 thread ms | 2 threads ms | default / best "
          "| idle cores after | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['condition']} | {r['size']} | {r['default_threads']} ({r['why']}) | {r['ms']['default']:.1f} | "
              f"{r['ms']['1']:.1f} | {r['ms']['2']:.1f} | {r['default_over_best']:.2f} | {r['idle_cores_seen']:.1f} "
              f"| {r['loadavg_1min']:.1f} |")
    if args.json:
        from bptt.io.files import write_text
        write_text(args.json, json.dumps({"header": header, "rows": rows}, indent=1))
    worst = max(r["default_over_best"] for r in rows)
    print(f"\nworst default / best fixed: {worst:.2f} (goal: <= 1.3)")
    return 0


def _info():
    try:
        from threadpoolctl import threadpool_info
        return [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        return []


if __name__ == "__main__":
    sys.exit(main())
