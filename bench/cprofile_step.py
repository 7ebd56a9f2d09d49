"""cProfile of repeated bptt training steps (tottime order): where Python overhead sits at
small sizes.   python bench/cprofile_step.py 65 64 1 25 [--cell rnn] [--steps 300]"""

import argparse
import cProfile
import pstats

import numpy as np

from bptt.benchmark import harness


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("size", nargs=4, type=int, metavar=("I", "H", "B", "T"))
    p.add_argument("--cell", default="rnn", choices=("rnn", "lstm", "gru"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lines", type=int, default=25)
    args = p.parse_args()
    pinned = harness.pin_threads(1)  # noqa: F841
    from bptt.network import Network

    I, H, B, T = args.size
    net = Network(I, H, I, cell=args.cell, dtype="float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.integers(0, I, (T, B))
    for _ in range(10):
        net.loss_and_grads(x, y)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.steps):
        net.loss_and_grads(x, y)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.lines)


if __name__ == "__main__":
    main()
