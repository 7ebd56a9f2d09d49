"""Render the goal table of issue 7 (markdown) from one or more ``bptt bench --json`` reports.

    python bench/table.py bench/results/threads1.json bench/results/threads2.json
    python bench/table.py --compare run_a.json run_b.json     # each run's ratios side by side
    python bench/table.py --issue20 run.json --floors floors1.json floors2.json   # issue 20's goals

Each cell: the measured ratio (bptt time / peer time, median of interleaved repeats) and
whether it meets the goal. Then GFLOP/s and the share of the GEMM roof, memory and sampling.
"""

import json
import sys

# (I, H, B, T) -> goals: vs torch twin, vs JAX; gated cells: vs torch twin only.
GOALS_RNN = {(65, 64, 1, 25): (0.15, 1.0), (65, 128, 32, 64): (0.55, 0.8),
             (65, 512, 64, 64): (0.75, 0.8), (256, 1024, 64, 32): (0.9, 0.9)}
GOALS_GATED = {(65, 64, 1, 25): 0.7, (65, 128, 32, 64): 0.7, (65, 512, 64, 64): 0.9, (256, 1024, 64, 32): 0.9}


def _mark(ratio, goal) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f} {'ok' if ratio <= goal else 'MISS'} (goal <= {goal})"


def _peer(row, prefix):
    for name, entry in row["peers"].items():
        if name.startswith(prefix):
            return entry
    return None


def render(reports) -> str:
    lines = []
    for report in reports:
        for run in report["runs"]:
            threads = run["threads"]
            blas = run["environment"].get("blas")
            kernel = "; ".join(f"{b.get('internal_api')} {b.get('version') or ''} {b.get('architecture') or ''}".strip()
                               for b in blas) if isinstance(blas, list) else blas
            lines.append(f"\n**{threads} thread{'s' if threads > 1 else ''}** (BLAS: {kernel}; numpy {run['environment']['numpy']}, "
                         f"torch {run['environment'].get('torch')}, jax {run['environment'].get('jax')}; "
                         f"numpy GEMM best {run['gemm_peak_gflops']:.0f} GFLOP/s)\n")
            lines.append("| cell | (I=O, H, B, T) | bptt ms | vs torch | vs JAX | bptt GFLOP/s | of GEMM roof |")
            lines.append("|---|---|---|---|---|---|---|")
            for row in run["rows"]:
                size = (row["input_size"], row["hidden_size"], row["batch"], row["seq_len"])
                bptt = row["peers"]["bptt"]
                torch = _peer(row, "torch")
                jax = _peer(row, "jax")
                if row["cell"] == "rnn" and size in GOALS_RNN:
                    goal_torch, goal_jax = GOALS_RNN[size]
                    jax_text = _mark(jax and jax["ratio"], goal_jax)
                elif size in GOALS_GATED:
                    goal_torch = GOALS_GATED[size]
                    jax_text = f"{jax['ratio']:.2f}" if jax else "n/a"
                else:
                    goal_torch = float("inf")
                    jax_text = f"{jax['ratio']:.2f}" if jax else "n/a"
                roof = f"{bptt['peak_fraction']:.0%} of {row['gemm_gflops']:.0f}"
                if row["cell"] == "rnn" and size == (256, 1024, 64, 32):
                    roof += " ok" if bptt["peak_fraction"] >= 0.75 else " MISS (goal >= 75%)"
                lines.append(f"| {row['cell']} | {size} | {bptt['median_s'] * 1e3:.2f} | "
                             f"{_mark(torch and torch['ratio'], goal_torch)} | {jax_text} | "
                             f"{bptt['gflops']:.1f} | {roof} |")
            if run.get("memory"):
                lines.append("\n| memory | (I=O, H, B, T) | peak MiB | analytic min MiB | ratio | ratio counting returned dE/dh |")
                lines.append("|---|---|---|---|---|---|")
                for m in run["memory"]:
                    size = (m["input_size"], m["hidden_size"], m["batch"], m["seq_len"])
                    lines.append(f"| {m['cell']} | {size} | {m['peak_bytes'] / 2**20:.2f} | "
                                 f"{m['minimum_bytes'] / 2**20:.2f} | {m['ratio']:.2f} | {m['ratio_with_dh']:.2f} |")
            if run.get("sampling"):
                lines.append("\n| sampling | vocab, H | bptt chars/s | torch chars/s | bptt speed / torch |")
                lines.append("|---|---|---|---|---|")
                for s in run["sampling"]:
                    theirs = s.get("torch_chars_per_s")
                    lines.append(f"| {s['cell']} | {s['vocab']}, {s['hidden_size']} | {s['bptt_chars_per_s']:.0f} | "
                                 f"{theirs:.0f} | {s['ratio']:.2f} |" if theirs else
                                 f"| {s['cell']} | {s['vocab']}, {s['hidden_size']} | {s['bptt_chars_per_s']:.0f} | n/a | n/a |")
    return "\n".join(lines)


