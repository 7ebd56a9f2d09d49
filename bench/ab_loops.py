"""A/B: the LSTM/GRU training step (``net.loss_and_grads``) with the time loops compiled
(kernels/lstm.py, kernels/gru.py ``*_loop``: numpy's own gemm called from numba) against the
per-step Python loop around the same step kernels, interleaved in one process, float32.

    python bench/ab_loops.py --cells lstm gru [--sizes 0 1 2 3] [--repeats 21] [--threads 1]

Prints per cell and size the median of each and their ratio (loops / steps: below 1, compiling
the loop is faster), and the largest gradient difference between the two (0 where numpy's gemm
gives the same bits from both call sites; at B = 1 numpy's np.dot calls gemv, the loops gemm).
"""

import argparse
import time

import numpy as np

from bptt import kernels
from bptt.benchmark import harness

SIZES = [(65, 64, 1, 25), (65, 128, 32, 64), (65, 512, 64, 64), (256, 1024, 64, 32)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=("lstm", "gru"))
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N",
                   help="indices into the size list (I=O, H, B, T): " + ", ".join(map(str, SIZES)))
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--budget", type=float, default=15.0, help="seconds per row before fewer repeats (min 5)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    pinned = harness.pin_threads(args.threads)  # noqa: F841  (keeps the thread limits alive)
    harness.check_threads(args.threads)
    from bptt.network import Network

    if not kernels.loops_enabled("float32"):
        raise SystemExit("ab_loops: the compiled loops are not available here (numba, or numpy's gemm, missing)")
    sizes = SIZES if args.sizes is None else [SIZES[i] for i in args.sizes]
    print(f"float32, {args.threads} thread(s), {kernels.describe()}; medians, interleaved")
    print(f"{'cell':5s} {'(I=O, H, B, T)':22s} {'steps ms':>10s} {'loops ms':>10s} {'ratio':>7s}  max |grad diff|  repeats")
    for cell in args.cells:
        for I, H, B, T in sizes:
            net = Network(I, H, I, cell=cell, dtype="float32")
            rng = np.random.default_rng(0)
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            y = rng.integers(0, I, (T, B))
            times = {"steps": [], "loops": []}
            grads = {}
            for mode in times:                       # warm-up: compile, fill the workspace
                kernels.set_loops(mode == "loops")
                grads[mode] = {k: v.copy() for k, v in net.loss_and_grads(x, y)[1].items()}
            diff = max(float(np.max(np.abs(grads["loops"][k] - grads["steps"][k]))) for k in grads["steps"])
            began = time.perf_counter()
            for r in range(args.repeats):
                for mode in (list(times) if r % 2 == 0 else list(times)[::-1]):
                    kernels.set_loops(mode == "loops")
                    t0 = time.perf_counter()
                    net.loss_and_grads(x, y)
                    times[mode].append(time.perf_counter() - t0)
                if r >= 4 and time.perf_counter() - began > args.budget:
                    break
            kernels.set_loops(True)
            a, b = np.median(times["steps"]), np.median(times["loops"])
            print(f"{cell:5s} {str((I, H, B, T)):22s} {a * 1e3:10.3f} {b * 1e3:10.3f} {b / a:7.2f}  {diff:15.3g}  "
                  f"{len(times['steps'])}", flush=True)


if __name__ == "__main__":
    main()
