"""Time to quality: the same character model trained side by side in bptt and in torch, wall-clock
seconds until each first reaches a validation loss (nats per character).

    python bench/time_to_quality.py /work/shared/data/tinyshakespeare.txt --cell gru --layers 1 --hidden 256 \
        --target 1.70 [--threads 1] [--max-seconds 900] [--json ttq.json] [--figure ttq.png]
    python bench/time_to_quality.py TEXT --quick        # a smoke run: H = 32, 20 s at most, target 3.0

Same in both (nothing is tuned per framework):
- model: ``bptt.Network(V, H, V, num_layers, cell, float32)``, token ids in; torch gets the module and
  head of ``bptt.to_torch(net)`` -- the same initial weights -- and one-hot inputs (the same U x_t);
- batches: B windows of T + 1 characters at offsets drawn from one seeded generator, state zero at
  every window (no carried state), the same windows in the same order for both;
- loss: cross-entropy summed over time, averaged over the batch (bptt's convention; torch's
  ``cross_entropy(reduction="sum") / B``); validation: per character on fixed windows of the last
  10% of the text (never trained on), computed the same way in both;
- optimiser and schedule: Adam (lr, betas 0.9/0.999, eps 1e-8), a constant learning rate, gradients
  clipped to a global norm of --clip (bptt.training.clip / torch.nn.utils.clip_grad_norm_).

The two runs alternate step by step in one process with the same BLAS/OpenMP thread count
(bptt.benchmark.harness.pin_threads, checked), so load on a shared machine hits both alike. Only
training steps are timed; validation pauses both clocks. Each run stops at the target, or at
--max-seconds / --max-steps (then "not reached").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from bptt.benchmark import harness


def load_text(path: str, max_bytes: int = 50_000_000):
    """Characters of a UTF-8 text file as int64 ids over its sorted vocabulary; train/val split."""
    if not os.path.isfile(path):
        raise SystemExit(f"time_to_quality: error: text {path!r} is not a file")
    if os.path.getsize(path) > max_bytes:
        raise SystemExit(f"time_to_quality: error: text {path!r} is larger than {max_bytes} bytes")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))
    split = int(len(ids) * 0.9)
    return ids[:split], ids[split:], vocab


def windows(ids, offsets, T):
    """x (T, B) ids and y (T, B) next-character targets from windows starting at ``offsets``."""
    rows = np.stack([ids[o:o + T + 1] for o in offsets], axis=1)      # (T+1, B)
    return np.ascontiguousarray(rows[:-1]), np.ascontiguousarray(rows[1:])


class BpttRun:
    name = "bptt"

    def __init__(self, net, lr, clip):
        from bptt.training.clip import clip_by_global_norm
        from bptt.training.optim import Adam
        self.net, self.clip, self.clip_fn = net, clip, clip_by_global_norm
        self.opt = Adam(net.params, lr=lr)

    def step(self, x, y) -> float:
        loss, grads = self.net.loss_and_grads(x, y)
        self.clip_fn(grads, self.clip)
        self.opt.step(grads)
        return loss

    def val_loss(self, batches) -> float:
        """Mean validation loss per character."""
        total = sum(self.net.loss_only(x, y) for x, y in batches)      # each: sum over T, mean over B
        return total / (len(batches) * batches[0][0].shape[0])


class TorchRun:
    name = "torch"

    def __init__(self, net, lr, clip, vocab_size):
        import torch
        import bptt
        self.torch = torch
        self.module, self.head = bptt.to_torch(net)                      # the same initial weights
        self.params = list(self.module.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.clip, self.V = clip, vocab_size
        self.eye = torch.eye(vocab_size, dtype=torch.float32)

    def _loss(self, x, y):
        torch = self.torch
        xs = self.eye[torch.from_numpy(x)]                               # (T, B, V) one-hot: U x_t
        out, _ = self.module(xs)
        z = self.head(out)
        B = x.shape[1]
        return torch.nn.functional.cross_entropy(z.reshape(-1, self.V), torch.from_numpy(y).reshape(-1),
                                                 reduction="sum") / B

    def step(self, x, y) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return loss.item()

    def val_loss(self, batches) -> float:
        with self.torch.no_grad():
            total = sum(self._loss(x, y).item() for x, y in batches)
        return total / (len(batches) * batches[0][0].shape[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", help="a UTF-8 text file (e.g. tinyshakespeare.txt)")
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="gru")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--target", type=float, default=1.70, help="validation nats per character to reach")
    p.add_argument("--eval-every", type=int, default=50, help="steps between validations")
    p.add_argument("--val-windows", type=int, default=256, help="validation windows of T characters")
    p.add_argument("--max-seconds", type=float, default=900.0, help="training seconds per framework, at most")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny model, target 3.0, 20 s at most: a smoke run")
    p.add_argument("--json", help="write the curves and the result here")
    p.add_argument("--figure", help="write loss against seconds here (needs matplotlib)")
    args = p.parse_args(argv)
    if args.quick:                                   # smaller defaults; options given explicitly still win
        for name, value in (("hidden", 32), ("target", 3.0), ("max_seconds", 20.0), ("eval_every", 20),
                            ("val_windows", 32)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    for name in ("layers", "hidden", "seq_len", "batch", "eval_every", "val_windows", "threads", "max_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"time_to_quality: error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    pinned = harness.pin_threads(args.threads)  # noqa: F841  (keeps the limits alive)
    import torch  # noqa: F401  (loaded before the check, so its OpenMP pool is checked too)
    from bptt.network import Network
    harness.check_threads(args.threads)

    train, val, vocab = load_text(args.text)
    V, T, B = len(vocab), args.seq_len, args.batch
    net = Network(V, args.hidden, V, num_layers=args.layers, cell=args.cell, seed=args.seed, dtype="float32")
    runs = [BpttRun(net, args.lr, args.clip), TorchRun(net, args.lr, args.clip, V)]   # torch copies first
    rng = np.random.default_rng(args.seed)
    val_rng = np.random.default_rng(args.seed + 1)
    val_offsets = val_rng.integers(0, len(val) - T - 1, args.val_windows)
    val_batches = [windows(val, val_offsets[i:i + B], T) for i in range(0, args.val_windows, B)]
    val_batches = [b for b in val_batches if b[0].shape[1] == B] or val_batches[:1]

    curves = {r.name: [(0, 0.0, r.val_loss(val_batches))] for r in runs}   # (step, seconds, val loss)
    clock = {r.name: 0.0 for r in runs}
    reached = {r.name: None for r in runs}
    label = f"{args.cell} {args.layers}x{args.hidden}, T={T}, B={B}, Adam lr={args.lr}, clip {args.clip}"
    print(f"{label}; vocabulary {V}; {len(train)} train / {len(val)} val characters; target {args.target} "
          f"nats/char; {args.threads} thread(s); start val {curves['bptt'][0][2]:.4f} / {curves['torch'][0][2]:.4f}",
          flush=True)
    step = 0
    while step < args.max_steps and any(reached[r.name] is None and clock[r.name] < args.max_seconds for r in runs):
        step += 1
        x, y = windows(train, rng.integers(0, len(train) - T - 1, B), T)
        active = [r for r in runs if reached[r.name] is None and clock[r.name] < args.max_seconds]
        for r in (active if step % 2 else active[::-1]):                 # alternate who goes first
            start = time.perf_counter()
            r.step(x, y)
            clock[r.name] += time.perf_counter() - start
        if step % args.eval_every == 0:
            for r in active:
                loss = r.val_loss(val_batches)
                curves[r.name].append((step, clock[r.name], loss))
                if loss <= args.target and reached[r.name] is None:
                    reached[r.name] = (step, clock[r.name])
            print(f"  step {step:6d}  " + "  ".join(
                f"{r.name} {curves[r.name][-1][2]:.4f} at {curves[r.name][-1][1]:7.1f} s" for r in runs), flush=True)

    result = {"label": label, "cell": args.cell, "layers": args.layers, "hidden": args.hidden, "seq_len": T,
              "batch": B, "lr": args.lr, "clip": args.clip, "target": args.target, "threads": args.threads,
              "max_seconds": args.max_seconds, "steps": step, "curves": curves,
              "reached": {k: (None if v is None else {"step": v[0], "seconds": v[1]}) for k, v in reached.items()},
              "seconds_per_step": {k: clock[k] / max(1, curves[k][-1][0]) for k in clock},
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    b, t = reached["bptt"], reached["torch"]
    ratio = b[1] / t[1] if b and t else None
    result["ratio"] = ratio
    print(f"reached {args.target}: bptt " + (f"{b[1]:.1f} s (step {b[0]})" if b else "not reached") + ", torch "
          + (f"{t[1]:.1f} s (step {t[0]})" if t else "not reached")
          + (f"; bptt time / torch time = {ratio:.2f}" if ratio else "")
          + "; seconds per step " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in result["seconds_per_step"].items()))
    if args.json:
        from bptt.io.files import write_text      # atomic: temp file + rename
        write_text(args.json, json.dumps(result, indent=1))
    if args.figure:
        figure(result, args.figure)
    return 0


def figure(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in result["curves"].items():
        _, seconds, loss = zip(*curve)
        ax.plot(seconds, loss, label=name)
    ax.axhline(result["target"], color="grey", linestyle=":", label=f"target {result['target']}")
    ax.set_xlabel("training seconds (validation excluded)")
    ax.set_ylabel("validation loss, nats/char")
    ax.set_title(result["label"], fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
