"""The six cells on one character model at equal parameter count and equal CPU time (issue 17).

    python bench/cells_compare.py /work/shared/data/tinyshakespeare.txt --budget 150 \
        --json cells.json --figure cells.png [--save-dir runs/cells] [--cells rnn,gru,lstm,lnlstm,mingru,minlstm]
    python bench/cells_compare.py TEXT --sizes-only      # the table of H and parameter counts, no training
    python bench/cells_compare.py TEXT --quick           # a smoke run: 3 CPU-s per cell, small model

Cells: rnn (tanh), gru, lstm, lnlstm (``Network(cell="lstm", layer_norm=True)``), mingru, minlstm;
one layer each. Sizes: the LSTM at ``--base-hidden`` (128) fixes the parameter total (readout
included); every other cell gets the H whose total is closest to it (printed, and in the JSON).

Budget: ``--budget`` CPU seconds of training per cell (``time.process_time`` of this process, BLAS
pinned to one thread and checked with threadpoolctl): wall-clock is unfair between runs on a shared
machine, CPU time much less so. Validation is not counted (its CPU time is reported apart). The wall
clock and the load average are recorded too.

Same for every cell (nothing is tuned per cell): the same initial seed, the same batches -- B random
windows of T + 1 characters at offsets from one seeded generator, zero state at every window (the
data helpers of ``bench/time_to_quality.py``, imported) --, Adam (lr 2e-3), global-norm clipping at 5
of the gradient of the per-token mean loss (``bptt train``'s default, ``make_clipper(per_token=True)``),
float32. Validation: the last 10% of the text (never trained on). The curve is measured on
``--val-windows`` fixed windows of it every ``--eval-every`` CPU seconds; the final number is the mean
loss per character over the *whole* tail, cut into consecutive windows of T characters (zero state at
each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from time_to_quality import load_text, windows  # noqa: E402  (bench/ is not a package)

CELLS = {"rnn": {"cell": "rnn"}, "gru": {"cell": "gru"}, "lstm": {"cell": "lstm"},
         "lnlstm": {"cell": "lstm", "layer_norm": True}, "mingru": {"cell": "mingru"},
         "minlstm": {"cell": "minlstm"}}


def count(name: str, H: int, V: int) -> int:
    from bptt import Network
    return Network(V, H, V, dtype="float32", **CELLS[name]).num_parameters


def matched_sizes(names, V: int, base: str = "lstm", base_hidden: int = 128) -> dict:
    """name -> (H, parameters): the H whose total is closest to ``base`` at ``base_hidden``.
    The totals grow monotonically in H, so a bisection finds it."""
    target = count(base, base_hidden, V)
    sizes = {}
    for name in names:
        if name == base:
            sizes[name] = (base_hidden, target)
            continue
        lo, hi = 1, 4096
        while lo < hi:                                   # smallest H with count >= target
            mid = (lo + hi) // 2
            if count(name, mid, V) < target:
                lo = mid + 1
            else:
                hi = mid
        H = min((h for h in (lo - 1, lo) if h >= 1), key=lambda h: abs(count(name, h, V) - target))
        sizes[name] = (H, count(name, H, V))
    return sizes


_limits = None


def pin_one_thread() -> list:
    """One thread (bptt.set_threads, then threadpoolctl for every pool, OpenMP ones included -- torch's,
    when it is loaded), checked: every pool runs 1."""
    import threadpoolctl
    import bptt
    bptt.set_threads(1)
    global _limits
    _limits = threadpoolctl.threadpool_limits(limits=1)       # kept alive for the process
    pools = [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads")} for p in threadpoolctl.threadpool_info()]
    wrong = [p for p in pools if p["num_threads"] != 1]
    if wrong or not any(p["user_api"] == "blas" for p in pools):
        raise SystemExit(f"cells_compare: error: could not pin one thread: {pools}")
    return pools


def mean_loss(net, batches) -> float:
    """Mean loss per character over (x, y) batches (loss_only: sum over T, mean over B)."""
    total = sum(net.loss_only(x, y) * x.shape[1] for x, y in batches)
    return total / sum(x.size for x, _ in batches)


def tail_batches(val, T: int, per_batch: int = 256) -> list:
    """The whole held-out tail as consecutive windows of T (+1) characters, in batches."""
    offsets = np.arange(0, len(val) - T - 1, T)
    return [windows(val, offsets[i:i + per_batch], T) for i in range(0, len(offsets), per_batch)]


def train_cell(name, H, args, train, val_curve, val_tail, V) -> dict:
    from bptt import Network
    from bptt.training.clip import make_clipper
    from bptt.training.optim import Adam
    net = Network(V, H, V, seed=args.seed, dtype="float32", **CELLS[name])
    opt = Adam(net.params, lr=args.lr)
    clip = make_clipper("global-norm", args.clip, per_token=True)
    rng = np.random.default_rng(args.seed)                  # the same batches for every cell
    T, B = args.seq_len, args.batch
    cpu = wall = eval_cpu = 0.0
    step, losses, clipped = 0, [], 0
    curve = []                                             # (step, train CPU s, train wall s, val, train loss)

    def point():
        nonlocal eval_cpu
        c0 = time.process_time()
        v = mean_loss(net, val_curve)
        eval_cpu += time.process_time() - c0
        curve.append({"step": step, "cpu_s": cpu, "wall_s": wall, "val": v,
                      "train": float(np.mean(losses)) if losses else None, "load1": os.getloadavg()[0]})
        losses.clear()
        print(f"  {name:8s} step {step:6d}  cpu {cpu:6.1f} s  wall {wall:6.1f} s  val {v:.4f}"
              + (f"  train {curve[-1]['train']:.4f}" if curve[-1]["train"] is not None else ""), flush=True)

    load_start = os.getloadavg()
    point()
    next_eval = args.eval_every
    while cpu < args.budget and step < args.max_steps:
        c0, w0 = time.process_time(), time.perf_counter()
        x, y = windows(train, rng.integers(0, len(train) - T - 1, B), T)
        loss, grads = net.loss_and_grads(x, y)
        report = clip(grads, loss_steps=T)
        opt.step(grads)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        step += 1
        losses.append(loss / T)
        clipped += bool(report.clipped) if hasattr(report, "clipped") else 0
        if not np.isfinite(loss):
            print(f"  {name}: loss is not finite at step {step}; stopped", flush=True)
            break
        if cpu >= next_eval:
            point()
            next_eval += args.eval_every
    if curve[-1]["step"] != step:
        point()
    c0 = time.process_time()
    final = mean_loss(net, val_tail)
    eval_cpu += time.process_time() - c0
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        np.savez(os.path.join(args.save_dir, f"{name}.npz"), **net.state_dict())
    return {"cell": name, "net": {**CELLS[name], "hidden": H}, "parameters": net.num_parameters, "steps": step,
            "train_cpu_s": cpu, "train_wall_s": wall, "eval_cpu_s": eval_cpu, "ms_per_step_cpu": 1e3 * cpu / max(step, 1),
            "val_final": final, "val_curve_final": curve[-1]["val"], "clipped_fraction": clipped / max(step, 1),
            "load_start": load_start, "load_end": os.getloadavg(), "curve": curve}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text", help="a UTF-8 text file (e.g. tinyshakespeare.txt)")
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated: " + ", ".join(CELLS))
    p.add_argument("--base", default="lstm", choices=list(CELLS), help="the cell whose size fixes the parameter total")
    p.add_argument("--base-hidden", type=int, default=128)
    p.add_argument("--budget", type=float, default=150.0, help="training CPU seconds per cell")
    p.add_argument("--max-steps", type=int, default=10**9)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--eval-every", type=float, default=10.0, help="training CPU seconds between curve points")
    p.add_argument("--val-windows", type=int, default=256, help="fixed validation windows for the curve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes-only", action="store_true", help="print the table of H and parameter counts, then stop")
    p.add_argument("--quick", action="store_true", help="smoke run: LSTM H = 16, 3 CPU-s per cell")
    p.add_argument("--save-dir", help="write each trained network's parameters here (CELL.npz)")
    p.add_argument("--json", help="write the result here (rewritten after every cell)")
    p.add_argument("--figure", help="write validation loss against training CPU seconds here (png)")
    args = p.parse_args(argv)
    if args.quick:                                   # smaller defaults; options given explicitly still win
        for name, value in (("base_hidden", 16), ("budget", 3.0), ("eval_every", 1.0), ("val_windows", 32)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    names = [c.strip() for c in args.cells.split(",") if c.strip()]
    for name in names:
        if name not in CELLS:
            raise SystemExit(f"cells_compare: error: unknown cell {name!r}; choose from {', '.join(CELLS)}")
    for name in ("base_hidden", "seq_len", "batch", "val_windows", "max_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"cells_compare: error: --{name.replace('_', '-')} must be >= 1")
    if not args.budget > 0 or not args.eval_every > 0:
        raise SystemExit("cells_compare: error: --budget and --eval-every must be > 0")

    pools = pin_one_thread()
    train, val, vocab = load_text(args.text)
    V, T, B = len(vocab), args.seq_len, args.batch
    sizes = matched_sizes(names, V, args.base, args.base_hidden)
    target = count(args.base, args.base_hidden, V)
    print(f"vocabulary {V}; {len(train)} train / {len(val)} validation characters; parameter target {target} "
          f"({args.base} H={args.base_hidden})")
    print("| cell | H | parameters | vs target |\n|---|---:|---:|---:|")
    for name in names:
        H, n = sizes[name]
        print(f"| {name} | {H} | {n:,} | {100 * (n / target - 1):+.2f}% |")
    if args.sizes_only:
        return 0

    val_rng = np.random.default_rng(args.seed + 1)
    offsets = val_rng.integers(0, len(val) - T - 1, args.val_windows)
    val_curve = [windows(val, offsets[i:i + B], T) for i in range(0, args.val_windows, B)]
    val_tail = tail_batches(val, T)
    result = {"text": os.path.abspath(args.text), "vocab": V, "train_chars": len(train), "val_chars": len(val),
              "val_tail_chars": int(sum(x.size for x, _ in val_tail)), "T": T, "B": B, "lr": args.lr,
              "clip": args.clip, "clip_mode": "global-norm, per-token mean loss", "optimizer": "adam",
              "dtype": "float32", "budget_cpu_s": args.budget, "seed": args.seed, "base": args.base,
              "base_hidden": args.base_hidden, "target_parameters": target, "threads": 1, "blas_pools": pools,
              "nice": os.nice(0), "cpu_count": os.cpu_count(), "command": " ".join(sys.argv),
              "sizes": {k: {"hidden": v[0], "parameters": v[1]} for k, v in sizes.items()}, "runs": []}
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["started"] = start
    for name in names:
        print(f"{name}: H={sizes[name][0]}, {sizes[name][1]:,} parameters, budget {args.budget} CPU-s", flush=True)
        result["runs"].append(train_cell(name, sizes[name][0], args, train, val_curve, val_tail, V))
        r = result["runs"][-1]
        print(f"{name}: {r['steps']} steps in {r['train_cpu_s']:.1f} CPU-s ({r['train_wall_s']:.1f} s wall, "
              f"load {r['load_start'][0]:.2f} -> {r['load_end'][0]:.2f}); validation {r['val_final']:.4f} nats/char "
              f"on the whole tail", flush=True)
        if args.json:
            write(args.json, result)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(table(result))
    if args.json:
        write(args.json, result)
    if args.figure:
        figure(result, args.figure)
    return 0


def table(result: dict) -> str:
    lines = ["| cell | H | parameters | steps | train CPU-s | wall s | ms/step (CPU) | load avg (start, end) "
             "| clipped | validation nats/char |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in sorted(result["runs"], key=lambda r: r["val_final"]):
        lines.append(f"| {r['cell']} | {r['net']['hidden']} | {r['parameters']:,} | {r['steps']:,} | {r['train_cpu_s']:.0f} "
                     f"| {r['train_wall_s']:.0f} | {r['ms_per_step_cpu']:.1f} | {r['load_start'][0]:.2f}, "
                     f"{r['load_end'][0]:.2f} | {100 * r['clipped_fraction']:.0f}% | **{r['val_final']:.3f}** |")
    return "\n".join(lines)


def write(path: str, result: dict) -> None:
    from bptt.io.files import write_text          # atomic: temp file + rename
    write_text(path, json.dumps(result, indent=1))


def figure(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in result["runs"]:
        cpu = [c["cpu_s"] for c in r["curve"]]
        val = [c["val"] for c in r["curve"]]
        ax.plot(cpu, val, label=f"{r['cell']} H={r['net']['hidden']} ({r['val_final']:.3f})")
    ax.set_xlabel("training CPU seconds (one thread; validation excluded)")
    ax.set_ylabel("validation loss, nats/char")
    ax.set_ylim(top=min(3.5, ax.get_ylim()[1]))
    ax.set_title(f"tinyshakespeare, 1 layer, ~{result['target_parameters']:,} parameters each, "
                 f"T={result['T']}, B={result['B']}, Adam {result['lr']}", fontsize=9)
    ax.legend(fontsize=8, title="cell (final, whole tail)", title_fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
