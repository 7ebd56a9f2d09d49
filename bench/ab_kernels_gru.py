"""A/B of one GRU training step (``net.loss_and_grads``) on the numba kernel path vs the numpy
path (bptt.kernels), in one process, calls alternating (who goes first alternates too), medians.
float32 (or --dtype float64), one BLAS thread (set OPENBLAS_NUM_THREADS=1 as well, so OpenBLAS
starts no threads).

    OPENBLAS_NUM_THREADS=1 python bench/ab_kernels_gru.py [--repeats-scale 1.0] [--dtype float32] [--ids]

Prints the load average before and after, and per size (I=O, H, B, T) the numpy and numba
medians (and minima) in ms and numba/numpy. The paths are switched with ``kernels.using``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SIZES = [(65, 64, 1, 25), (65, 128, 32, 64), (65, 512, 64, 64)]   # (I=O, H, B, T)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats-scale", type=float, default=1.0, help="multiply the default repeat counts")
    p.add_argument("--variant", default="torch", choices=("torch", "cho"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--ids", action="store_true", help="token-id inputs instead of float features")
    args = p.parse_args()
    from threadpoolctl import threadpool_limits
    limits = threadpool_limits(1)  # noqa: F841  (kept alive for the run)
    from bptt import kernels
    from bptt.network import Network
    with kernels.using("auto"):
        if not kernels.enabled():
            raise SystemExit("numba is not installed: nothing to compare")
    print(f"kernels: {kernels.describe()}; GRU {args.variant}, {args.dtype}, "
          f"{'token ids' if args.ids else 'float inputs'}; load average before: {os.getloadavg()}", flush=True)
    print("| (I=O, H, B, T) | numpy ms | numba ms | numba/numpy | repeats |")
    print("|---|---|---|---|---|")
    for I, H, B, T in SIZES:
        rng = np.random.default_rng(0)
        x = rng.integers(0, I, (T, B)) if args.ids else rng.standard_normal((T, B, I)).astype(args.dtype)
        y = rng.integers(0, I, (T, B))
        net = Network(I, H, I, cell="gru", gru_variant=args.variant, dtype=args.dtype)
        for mode in ("numpy", "numba", "numpy", "numba"):     # warm up both paths (and compile)
            with kernels.using(mode):
                net.loss_and_grads(x, y)
        repeats = max(3, int((400 if B == 1 else (60 if H <= 128 else 12)) * args.repeats_scale))
        times = {"numpy": [], "numba": []}
        for r in range(repeats):
            for mode in (("numpy", "numba") if r % 2 else ("numba", "numpy")):
                with kernels.using(mode):
                    start = time.perf_counter()
                    net.loss_and_grads(x, y)
                    times[mode].append(time.perf_counter() - start)
        a, b = (np.median(times[k]) * 1e3 for k in ("numpy", "numba"))
        print(f"| {(I, H, B, T)} | {a:.3f} (min {min(times['numpy']) * 1e3:.3f}) "
              f"| {b:.3f} (min {min(times['numba']) * 1e3:.3f}) | {b / a:.3f} | {repeats} |", flush=True)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
