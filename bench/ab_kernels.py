"""A/B: the same training step (``net.loss_and_grads``) on the numpy path and on the numba
kernels (bptt.kernels), interleaved in one process, one BLAS thread by default, float32.

    python bench/ab_kernels.py --cells rnn lstm gru [--repeats 31] [--threads 1] [--dtype float64]

Prints, per cell and size, the median time of each path and their ratio (kernels / numpy:
below 1, the kernels are faster), and checks the two paths' losses agree.
"""

import argparse
import time

import numpy as np

from bptt import kernels
from bptt.benchmark import harness

SIZES = [(65, 64, 1, 25), (65, 128, 32, 64), (65, 512, 64, 64), (256, 1024, 64, 32)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], choices=("rnn", "lstm", "gru"))
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N",
                   help="indices into the size list (I=O, H, B, T): " + ", ".join(map(str, SIZES)))
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--budget", type=float, default=20.0, help="seconds per row before fewer repeats (min 5)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args()
    pinned = harness.pin_threads(args.threads)  # noqa: F841  (keeps the thread limits alive)
    from bptt.network import Network

    sizes = SIZES if args.sizes is None else [SIZES[i] for i in args.sizes]
    print(f"{args.dtype}, {args.threads} thread(s), numpy path vs {kernels.describe()}; medians, interleaved")
    print(f"{'cell':5s} {'(I=O, H, B, T)':22s} {'numpy ms':>10s} {'kernels ms':>11s} {'ratio':>7s}  repeats")
    for cell in args.cells:
        for I, H, B, T in sizes:
            net = Network(I, H, I, cell=cell, dtype=args.dtype)
            rng = np.random.default_rng(0)
            x = rng.standard_normal((T, B, I)).astype(args.dtype)
            y = rng.integers(0, I, (T, B))
            times = {"numpy": [], "numba": []}
            losses = {}
            for mode in times:                       # warm-up: compile, fill the workspace
                with kernels.using(mode):
                    losses[mode] = net.loss_and_grads(x, y)[0]
            began = time.perf_counter()
            for r in range(args.repeats):
                order = list(times) if r % 2 == 0 else list(times)[::-1]
                for mode in order:
                    with kernels.using(mode):
                        t0 = time.perf_counter()
                        net.loss_and_grads(x, y)
                        times[mode].append(time.perf_counter() - t0)
                if r >= 4 and time.perf_counter() - began > args.budget:
                    break
            a, b = np.median(times["numpy"]), np.median(times["numba"])
            assert abs(losses["numpy"] - losses["numba"]) <= 1e-4 * abs(losses["numpy"]), losses
            print(f"{cell:5s} {str((I, H, B, T)):22s} {a * 1e3:10.3f} {b * 1e3:11.3f} {b / a:7.2f}  {len(times['numpy'])}")


if __name__ == "__main__":
    main()
