"""Data-parallel training over MPI: time per step, and the share of it spent in the Allreduce.

    python bench/mpi_allreduce.py                       # 1 and 2 ranks, the default sizes, a table
    python bench/mpi_allreduce.py --rounds 3 --json out.json  # 1,2,1,2,1,2: medians over interleaved runs
    python bench/mpi_allreduce.py --quick               # tiny, seconds: checks the script still runs

It launches ``mpiexec -n R python bench/mpi_allreduce.py --worker ...`` for each R in --ranks.
Each worker trains a float32 char-level RNN (vocabulary 65 like tiny-shakespeare, token-id
inputs) with the GLOBAL batch B fixed (strong scaling: each of R ranks runs B/R streams),
and times, per step:

    compute   = forward + loss + BPTT on this rank's shard        (the part that shrinks with R)
    wait      = a barrier: waiting for the slowest rank's compute (load imbalance, a busy core)
    allreduce = pack the gradients into one flat buffer + ONE MPI Allreduce + unpack
    update    = clip by global norm + SGD step                      (replicated on every rank)

plus, separately, a bare Allreduce of flat buffers of growing size, from which it fits
the latency/bandwidth model  t(n bytes) = alpha + n / beta  for this machine's transport
(shared memory between two processes here, not a network). Medians over the timed steps;
rank 0 reports the slowest rank's time (the step waits for it).

Numbers from a 2-core machine shared with other work are noisy: say so when quoting them.
Speed claims live here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# (cell, vocabulary I = O, hidden H, layers L, global batch B, time steps T): `bptt train`'s
# default model (rnn 1x128, B 32, T 64) on a 65-character text, two larger sizes of issue 7's
# benchmark, and a 2-layer LSTM.
SIZES = [("rnn", 65, 128, 1, 32, 64), ("rnn", 65, 512, 1, 64, 64), ("rnn", 256, 1024, 1, 64, 32),
         ("lstm", 65, 256, 2, 32, 64)]
QUICK_SIZES = [("rnn", 11, 16, 1, 4, 8)]
BUFFER_BYTES = [2 ** k for k in range(10, 27, 2)]           # 1 KiB .. 64 MiB


def worker(args) -> None:
    from mpi4py import MPI

    from bptt import Network, clip_by_global_norm
    from bptt.training.distributed import Distributed
    from bptt.training.optim import SGD

    dist = Distributed.from_environment(force=True)
    comm = dist.comm
    report = {"ranks": dist.size, "models": [], "allreduce_only": []}
    sizes = QUICK_SIZES if args.quick else SIZES
    for cell, vocab, hidden, layers, batch, seq_len in sizes:
        net = Network(vocab, hidden, vocab, num_layers=layers, cell=cell, seed=0, dtype="float32")
        optimizer = SGD(net.params, lr=0.01)
        rng = np.random.default_rng(1)                       # same global batches on every rank
        rows = []
        for step in range(args.warmup + args.steps):
            inputs = rng.integers(0, vocab, size=(seq_len, batch))
            targets = rng.integers(0, vocab, size=(seq_len, batch))
            x, y, _ = dist.shard_batch(inputs, targets)
            dist.barrier()                                   # every rank starts the step together
            t0 = time.perf_counter()
            loss, grads = net.loss_and_grads(x, y)
            t1 = time.perf_counter()
            if args.split_wait:
                dist.barrier()                               # time the wait for the slowest rank apart
            t1_wait = time.perf_counter()
            dist.allreduce_gradients(grads, x.shape[1], batch, loss=loss)
            t2 = time.perf_counter()
            clip_by_global_norm(grads, 5.0)
            optimizer.step(grads)
            t3 = time.perf_counter()
            if step >= args.warmup:
                rows.append((t1 - t0, t1_wait - t1, t2 - t1_wait, t3 - t2, t3 - t0))
        mine = np.median(np.array(rows), axis=0)             # (compute, wait, allreduce, update, step)
        slowest = mine.copy()
        if dist.active:
            comm.Allreduce(mine, slowest, op=MPI.MAX)        # the step waits for the slowest rank
        gradient_bytes = sum(p.nbytes for p in net.params.values())
        report["models"].append({
            "cell": cell, "vocab": vocab, "hidden": hidden, "layers": layers, "batch": batch, "seq_len": seq_len,
            "params": net.num_parameters, "gradient_bytes": gradient_bytes,
            "compute_s": float(slowest[0]), "wait_s": float(slowest[1]), "allreduce_s": float(slowest[2]),
            "update_s": float(slowest[3]), "step_s": float(slowest[4]),
            "allreduce_fraction": float(slowest[2] / slowest[4]),
            "tokens_per_s": batch * seq_len / float(slowest[4])})
    if dist.active:
        for nbytes in (BUFFER_BYTES[:4] if args.quick else BUFFER_BYTES):
            buffer = np.ones(nbytes // 4, dtype=np.float32)
            times = []
            for repeat in range(args.warmup + args.steps * 2):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, buffer)
                times.append(time.perf_counter() - t0)
            mine = np.array([np.median(times[args.warmup:])])
            slowest = np.empty_like(mine)
            comm.Allreduce(mine, slowest, op=MPI.MAX)
            report["allreduce_only"].append({"bytes": nbytes, "seconds": float(slowest[0])})
        report["fit"] = fit_alpha_beta(report["allreduce_only"])
    if dist.is_root:
        print("BENCH-JSON " + json.dumps(report), flush=True)


def fit_alpha_beta(points) -> dict:
    """Least squares t = alpha + n / beta over the measured (bytes, seconds)."""
    n = np.array([p["bytes"] for p in points], dtype=float)
    t = np.array([p["seconds"] for p in points], dtype=float)
    slope, intercept = np.polyfit(n, t, 1)
    return {"alpha_s": float(max(intercept, 0.0)), "beta_bytes_per_s": float(1.0 / slope) if slope > 0 else None}


def launch(args) -> dict:
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpi_allreduce: mpiexec not found: pip install 'bptt[mpi]' (mpi4py + mpich)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    rounds = {ranks: [] for ranks in args.ranks}
    for _ in range(args.rounds):              # interleaved: 1, 2, 1, 2, ... so load drifts hit both alike
        for ranks in args.ranks:
            command = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker",
                       "--steps", str(args.steps), "--warmup", str(args.warmup)] \
                + (["--quick"] if args.quick else []) + ([] if args.split_wait else ["--no-split-wait"])
            run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
            if run.returncode != 0:
                raise SystemExit(f"mpi_allreduce: {ranks} ranks failed (exit {run.returncode}):\n"
                                 f"{run.stderr[-2000:]}")
            line = next(text for text in run.stdout.splitlines() if text.startswith("BENCH-JSON "))
            rounds[ranks].append(json.loads(line[len("BENCH-JSON "):]))
    return {"machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                        "threads_per_rank": args.threads, "rounds": args.rounds, "steps": args.steps,
                        "load_average_at_start": load_average},
            "runs": [median_of_rounds(reports) for reports in rounds.values()]}


def median_of_rounds(reports: list) -> dict:
    """One report whose every timing is the median over the rounds' (already per-step median) timings."""
    merged = json.loads(json.dumps(reports[0]))
    for section in ("models", "allreduce_only"):
        for index, entry in enumerate(merged[section]):
            for key, value in entry.items():
                if key.endswith(("_s", "_fraction", "seconds")) or key == "tokens_per_s":
                    entry[key] = float(np.median([r[section][index][key] for r in reports]))
    if merged.get("allreduce_only"):
        merged["fit"] = fit_alpha_beta(merged["allreduce_only"])
    return merged


