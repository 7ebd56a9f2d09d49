"""How many BLAS threads the time loops use: ``bptt.set_threads(n)`` and the default.

Why this matters: inside the time loop every step is one small GEMM ``h_{t-1} W^T`` of shape
(B, H) x (H, G H) (G = 1 for the RNN, 3 for the GRU, 4 for the LSTM). Two BLAS threads split it
and then wait for each other at the end of every step; when the GEMM is small, or when another
job holds one of the cores, that wait costs more than the second thread gains (measured in
``bench/threads_default.py``: a loaded 2-core machine was 5x slower on two threads).

The default (``set_threads(None)`` / no ``--threads``):

  1. ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set in the environment:
     respected, nothing is changed (the user or the cluster's launcher chose);
  2. otherwise one thread, unless the step's recurrent GEMM is large (B * G * H^2 >= ``LARGE_GEMM``)
     -- then as many as there are idle cores (``idle_cores()``: /proc/stat sampled over 0.1 s, else
     ``os.getloadavg``), at most the cores this process may run on (``os.sched_getaffinity``).

threadpoolctl (a core dependency, pure Python) does the setting; without it the functions
report that nothing could be set and change nothing, so the core still imports with numpy alone.
"""

from __future__ import annotations

import os
import time

# B * G * H^2 of the per-step recurrent GEMM above which a second thread pays on an idle
# machine. Measured with bench/threads_default.py on the 2-core AMD EPYC, idle, once the LSTM/GRU time
# loops were compiled (numpy's BLAS called inside): 2 threads took 0.71x the time of 1 at H = 128,
# B = 32 for the RNN (0.5M) and 0.64x for a 2-layer LSTM (2M), 0.55x at H = 512, B = 64 (16.8M); an
# earlier measurement (per-step numpy loops) had put the break-even near 8M. Below 2^18 (e.g. B = 1)
# a step's GEMMs are too small to split. On a loaded machine idle cores, not this, decide.
LARGE_GEMM = 1 << 18
ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}

_limiter = None          # the threadpoolctl limiter of the last set_threads (keeps the setting alive)
_choice = None           # (threads, reason) of the last set_threads


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), else os.cpu_count()."""
    return max(1, len(_affinity()))


def _affinity():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times(cpus) -> tuple[int, int]:
    """(idle, total) jiffies summed over the given cores, from /proc/stat's ``cpuN`` lines."""
    wanted = {f"cpu{i}" for i in cpus}
    idle = total = 0
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in wanted:
                fields = [int(v) for v in parts[1:9]]
                idle += fields[3] + fields[4]                  # idle + iowait
                total += sum(fields)                           # user .. steal (guest is inside user)
    return idle, total


def idle_cores(window: float = 0.1) -> float:
    """How many of the cores this process may run on are idle now: their share of idle time in
    /proc/stat over ``window`` seconds (Linux), else cores minus the 1-minute load average. The
    load average lags by a minute, so a job that just started is seen only by the first."""
    cpus = _affinity()
    try:
        idle0, total0 = _cpu_times(cpus)
        time.sleep(window)
        idle1, total1 = _cpu_times(cpus)
        if total1 > total0:
            return len(cpus) * (idle1 - idle0) / (total1 - total0)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return max(0.0, len(cpus) - os.getloadavg()[0])
    except (AttributeError, OSError):
        return float(len(cpus))


def gemm_size(cell: str = "rnn", hidden: int = 0, batch: int = 0) -> int:
    """B * G * H^2: the multiply-adds of one step's recurrent GEMM."""
    return int(batch) * _GATES.get(cell, 1) * int(hidden) ** 2


def default_threads(cell: str = "rnn", hidden: int = 0, batch: int = 0) -> tuple[int, str]:
    """(threads, why) for a step of this size on this machine now; see the module docstring."""
    size = gemm_size(cell, hidden, batch)
    if size < LARGE_GEMM:
        return 1, "auto: small per-step GEMMs" if size else "auto"
    idle = int(idle_cores() + 0.25)                  # a core 75% idle counts as idle
    n = max(1, min(usable_cores(), idle))
    return n, f"auto: large per-step GEMMs, {idle} idle core{'s' if idle != 1 else ''}"


def set_threads(n: int | None = None, *, cell: str = "rnn", hidden: int = 0, batch: int = 0,
                reason: str = "set") -> int:
    """Set the BLAS thread count for everything that follows (all BLAS libraries numpy loaded).

    ``n`` >= 1: exactly that many. ``None``: the default -- respect OPENBLAS/OMP/MKL_NUM_THREADS if
    set, else ``default_threads(cell, hidden, batch)``. ``reason`` is what ``describe()`` says of an
    explicit ``n``. Returns the number of threads now in effect."""
    global _limiter, _choice
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    else:
        env = next((name for name in ENV_VARS if os.environ.get(name)), None)
        if env is not None:
            _choice = (current_threads(), f"from {env}")
            return _choice[0]
        n, reason = default_threads(cell, hidden, batch)
    _load_kernels()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                      # core without its dependency: leave BLAS as it is
        _choice = (current_threads(), "threadpoolctl missing: BLAS default")
        return _choice[0]
    _limiter = threadpool_limits(limits=n, user_api="blas")
    _choice = (n, reason)
    return n


def _load_kernels() -> None:
    """threadpoolctl limits the BLAS libraries loaded *now*. numba (bptt.kernels) loads scipy's
    OpenBLAS beside numpy's when it compiles (its BLAS binding, scipy.linalg.cython_blas), so load
    both first and limit them alike; without the kernels nothing extra is imported."""
    from . import kernels

    try:
        if kernels.enabled():
            import scipy.linalg.cython_blas  # noqa: F401
    except (ImportError, ValueError):        # a bad BPTT_KERNELS is reported where it is used
        pass


def current_threads() -> int:
    """The BLAS thread count threadpoolctl reports now (the largest over the libraries; 0: unknown)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 0
    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return max(counts) if counts else 0


def describe() -> str:
    """For the train header: ``BLAS threads 1 (auto: small per-step GEMMs)``."""
    if _choice is None:
        return f"BLAS threads {current_threads() or '?'}"
    return f"BLAS threads {_choice[0]} ({_choice[1]})"
