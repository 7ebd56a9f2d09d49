"""Run the benchmark suite: one worker process per thread count, every peer interleaved.

``run_suite`` (what ``bptt bench`` calls) starts ``python -m bptt.benchmark`` once per
thread count, because XLA fixes its thread pool when jax is first imported; inside a
worker every size runs bptt, torch and JAX side by side (``harness.interleaved``).
Output: one JSON-serialisable dict (``schema`` below) with per-row medians, ratios
(bptt / peer), GFLOP/s and the fraction of the GEMM peak measured in the same worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

# The sizes of issue 7: (I = O, H, B, T).
GOAL_SIZES = [(65, 64, 1, 25), (65, 128, 32, 64), (65, 512, 64, 64), (256, 1024, 64, 32)]
QUICK_SIZES = [(7, 8, 2, 5)]
SCHEMA = "bptt-bench/1"


def _row(problem, results: dict, contestants: dict, gemm_flops: float) -> dict:
    gemm = results.pop("gemm")
    peak = gemm_flops / gemm["median_s"] / 1e9          # numpy GEMM speed under this row's load
    bptt = results["bptt"]["median_s"]
    row = {"cell": problem.cell, "input_size": problem.input_size, "hidden_size": problem.hidden_size,
           "batch": problem.batch, "seq_len": problem.seq_len, "gflop_per_step": contestants["bptt"].flops / 1e9,
           "gemm_gflops": peak, "peers": {}}
    for name, timing in results.items():
        gflops = contestants[name].flops / timing["median_s"] / 1e9
        entry = dict(timing, gflops=gflops, peak_fraction=gflops / peak)
        if name != "bptt":
            entry["ratio"] = bptt / timing["median_s"]          # bptt time / peer time
        row["peers"][contestants[name].name if name != "bptt" else "bptt"] = entry
    return row


def run_worker(threads: int, sizes, cells, peers, repeats: int, budget_s: float, extras: bool,
               log=print) -> dict:
    """Everything measured at one thread count, in this process."""
    from . import harness
    pinned = harness.pin_threads(threads)              # before jax is imported
    from .peers import PEERS, Problem, bptt_contestant

    pools = harness.check_threads(threads)            # refuse the whole run if the pin did not hold
    peak = harness.gemm_peak()
    gemm, gemm_flops = harness.gemm_reference()
    report = {"threads": threads, "cores": pinned.get("cores"), "gemm_peak_gflops": peak, "threadpools": pools,
              "load_average_start": _load(),
              "environment": harness.environment(), "rows": [], "skipped": []}
    log(f"[{threads} thread{'s' if threads > 1 else ''}] numpy float32 GEMM peak {peak:.1f} GFLOP/s (best of 7); "
        "each row's % is of the GEMM timed just before and after that row")
    for cell in cells:
        for (I, H, B, T) in sizes:
            problem = Problem(cell, I, H, B, T)
            try:
                contestants = {"bptt": bptt_contestant(problem)}
            except ValueError as error:                 # e.g. a cell this checkout lacks
                report["skipped"].append(f"{problem.label}: bptt: {error}")
                log(f"  skip {problem.label}: {error}")
                continue
            weights = {n: v.copy() for n, v in contestants["bptt"].step.net.params.items()}
            for peer in peers:
                try:
                    contestants[peer] = PEERS[peer](problem, weights)
                except ImportError as error:
                    note = f"{peer} not installed ({error}); pip install {peer}"
                    if note not in report["skipped"]:
                        report["skipped"].append(note)
                        log(f"  skip {note}")
                except (ValueError, KeyError, NotImplementedError) as error:
                    report["skipped"].append(f"{problem.label}: {peer}: {error}")
            losses = {name: c.step() for name, c in contestants.items()}
            try:                                       # the peers may have loaded runtimes of their own
                pools = harness.check_threads(threads)
            except harness.ThreadsNotEnforced as error:
                report["skipped"].append(f"{problem.label}: not timed: {error}")
                log(f"  refused {problem.label}: {error}")
                continue
            steps = {n: c.step for n, c in contestants.items()}
            # The roof: the reference GEMM timed just before and just after the row, so it sees
            # about the same load -- but not inside the interleaved loop, where its flushed caches
            # and AVX-512 clock slowed whichever small step ran next (0.80 vs 0.22 ms measured).
            before = harness.interleaved({"gemm": gemm}, 3, warmup=1)["gemm"]
            results = harness.interleaved(steps, repeats, budget_s=budget_s)
            after = harness.interleaved({"gemm": gemm}, 3, warmup=0)["gemm"]
            results["gemm"] = {"median_s": (before["median_s"] + after["median_s"]) / 2}
            row = _row(problem, results, contestants, gemm_flops)
            row["losses"] = losses                     # equal to ~1e-5: the peers do the same sum
            row["threadpools"] = pools                 # threadpoolctl's report, checked, for this row
            report["rows"].append(row)
            log("  " + format_row(row))
    report["load_average_end"] = _load()            # others' work on a shared machine skews every number
    if extras:
        from .extras import memory_rows, sampling_rows
        report["memory"] = memory_rows(sizes, cells, log=log)
        report["sampling"] = sampling_rows(cells, quick=sizes == QUICK_SIZES, log=log)
    return report


def _load():
    """The 1-minute load average (None where the OS has none): how busy the machine was."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def format_row(row: dict) -> str:
    peers = row["peers"]
    bptt = peers["bptt"]
    text = (f"{row['cell']:4s} I=O={row['input_size']:<4d} H={row['hidden_size']:<5d} B={row['batch']:<3d} "
            f"T={row['seq_len']:<3d}  bptt {bptt['median_s'] * 1e3:9.3f} ms {bptt['gflops']:6.1f} GF/s "
            f"({bptt['peak_fraction']:4.0%} of GEMM {row['gemm_gflops']:.0f})")
    for name, entry in peers.items():
        if name != "bptt":
            text += f" | {name} {entry['median_s'] * 1e3:9.3f} ms ratio {entry['ratio']:.2f}"
    return text


