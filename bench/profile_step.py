"""Where a bptt training step spends its time: each part timed interleaved with the others
(and with the pure GEMMs it must do), medians, one thread by default.

    python bench/profile_step.py 256 1024 64 32 [--cell rnn] [--threads 1] [--repeats 9]

Prints ms per part and the share of the full step. Parts overlap (the full step includes
the others), so shares do not sum to 100%. Interpret on a quiet machine or with many repeats.
"""

import argparse

import numpy as np

from bptt.benchmark import harness


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("size", nargs=4, type=int, metavar=("I", "H", "B", "T"))
    p.add_argument("--cell", default="rnn", choices=("rnn", "lstm", "gru"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    pinned = harness.pin_threads(args.threads)  # noqa: F841  (keeps the thread limits alive)

    from bptt.losses import compute_loss
    from bptt.network import Network

    I, H, B, T = args.size
    G = {"rnn": 1, "gru": 3, "lstm": 4}[args.cell]
    net = Network(I, H, I, cell=args.cell, dtype="float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.integers(0, I, (T, B))
    layer, readout = net.layers[0], net.readout
    state0 = layer.zero_state(B)
    fwd = net.forward(x)
    h, _, cache = layer.forward(x, state0)
    _, dz = compute_loss("cross_entropy", fwd.outputs, y)
    dh = readout.backward(dz, h, {k: np.zeros_like(v) for k, v in readout.params.items()})
    layer_grads = {k: np.zeros_like(v) for k, v in layer.params.items()}

    W, U = layer.params["W"], layer.params["U"]
    hB = rng.standard_normal((B, H)).astype(np.float32)
    WTc = np.ascontiguousarray(W.T)                 # as the layers use it (see docs/performance.md)
    gB = rng.standard_normal((B, G * H)).astype(np.float32)
    outB, outB2 = np.empty((B, G * H), np.float32), np.empty((B, H), np.float32)
    hall = rng.standard_normal((T * B, H)).astype(np.float32)
    gall = rng.standard_normal((T * B, G * H)).astype(np.float32)
    x2 = x.reshape(T * B, I)

    parts = {
        "full step (loss_and_grads)": lambda: net.loss_and_grads(x, y),
        "layer forward": lambda: layer.forward(x, state0),
        "layer backward": lambda: layer.backward(dh, None, cache, layer_grads),
        "readout forward": lambda: readout.forward(h),
        "loss (softmax CE)": lambda: compute_loss("cross_entropy", fwd.outputs, y),
        "readout backward": lambda: readout.backward(dz, h, {k: np.zeros_like(v) for k, v in readout.params.items()}),
        "ideal: T x (h W^T) forward GEMMs": lambda: [np.dot(hB, WTc, out=outB) for _ in range(T)],
        "ideal: T x (da W) backward GEMMs": lambda: [np.dot(gB, W, out=outB2) for _ in range(T)],
        "ideal: dW = da^T h (one GEMM)": lambda: gall.T @ hall,
        "ideal: x U^T + dU + dx": lambda: (x2 @ U.T, gall.T @ x2, gall @ U),
        "ideal: tanh over T B G H": lambda: np.tanh(gall),
    }
    results = harness.interleaved(parts, args.repeats)
    full = results["full step (loss_and_grads)"]["median_s"]
    print(f"{args.cell} I={I} H={H} B={B} T={T}, {args.threads} thread(s), median of {args.repeats}")
    for name, r in results.items():
        print(f"  {name:36s} median {r['median_s'] * 1e3:9.3f} ms {r['median_s'] / full:6.1%}  min {r['min_s'] * 1e3:9.3f} ms  (spread {r['spread']:.0%})")


if __name__ == "__main__":
    main()