def model_name(m) -> str:
    return f"{m['cell']} {m['layers']}x{m['hidden']}"


def print_table(result) -> None:
    machine = result["machine"]
    print(f"threads per rank: {machine['threads_per_rank']}, cpus: {machine['cpus']}, rounds: {machine['rounds']} "
          f"x {machine['steps']} steps, load average at start: {machine['load_average_at_start']}")
    print(f"{'model':>9} {'I=O':>4} {'B':>4} {'T':>4} {'params':>9} {'grad MB':>8} {'ranks':>5} "
          f"{'step ms':>8} {'compute':>8} {'wait':>8} {'allred.':>8} {'update':>8} {'allred %':>8} {'speed-up':>8}")
    base = {}
    for run in result["runs"]:
        for m in run["models"]:
            key = (m["cell"], m["vocab"], m["hidden"], m["layers"], m["batch"], m["seq_len"])
            base.setdefault(key, m["step_s"])
            print(f"{model_name(m):>9} {m['vocab']:>4} {m['batch']:>4} {m['seq_len']:>4} {m['params']:>9} "
                  f"{m['gradient_bytes'] / 1e6:>8.2f} {run['ranks']:>5} {1e3 * m['step_s']:>8.2f} "
                  f"{1e3 * m['compute_s']:>8.2f} {1e3 * m['wait_s']:>8.3f} {1e3 * m['allreduce_s']:>8.3f} {1e3 * m['update_s']:>8.2f} "
                  f"{100 * m['allreduce_fraction']:>7.1f}% {base[key] / m['step_s']:>7.2f}x")
    for run in result["runs"]:
        if run.get("fit"):
            fit = run["fit"]
            beta = fit["beta_bytes_per_s"]
            print(f"bare Allreduce, {run['ranks']} ranks: alpha = {1e6 * fit['alpha_s']:.1f} us, "
                  f"beta = {beta / 1e9:.2f} GB/s" if beta else "beta: not measurable")
            for p in run["allreduce_only"]:
                print(f"  {p['bytes']:>10} bytes  {1e6 * p['seconds']:>10.1f} us")


