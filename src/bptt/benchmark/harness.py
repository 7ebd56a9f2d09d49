"""Timing done fairly: pinned threads, interleaved repeats, medians, and the machine's own
GEMM peak measured in the same process for scale.

Rules the numbers obey (see docs/performance.md):
- every peer runs with the same thread count: the process is pinned to that many cores
  (sched_setaffinity), numpy's BLAS by threadpoolctl, torch by ``torch.set_num_threads``,
  XLA by ``XLA_FLAGS`` set before jax is imported (``worker`` runs one process per count);
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


def pin_threads(threads: int) -> dict:
    """Pin this process and every thread pool we know of to ``threads`` cores.
    Call before importing jax. Returns what was done, for the report."""
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
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
        done["limiter"] = threadpool_limits(limits=threads)   # kept alive by the caller
    except ImportError:
        done["limiter"] = None
    try:
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    return done


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
                        for pool in threadpool_info()]
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
