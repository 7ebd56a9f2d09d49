"""``bptt bench``: one training step of bptt side by side with torch and JAX.

Every peer runs the same float32 model and data with the same thread count, repeats
interleaved in one process per thread count, medians reported; ratio = bptt / peer
(below 1: bptt is faster). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from . import CLIError


def _size(text: str) -> tuple:
    try:
        parts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be I,H,B,T (four integers), got {text!r}") from None
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size must be I,H,B,T (four integers >= 1), got {text!r}")
    return parts


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time a training step against torch and JAX",
                       description="Time one float32 training step (forward + loss + every gradient) of bptt "
                                   "against torch.nn.RNN/LSTM/GRU + nn.Linear + cross-entropy + backward() and "
                                   "JAX jit(value_and_grad(lax.scan)), at the goal sizes of docs/performance.md, with pinned and "
                                   "equal thread counts, interleaved repeats and medians. Prints ratios "
                                   "(bptt time / peer time), GFLOP/s and the fraction of numpy's GEMM peak "
                                   "measured in the same run; --json writes everything, including threadpoolctl's report "
                                   "from inside each worker (needs threadpoolctl).")
    p.add_argument("--cells", nargs="+", choices=("rnn", "lstm", "gru"), default=["rnn"],
                   help="recurrent cells to time")
    p.add_argument("--sizes", nargs="+", type=_size, metavar="I,H,B,T", default=None,
                   help="sizes (input=output, hidden, batch, time)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                   help="thread counts, one worker each; every BLAS/OpenMP pool is pinned to it (environment "
                        "variables + threadpoolctl) and checked, and a count that did not hold is refused")
    p.add_argument("--peers", nargs="*", choices=("torch", "jax"), default=["torch", "jax"],
                   help="peers to time (skipped with a message when not installed)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved repeats per size")
    p.add_argument("--budget", type=float, default=20.0, help="seconds per size before repeats are cut (min 3)")
    p.add_argument("--no-extras", action="store_true", help="skip the memory and sampling measurements")
    p.add_argument("--quick", action="store_true", help="one tiny size, 3 repeats, 1 thread: a smoke test")
    p.add_argument("--clean-blas-env", action="store_true",
                   help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the workers (they can slow numpy)")
    p.add_argument("--json", metavar="PATH", help="write the full report here (atomically)")
    from . import show_defaults
    show_defaults(p, sizes="the four goal sizes of docs/performance.md")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..benchmark import GOAL_SIZES, QUICK_SIZES, run_suite

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if not args.budget > 0:
        raise ValueError(f"--budget must be > 0, got {args.budget}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for threads in args.threads:
        if not 1 <= threads <= cores:
            raise ValueError(f"--threads must be between 1 and the {cores} usable cores, got {threads}")
    sizes = QUICK_SIZES if args.quick else (args.sizes or GOAL_SIZES)
    threads = [1] if args.quick else args.threads
    repeats = 3 if args.quick else args.repeats
    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(directory):
            raise CLIError(f"--json: directory {directory!r} does not exist")
    try:
        report = run_suite(threads, [list(s) for s in sizes], args.cells, args.peers, repeats, args.budget,
                           extras=not args.no_extras, clean_blas_env=args.clean_blas_env)
    except RuntimeError as error:
        raise CLIError(str(error)) from None
    _print_summary(report)
    if args.json:
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _print_summary(report: dict) -> None:
    for run in report["runs"]:
        blas = run["environment"].get("blas")
        kernel = ", ".join(" ".join(str(b[k]) for k in ("internal_api", "version", "architecture") if b.get(k))
                           for b in blas) if isinstance(blas, list) else blas
        print(f"threads={run['threads']}: bptt on {run['environment'].get('bptt_path')}; BLAS {kernel}; GEMM peak {run['gemm_peak_gflops']:.1f} GFLOP/s; "
              f"torch {run['environment'].get('torch')}, jax {run['environment'].get('jax')}; "
              f"load average {run.get('load_average_start')} -> {run.get('load_average_end')} on {os.cpu_count()} cores")
        for note in run["skipped"]:
            print(f"  skipped: {note}")


def _write_json(path: str, report: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(report, handle, indent=1)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)                   # mkstemp makes 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
