"""A training step on the fast paths, on the reference loops (BPTT_KERNELS=reference) and on the
reference loops with recurrent dropout and zoneout (which always run there), one thread, float32,
interleaved medians:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/reference_cost.py [--size 65 128 32 64]
"""

import argparse

import numpy as np

from bptt.benchmark import harness


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", nargs=4, type=int, default=(65, 128, 32, 64), metavar=("I", "H", "B", "T"))
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    pinned = harness.pin_threads(1)  # noqa: F841
    harness.check_threads(1)
    from bptt import Network, kernels
    I, H, B, T = args.size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.integers(0, I, (T, B))
    print(f"(I=O, H, B, T) = {tuple(args.size)}, float32, 1 thread; ms per loss_and_grads (x the fast path's)")
    for cell in ("rnn", "lstm", "gru"):
        fast = Network(I, H, I, cell=cell, dtype="float32", seed=0)
        noisy = Network(I, H, I, cell=cell, dtype="float32", seed=0, zoneout=0.1, recurrent_dropout=0.1)

        def reference():
            with kernels.using("reference"):
                fast.loss_and_grads(x, y)
        times = harness.interleaved({"fast path": lambda: fast.loss_and_grads(x, y), "reference": reference,
                                     "reference + masks": lambda: noisy.loss_and_grads(x, y)}, args.repeats)
        base = times["fast path"]["median_s"]
        print(f"{cell:5s} " + "  ".join(f"{k} {v['median_s'] * 1e3:7.2f} ({v['median_s'] / base:.2f}x)"
                                       for k, v in times.items()), flush=True)


if __name__ == "__main__":
    main()
