"""A/B of one training step (``net.loss_and_grads``) between an older bptt and this checkout,
in one process, calls alternating, medians (float32, one BLAS thread).

    mkdir -p /tmp/old && git archive 35b12ef src | tar -x -C /tmp/old
    python bench/ab_step.py /tmp/old/src [--cells rnn lstm gru]

Prints old and new median (and minimum) ms per size and new/old.
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np

SIZES = [(65, 64, 1, 25), (65, 128, 32, 64), (65, 512, 64, 64)]   # (I=O, H, B, T)


def load_network_module(src: str):
    """bptt.network from the package under ``src`` (a fresh import each time)."""
    for name in list(sys.modules):
        if name == "bptt" or name.startswith("bptt."):
            del sys.modules[name]
    sys.path.insert(0, src)
    try:
        return importlib.import_module("bptt.network")
    finally:
        sys.path.pop(0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old_src", help="the older package's src/ folder (e.g. from git archive)")
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], choices=("rnn", "lstm", "gru"))
    args = p.parse_args()
    from threadpoolctl import threadpool_limits
    limits = threadpool_limits(1)  # noqa: F841  (kept alive for the run)
    old = load_network_module(args.old_src)
    new = load_network_module(str(Path(__file__).resolve().parents[1] / "src"))
    for cell in args.cells:
        for I, H, B, T in SIZES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            y = rng.integers(0, I, (T, B))
            nets = {"old": old.Network(I, H, I, cell=cell, dtype="float32"),
                    "new": new.Network(I, H, I, cell=cell, dtype="float32")}
            repeats = 300 if B == 1 else (40 if H <= 128 else 7)
            times = {name: [] for name in nets}
            for r in range(repeats):
                for name in (("old", "new") if r % 2 else ("new", "old")):   # alternate who goes first
                    start = time.perf_counter()
                    nets[name].loss_and_grads(x, y)
                    times[name].append(time.perf_counter() - start)
            o, n = (np.median(times[k]) * 1e3 for k in ("old", "new"))
            print(f"{cell} {(I, H, B, T)} old {o:.3f} ms new {n:.3f} ms  new/old {n / o:.3f}  "
                  f"(min {min(times['old']) * 1e3:.3f} / {min(times['new']) * 1e3:.3f})", flush=True)


if __name__ == "__main__":
    main()
