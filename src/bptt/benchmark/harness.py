"""Timing done fairly: pinned threads, interleaved repeats, medians, and the machine's own
GEMM peak measured in the same process for scale.

Rules the numbers obey (see docs/performance.md):
- every peer runs with the same thread count: the process is pinned to that many cores
  (sched_setaffinity), every BLAS/OpenMP runtime by environment variables set before it is
  loaded and by threadpoolctl, torch by ``torch.set_num_threads``, XLA by ``XLA_FLAGS`` set
  before jax is imported (``worker`` runs one process per count); ``check_threads`` then reads
  threadpoolctl's report and a row whose thread count is not what was asked is not printed;
- repeats are interleaved (bptt, torch, jax, torch, jax, bptt, ...: the order rotates) so a
  burst of load on this shared machine hits every peer alike, and so does whatever the previous
  callable left behind; each peer's time is the median of its repeats;
- ratio = bptt time / peer time (< 1 means bptt is faster).
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np


# The variables every BLAS / OpenMP runtime we may load reads once, when it is loaded: ``run_suite``
# sets them in the worker's environment, so they hold before numpy (or torch, scipy) is imported.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


class ThreadsNotEnforced(RuntimeError):
    """The worker could not make (or could not check that) every BLAS pool runs ``threads`` threads."""


def thread_variables(threads: int) -> dict:
    """Environment entries that cap every thread pool at ``threads`` (for a worker's environment)."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        raise ThreadsNotEnforced("threadpoolctl is not installed, so bptt bench can neither limit nor check "
                                 "numpy's BLAS threads: pip install threadpoolctl") from None
    return threadpoolctl


def pin_threads(threads: int) -> dict:
    """Pin this process and every thread pool we know of to ``threads`` cores.
    Call before importing jax. Returns what was done, for the report; raises
    ThreadsNotEnforced when threadpoolctl (the only way to check numpy's BLAS) is missing."""
    threadpoolctl = _threadpoolctl()
    done = {"threads": threads}
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if threads <= len(cores):
            os.sched_setaffinity(0, cores[:threads])
            done["cores"] = cores[:threads]
    # XLA reads its flags once, at first import: only effective before jax is imported.
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["XLA_FLAGS"] = flags.strip()
    os.environ.update(thread_variables(threads))       # for runtimes loaded from now on
    try:
        import torch                                   # loads its own OpenMP runtime
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    try:
        import scipy.linalg  # noqa: F401  (its own OpenBLAS, which numba's np.dot calls)
    except ImportError:
        pass
    # Limits every pool loaded by now (numpy's and scipy's OpenBLAS, torch's libgomp);
    # kept alive by the caller for the whole run.
    done["limiter"] = threadpoolctl.threadpool_limits(limits=threads)
    return done


def check_threads(threads: int) -> list:
    """threadpoolctl's report of every BLAS and OpenMP pool in this process, checked: raises
    ThreadsNotEnforced unless each runs exactly ``threads`` threads (and at least one BLAS, numpy's,
    was found). The report goes into the JSON, per row, as the proof of the thread count."""
    threadpoolctl = _threadpoolctl()
    pools = [{k: pool.get(k) for k in ("user_api", "internal_api", "prefix", "version", "architecture",
                                        "num_threads", "threading_layer", "filepath")}
             for pool in threadpoolctl.threadpool_info()]
    if not any(p["user_api"] == "blas" for p in pools):
        raise ThreadsNotEnforced("threadpoolctl finds no BLAS library in this process, so the thread count "
                                 "of numpy's matrix products cannot be checked")
    wrong = [f"{p['prefix'] or p['internal_api']} {p['user_api']} runs {p['num_threads']}" for p in pools
             if p["num_threads"] != threads]
    try:
        import torch
        if torch.get_num_threads() != threads:
            wrong.append(f"torch runs {torch.get_num_threads()}")
    except ImportError:
        pass
    if wrong:
        raise ThreadsNotEnforced(f"asked for {threads} thread(s), but " + ", ".join(wrong))
    return pools


def environment() -> dict:
    """BLAS kernel, library versions and the environment variables that change speed."""
    info = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                   "XLA_FLAGS", "BPTT_KERNELS")}}
    from .. import kernels
    info["bptt_path"] = kernels.describe()      # numpy calls or the numba kernels (bptt.kernels)
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                                   "threading_layer")}
                        for pool in threadpool_info() if pool.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    for module in ("torch", "jax"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def gemm_reference(size: int = 1024, dtype=np.float32):
    """A callable doing one (size x size) @ (size x size) numpy GEMM, and its flops.

    Timed right before and right after each row of peers, it gives the GEMM speed under about
    the load the peers saw: on a shared machine a peak measured once would drift with
    whatever else ran at that moment."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty_like(a)

    def gemm() -> None:
        np.dot(a, b, out=out)

    return gemm, 2.0 * size ** 3


def gemm_peak(size: int = 1024, repeats: int = 7, dtype=np.float32) -> float:
    """numpy's float32 GEMM speed in GFLOP/s on a square (size x size) product: the roof
    every recurrent step is measured against. Best of ``repeats`` (a peak, not a typical)."""
    gemm, flops = gemm_reference(size, dtype)
    gemm()                                             # warm up the BLAS threads and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gemm()
        times.append(time.perf_counter() - start)
    return flops / float(np.min(times)) / 1e9


def interleaved(steps: dict, repeats: int, warmup: int = 2, budget_s: float | None = None) -> dict:
    """Median seconds per call of each callable in ``steps`` (name -> fn), calls interleaved.

    ``budget_s`` cuts the repeats short (but never below 3) when a size is slow."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    names = list(steps)
    start_all = time.perf_counter()
    for r in range(repeats):
        # Rotate who goes first: whatever one callable leaves behind (caches and TLBs flushed by
        # a big GEMM, a slower AVX-512 clock, another runtime's spinning threads) then hits every
        # callable equally often. Measured: a small bptt step right after the 1024^3 reference
        # GEMM took 0.80 ms against 0.22 ms alone.
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
        if budget_s is not None and r >= 2 and time.perf_counter() - start_all > budget_s:
            break
    return {name: {"median_s": float(np.median(t)), "min_s": float(np.min(t)), "repeats": len(t),
                   "spread": float((np.percentile(t, 75) - np.percentile(t, 25)) / np.median(t))}
            for name, t in times.items()}