def run_suite(threads_list, sizes, cells, peers, repeats: int, budget_s: float, extras: bool,
              log=print, clean_blas_env: bool = False) -> dict:
    """One worker process per thread count; their reports merged into one dict."""
    suite = {"schema": SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "command": " ".join(sys.argv), "repeats": repeats, "runs": []}
    from .harness import thread_variables

    for threads in threads_list:
        env = dict(os.environ)
        env.update(thread_variables(threads))          # read by each BLAS/OpenMP runtime as it loads
        if clean_blas_env:                              # see docs/performance.md: these can slow OpenBLAS
            env.pop("OPENBLAS_CORETYPE", None)
            env.pop("OPENBLAS_L2_SIZE", None)
        job = {"threads": threads, "sizes": sizes, "cells": cells, "peers": peers, "repeats": repeats,
               "budget_s": budget_s, "extras": extras and threads == threads_list[0]}
        proc = subprocess.Popen([sys.executable, "-m", "bptt.benchmark", json.dumps(job)],
                                env=env, stdout=subprocess.PIPE, text=True)
        report = None
        for line in proc.stdout:                        # progress lines, then one JSON line
            if line.startswith("{"):
                report = json.loads(line)
            else:
                log(line.rstrip())
        if proc.wait() != 0 or report is None or "error" in report:
            why = report["error"] if report and "error" in report else f"exit {proc.returncode}"
            raise RuntimeError(f"benchmark worker for {threads} thread(s) failed: {why}")
        suite["runs"].append(report)
    return suite


def worker_main(argv) -> int:
    from .harness import ThreadsNotEnforced

    job = json.loads(argv[0])
    try:
        report = run_worker(job["threads"], [tuple(s) for s in job["sizes"]], job["cells"], job["peers"],
                            job["repeats"], job["budget_s"], job["extras"], log=lambda s: print(s, flush=True))
    except ThreadsNotEnforced as error:                # one line for the parent: no row is printed
        print(json.dumps({"error": str(error)}), flush=True)
        return 3
    print(json.dumps(report), flush=True)
    return 0
