"""Variable-length batches: what padding costs in bptt and in torch, side by side.

One training step (forward, loss, backward) of a batch whose lengths are uniform in [T/4, T],
against the same batch at full length, in bptt (``loss_and_grads(..., lengths=)``: packed
sequences, layers/packed.py) and in torch (``pack_padded_sequence(enforce_sorted=False)`` +
nn.RNN/LSTM/GRU + nn.Linear + masked cross-entropy + ``backward()``), interleaved in one process,
medians of repeats, float32, BLAS and torch on the same thread count.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/packed_sequences.py [--threads 1] [--repeats 15]

Ratios: "packed / full" below 1 means the padded steps were not paid for; "bptt / torch" below 1
means bptt's step is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def bptt_step(net, x, y, lengths):
    return lambda: net.loss_and_grads(x, y, lengths=lengths)


def torch_step(torch, module, head, x, y, lengths):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    features = torch.nn.functional.one_hot(torch.from_numpy(x), head.out_features).float()
    target = torch.from_numpy(y)
    T, B = x.shape
    L = None if lengths is None else torch.from_numpy(lengths)
    valid = None if L is None else (torch.arange(T)[:, None] < L[None, :]).float()

    def step():
        module.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        if L is None:
            out, _ = module(features)
        else:
            out, _ = module(pack_padded_sequence(features, L, enforce_sorted=False))
            out, _ = pad_packed_sequence(out, total_length=T)
        logits = head(out)
        ce = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), target.reshape(-1),
                                               reduction="none").reshape(T, B)
        loss = (ce if valid is None else ce * valid).sum() / B
        loss.backward()
        return loss

    return step


def median_times(steps: dict, repeats: int) -> dict:
    times = {name: [] for name in steps}
    names = list(steps)
    for name in names:                                   # warm-up (numba compiles, allocator settles)
        steps[name]()
        steps[name]()
    for r in range(repeats):
        rotation = names[r % len(names):] + names[:r % len(names)]   # interleaved, rotating order
        for name in rotation:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per variant")
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], help="cells to time")
    parser.add_argument("--size", type=int, nargs=4, default=[65, 128, 32, 64], metavar=("I", "H", "B", "T"),
                        help="vocabulary (= output), hidden, batch, padded length")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import threadpoolctl
    import torch

    import bptt

    threadpoolctl.threadpool_limits(args.threads)
    torch.set_num_threads(args.threads)
    blas = [f"{info.get('internal_api')} {info.get('version')} {info.get('architecture')} "
            f"threads={info.get('num_threads')}" for info in threadpoolctl.threadpool_info()
            if info.get("user_api") == "blas"]
    V, H, B, T = args.size
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (T, B))
    y = rng.integers(0, V, (T, B))
    lengths = rng.integers(T // 4, T + 1, B)
    print(f"bptt {bptt.__version__}, torch {torch.__version__}, numpy {np.__version__}, float32, "
          f"{args.threads} thread(s), BLAS: {'; '.join(blas)}, {platform.processor() or platform.machine()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"(I=O, H, B, T) = ({V}, {H}, {B}, {T}); lengths uniform in [{T // 4}, {T}]: "
          f"{lengths.sum() / (T * B):.2f} of the padded steps are real; median of {args.repeats}")
    print(f"{'cell':5} {'bptt full':>10} {'bptt packed':>12} {'torch full':>11} {'torch packed':>13} "
          f"{'bptt packed/full':>17} {'torch packed/full':>18} {'bptt/torch packed':>18}")
    rows = []
    for cell in args.cells:
        net = bptt.Network(V, H, V, cell=cell, dtype="float32", seed=0)
        module, head = bptt.to_torch(net)
        steps = {"bptt full": bptt_step(net, x, y, None), "bptt packed": bptt_step(net, x, y, lengths),
                 "torch full": torch_step(torch, module, head, x, y, None),
                 "torch packed": torch_step(torch, module, head, x, y, lengths)}
        m = median_times(steps, args.repeats)
        row = {"cell": cell, **{k: v * 1e3 for k, v in m.items()},
               "bptt packed/full": m["bptt packed"] / m["bptt full"],
               "torch packed/full": m["torch packed"] / m["torch full"],
               "bptt/torch packed": m["bptt packed"] / m["torch packed"]}
        rows.append(row)
        print(f"{cell:5} {row['bptt full']:8.2f}ms {row['bptt packed']:10.2f}ms {row['torch full']:9.2f}ms "
              f"{row['torch packed']:11.2f}ms {row['bptt packed/full']:17.2f} {row['torch packed/full']:18.2f} "
              f"{row['bptt/torch packed']:18.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"threads": args.threads, "blas": blas, "size": args.size, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