def compare(reports) -> str:
    """One line per (cell, size): each run's ratio vs torch and vs JAX side by side (A / B / ...),
    with the goal, so run-to-run noise is visible at a glance."""
    table = {}
    for report in reports:
        for run in report["runs"]:
            for row in run["rows"]:
                key = (row["cell"], (row["input_size"], row["hidden_size"], row["batch"], row["seq_len"]), run["threads"])
                torch, jax = _peer(row, "torch"), _peer(row, "jax")
                table.setdefault(key, []).append((torch and torch["ratio"], jax and jax["ratio"],
                                                  row["peers"]["bptt"]["peak_fraction"]))
    fmt = lambda values: " / ".join("n/a" if v is None else f"{v:.2f}" for v in values)
    lines = ["| cell | (I=O, H, B, T) | threads | vs torch, each run | goal | vs JAX, each run | goal | of GEMM roof |",
             "|---|---|---|---|---|---|---|---|"]
    for (cell, size, threads), runs in table.items():
        goal_torch = GOALS_RNN[size][0] if cell == "rnn" and size in GOALS_RNN else GOALS_GATED.get(size)
        goal_jax = GOALS_RNN[size][1] if cell == "rnn" and size in GOALS_RNN else None
        lines.append(f"| {cell} | {size} | {threads} | {fmt(r[0] for r in runs)} | "
                     f"{'<= ' + str(goal_torch) if goal_torch else '-'} | {fmt(r[1] for r in runs)} | "
                     f"{'<= ' + str(goal_jax) if goal_jax else '-'} | "
                     f"{' / '.join(f'{r[2]:.0%}' for r in runs)} |")
    return "\n".join(lines)


# Issue 20's goals: vs torch <= 0.8 at 1 thread (rnn at B = 1: <= 0.15), <= 0.7 at 2 threads; vs JAX
# <= 0.8; at B >= 32 the step within 1.15x of its own GEMM floor (bench/gemm_floor.py).
def _goal20_torch(cell, size, threads):
    if threads >= 2:
        return 0.7
    return 0.15 if cell == "rnn" and size[2] == 1 else 0.8


def render_issue20(reports, floors) -> str:
    """One row per (cell, size, threads): bptt ms, vs torch, vs JAX, bptt / GEMM floor, each marked."""
    # bptt / floor from gemm_floor.py --with-step (both timed interleaved, one load) when there,
    # else the report's bptt time over the floor timed later
    floor_of = {(f["cell"], tuple(f["size"]), f["threads"]): (f["floor_s"], f.get("bptt_interleaved_s"),
                                                              f.get("torch_interleaved_s"))
                for f in floors}
    # "GEMM floor / torch": the floor over torch's step timed interleaved with it (gemm_floor.py --with-torch):
    # the best "vs torch" any code calling numpy's BLAS could reach at that size.
    lines = ["| cell | (I=O, H, B, T) | threads | bptt ms | vs torch | vs JAX | bptt / GEMM floor | GEMM floor / torch |",
             "|---|---|---|---|---|---|---|---|"]
    for report in reports:
        for run in report["runs"]:
            for row in run["rows"]:
                size = (row["input_size"], row["hidden_size"], row["batch"], row["seq_len"])
                threads, bptt = run["threads"], row["peers"]["bptt"]["median_s"]
                torch, jax = _peer(row, "torch"), _peer(row, "jax")
                floor, own, torch_here = floor_of.get((row["cell"], size, threads), (None, None, None))
                ratio = None if floor is None else (own or bptt) / floor
                floor_text = "n/a" if floor is None else (_mark(ratio, 1.15) if size[2] >= 32 else f"{ratio:.2f}")
                reach = "n/a" if floor is None or not torch_here else f"{floor / torch_here:.2f}"
                lines.append(f"| {row['cell']} | {size} | {threads} | {bptt * 1e3:.2f} | "
                             f"{_mark(torch and torch['ratio'], _goal20_torch(row['cell'], size, threads))} | "
                             f"{_mark(jax and jax['ratio'], 0.8)} | {floor_text} | {reach} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--issue20":
        cut = args.index("--floors") if "--floors" in args else len(args)
        floors = [row for path in args[cut + 1:] for row in json.load(open(path))]
        print(render_issue20([json.load(open(path)) for path in args[1:cut]], floors))
    elif args and args[0] == "--compare":
        print(compare([json.load(open(path)) for path in args[1:]]))
    else:
        print(render([json.load(open(path)) for path in args]))
