"""The GEMM floor of a training step: the time of the matrix products alone that a bptt step
must do, with bptt's own shapes and operand layouts, timed with numpy's BLAS on this machine.
Divided by a peer's time (from a ``bptt bench --json`` report) it is the best ratio any code
calling this BLAS could reach -- a goal below it cannot be met by better element-wise code.

    python bench/gemm_floor.py docs/performance/threads1-kernels.json [--repeats 15] [--threads 1] [--json floors.json]

(--threads picks the report's run with that thread count and times the GEMMs on as many BLAS
threads; --json writes the floors, which bench/table.py --issue20 reads.)

Products per step (G = 1 rnn, 3 gru, 4 lstm; N = T B rows; float features, as `bptt bench`):
  forward   x U^T (N, I)(I, GH);  T x  h_{t-1} W^T (B, H)(H, GH);  h V^T (N, H)(H, O)
  backward  dV = dz^T h;  dh = dz V;  T x  da_t W (B, GH)(GH, H);  dW = da^T h_prev;  dU = da^T x
(no dE/dx: neither bptt's lean step nor the peers compute it). Element-wise work, the loss and
Python are left out, so the floor is below any real step.
"""

import argparse
import json
import time

import numpy as np

from bptt.benchmark import harness


def _median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gemm_floor(cell: str, I: int, H: int, B: int, T: int, repeats: int, with_step: bool = False,
               with_torch: bool = False):
    """Seconds for the step's GEMMs, each timed alone (median), summed. ``with_step``: also bptt's
    own step (``loss_and_grads``) at that size, interleaved with the GEMM parts repeat by repeat, so
    that on a shared machine both see the same load; returns (floor, step) then. ``with_torch``:
    torch's step (the bench's peer, same weights) interleaved too; returns (floor, step, torch step)."""
    G = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    O, N = I, T * B
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)   # noqa: E731
    x, U, W, V = f32(N, I), f32(G * H, I), f32(G * H, H), f32(O, H)
    WT = np.ascontiguousarray(W.T)                       # bptt copies W^T once per sequence
    h, da, dz = f32(N, H), f32(N, G * H), f32(N, O)
    hB, daB = f32(B, H), f32(B, G * H)
    outs = {"proj": np.empty((N, G * H), np.float32), "rec": np.empty((B, G * H), np.float32),
            "z": np.empty((N, O), np.float32), "dV": np.empty((O, H), np.float32),
            "dh": np.empty((N, H), np.float32), "back": np.empty((B, H), np.float32),
            "dW": np.empty((G * H, H), np.float32), "dU": np.empty((G * H, I), np.float32)}
    parts = {
        "input projection": lambda: np.dot(x, U.T, out=outs["proj"]),
        "T recurrent (forward)": lambda: [np.dot(hB, WT, out=outs["rec"]) for _ in range(T)],
        "readout": lambda: np.dot(h, V.T, out=outs["z"]),
        "dV": lambda: np.dot(dz.T, h, out=outs["dV"]),
        "dh from readout": lambda: np.dot(dz, V, out=outs["dh"]),
        "T recurrent (backward)": lambda: [np.dot(daB, W, out=outs["back"]) for _ in range(T)],
        "dW": lambda: np.dot(da.T, h, out=outs["dW"]),
        "dU": lambda: np.dot(da.T, x, out=outs["dU"]),
    }
    if not with_step:
        return sum(_median_time(fn, repeats) for fn in parts.values())
    from bptt.benchmark.peers import Problem, _weights, bptt_contestant, torch_contestant
    problem = Problem(cell, I, H, B, T)
    parts["bptt step"] = bptt_contestant(problem).step
    if with_torch:
        parts["torch step"] = torch_contestant(problem, _weights(parts["bptt step"].net)).step
    results = harness.interleaved(parts, repeats)
    step = results.pop("bptt step")["median_s"]
    torch_step = results.pop("torch step")["median_s"] if with_torch else None
    floor = sum(r["median_s"] for r in results.values())
    return (floor, step, torch_step) if with_torch else (floor, step)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", help="a `bptt bench --json` report (its 1-thread run is used)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the floors here (a list of rows)")
    p.add_argument("--with-step", action="store_true",
                   help="also time bptt's step here, interleaved with the GEMMs (bptt / floor under one load)")
    p.add_argument("--with-torch", action="store_true",
                   help="with --with-step: torch's step interleaved too, so floor / torch is measured under one load")
    args = p.parse_args()
    with open(args.report) as handle:
        report = json.load(handle)
    runs = [r for r in report["runs"] if r["threads"] == args.threads]
    if not runs:
        raise SystemExit(f"gemm_floor: error: the report has no {args.threads}-thread run")
    run = runs[0]
    pinned = harness.pin_threads(args.threads)  # noqa: F841  (keeps the thread limits alive)
    harness.check_threads(args.threads)
    floors = []
    print(f"{args.threads} thread(s), float32; floor = the step's GEMMs alone; ratios = time / peer's time from the report")
    print(f"{'cell':5s} {'(I=O, H, B, T)':22s} {'floor ms':>9s} {'bptt ms':>9s} {'bptt/floor':>10s} "
          f"{'floor/torch':>11s} {'bptt/torch':>10s} {'floor/JAX':>9s} {'bptt/JAX':>8s}")
    for row in run["rows"]:
        cell, size = row["cell"], (row["input_size"], row["hidden_size"], row["batch"], row["seq_len"])
        peers = row["peers"]
        torch_here = None
        if args.with_step and args.with_torch:
            floor, own, torch_here = gemm_floor(cell, *size, repeats=args.repeats, with_step=True, with_torch=True)
            print(f"      (interleaved here: bptt step {own * 1e3:.3f} ms, torch step {torch_here * 1e3:.3f} ms, "
                  f"bptt / floor {own / floor:.2f}, floor / torch {floor / torch_here:.2f}, "
                  f"bptt / torch {own / torch_here:.2f})", flush=True)
        elif args.with_step:
            floor, own = gemm_floor(cell, *size, repeats=args.repeats, with_step=True)
            print(f"      (interleaved here: bptt step {own * 1e3:.3f} ms, bptt / floor {own / floor:.2f})", flush=True)
        else:
            floor, own = gemm_floor(cell, *size, repeats=args.repeats), None
        bptt = peers["bptt"]["median_s"]
        torch_s = next((v["median_s"] for k, v in peers.items() if k.startswith("torch")), float("nan"))
        jax_s = next((v["median_s"] for k, v in peers.items() if k.startswith("jax")), float("nan"))
        print(f"{cell:5s} {str(size):22s} {floor * 1e3:9.3f} {bptt * 1e3:9.3f} {bptt / floor:10.2f} "
              f"{floor / torch_s:11.2f} {bptt / torch_s:10.2f} {floor / jax_s:9.2f} {bptt / jax_s:8.2f}", flush=True)
        floors.append({"cell": cell, "size": list(size), "threads": args.threads, "floor_s": floor, "bptt_s": bptt,
                       "torch_s": torch_s, "jax_s": jax_s, "bptt_interleaved_s": own,
                       "torch_interleaved_s": torch_here})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(floors, handle, indent=1)


if __name__ == "__main__":
    main()
