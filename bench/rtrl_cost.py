"""What RTRL costs beside BPTT: the same exact gradient (tests/test_rtrl.py), very different bills.

    python bench/rtrl_cost.py [--cell rnn] [--repeats 5]

For a tanh RNN (vocabulary V = 16, batch B = 1, float64, one BLAS thread) and several H and T it
prints the median time per call of ``net.loss_and_grads`` (BPTT) and ``bptt.rtrl.loss_and_grads``
(RTRL), calls alternating in one process, their ratio, the ratio the operation counts predict
(RTRL ~ S^2 P per step, BPTT ~ P per step: S^2 = H^2 for the RNN), and the peak memory each call
allocates (tracemalloc; numpy reports its buffers to it). RTRL's memory does not grow with T; BPTT's does.
"""

import argparse
import time
import tracemalloc

import numpy as np

import bptt
from bptt import rtrl


def peak_bytes(fn) -> int:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", default="rnn", choices=rtrl.RTRL_CELLS)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--sizes", default="8,16,32,64", help="hidden sizes H, comma-separated")
    p.add_argument("--lengths", default="25,100", help="sequence lengths T, comma-separated")
    args = p.parse_args()
    from threadpoolctl import threadpool_info, threadpool_limits
    limits = threadpool_limits(1)  # noqa: F841  (kept alive for the run)
    blas = ", ".join(f"{i['internal_api']} {i.get('version')}" for i in threadpool_info()) or "unknown"
    print(f"cell {args.cell}, float64, B = 1, V = 16, 1 thread ({blas}); medians of {args.repeats}")
    print(f"{'H':>4} {'T':>5} {'P':>7} {'BPTT ms':>9} {'RTRL ms':>9} {'RTRL/BPTT':>10} {'S^2 (pred.)':>11} "
          f"{'BPTT peak KiB':>14} {'RTRL peak KiB':>14}")
    V, B = 16, 1
    for H in (int(s) for s in args.sizes.split(",")):
        for T in (int(s) for s in args.lengths.split(",")):
            net = bptt.Network(V, H, V, cell=args.cell, seed=0)
            rng = np.random.default_rng(0)
            x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
            calls = {"bptt": lambda: net.loss_and_grads(x, y), "rtrl": lambda: rtrl.loss_and_grads(net, x, y)}
            times = {k: [] for k in calls}
            for r in range(args.repeats):
                for name in (("bptt", "rtrl") if r % 2 else ("rtrl", "bptt")):   # alternate who goes first
                    start = time.perf_counter()
                    calls[name]()
                    times[name].append(time.perf_counter() - start)
            net.workspaces.clear()                      # BPTT's reused scratch counts as its memory
            peaks = {k: peak_bytes(calls[k]) / 1024 for k in calls}
            tb, tr = (np.median(times[k]) * 1e3 for k in ("bptt", "rtrl"))
            S = net.layers[0].zero_state(1)
            S = sum(s.shape[1] for s in S)
            print(f"{H:>4} {T:>5} {net.num_parameters:>7} {tb:>9.2f} {tr:>9.2f} {tr / tb:>10.1f} {S * S:>11} "
                  f"{peaks['bptt']:>14.0f} {peaks['rtrl']:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