# Links for the model on paper: (name, latency alpha per message in s, bandwidth beta in bytes/s).
# Typical published figures, not measured here: 10 GbE TCP ~1.25 GB/s and tens of us;
# InfiniBand HDR (200 Gb/s) ~25 GB/s and ~1-2 us.
LINKS = [("10 GbE (TCP)", 30e-6, 1.25e9), ("25 GbE", 20e-6, 3.1e9), ("InfiniBand HDR 200 Gb/s", 2e-6, 25e9)]
NODES = [2, 8, 32, 128]


def ring_allreduce_seconds(nbytes: float, ranks: int, alpha: float, beta: float) -> float:
    """Ring allreduce (reduce-scatter then all-gather): 2(N-1) messages of n/N bytes each,
    t = 2(N-1) alpha + 2 (N-1)/N * n / beta   (the reduction arithmetic itself is ignored)."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes / beta


def print_paper_model(result) -> None:
    """Weak scaling (each node keeps the 1-rank batch: compute per step stays T1) and strong
    scaling (global batch fixed: compute T1/N at best -- optimistic, GEMMs get less efficient
    on thin batches; impossible, '-', once N > B) against the ring-allreduce time, with no
    overlap of communication and backward (bptt reduces once, after the whole backward)."""
    one = next((run for run in result["runs"] if run["ranks"] == 1), None)
    if one is None:
        return
    print("\nmodel on paper: ring allreduce t = 2(N-1) alpha + 2(N-1)/N * bytes / beta; efficiency = compute / "
          "(compute + t)")
    print(f"{'model':>9} {'grad MB':>8} {'T1 ms':>7}  {'link':<24} " + " ".join(f"{'N=' + str(n):>22}" for n in NODES))
    print(f"{'':>9} {'':>8} {'':>7}  {'':<24} " + " ".join(f"{'allred ms weak strong':>22}" for _ in NODES))
    for m in one["models"]:
        t1 = m["step_s"]
        for name, alpha, beta in LINKS:
            cells = []
            for n in NODES:
                t = ring_allreduce_seconds(m["gradient_bytes"], n, alpha, beta)
                weak = t1 / (t1 + t)
                strong = f"{100 * (t1 / n) / (t1 / n + t):>5.0f}%" if n <= m["batch"] else "    - "  # B >= N
                cells.append(f"{1e3 * t:>9.2f} {100 * weak:>5.0f}% {strong}")
            print(f"{model_name(m):>9} {m['gradient_bytes'] / 1e6:>8.2f} {1e3 * t1:>7.1f}  {name:<24} " + " ".join(cells))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="world sizes to run")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per size (medians)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats of every world size (medians)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per rank")
    parser.add_argument("--no-split-wait", dest="split_wait", action="store_false",
                        help="no barrier between backward and Allreduce: the Allreduce then also absorbs "
                             "the wait for the slowest rank (what a real step sees)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, to check the script runs")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mpiexec run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    result = launch(args)
    print_table(result)
    print_paper_model(result)
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
