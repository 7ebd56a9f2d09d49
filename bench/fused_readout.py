"""A/B of the fused readout + cross-entropy kernel (kernels/readout_loss.py) against the numpy path,
one training step (Network.loss_and_grads), interleaved repeat by repeat, one thread, float32:

    python bench/fused_readout.py [--repeats 15] [--sizes cell,I,H,B,T ...]

Prints the median step time of each and their ratio; Network.FUSED_READOUT_WORK (T B H O) is the
size below which the fused path is used by default."""

import argparse

import numpy as np

from bptt.benchmark import harness

DEFAULT_SIZES = ["rnn,65,64,1,25", "lstm,65,64,1,25", "gru,65,64,1,25", "rnn,65,128,1,25", "rnn,65,64,1,64",
                 "rnn,65,256,1,25", "rnn,200,100,1,25"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="cell,I,H,B,T (I = O)")
    args = p.parse_args()
    pinned = harness.pin_threads(1)  # noqa: F841  (keeps the thread limits alive)
    harness.check_threads(1)
    import bptt.network as network
    from bptt import Network
    print("1 thread, float32, numba kernels; step = loss_and_grads; median of interleaved repeats")
    for spec in args.sizes:
        cell, *dims = spec.split(",")
        I, H, B, T = map(int, dims)
        net = Network(I, H, I, cell=cell, dtype="float32", seed=0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        y = rng.integers(0, I, (T, B))

        def runner(limit):
            def step():
                saved, network.FUSED_READOUT_WORK = network.FUSED_READOUT_WORK, limit
                try:
                    net.loss_and_grads(x, y)
                finally:
                    network.FUSED_READOUT_WORK = saved
            return step
        results = harness.interleaved({"fused": runner(10 ** 12), "numpy": runner(-1)}, args.repeats)
        fused, plain = results["fused"]["median_s"], results["numpy"]["median_s"]
        print(f"{cell:5s} (I=O, H, B, T) = {(I, H, B, T)!s:20s} T B H O = {T * B * H * I:>9,d}  "
              f"fused {fused * 1e6:8.1f} us  numpy {plain * 1e6:8.1f} us  fused / numpy {fused / plain:.2f}", flush=True)


if __name__ == "__main__":
    main()
