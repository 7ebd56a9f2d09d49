"""Optional compiled kernels (numba) for the element-wise work inside the time loops.

numpy cannot fuse element-wise operations: an LSTM step after its GEMM is ten numpy calls,
each reading and writing (B, H) blocks and paying ~1 us of call overhead. A numba kernel
does the same arithmetic in one pass per step. The GEMMs stay in numpy (the same BLAS
either way), so a kernel changes only the element-wise part, and the numpy code in
``bptt.layers`` remains the reference the kernels are tested against
(``tests/test_kernels.py``).

Which path runs is decided by the environment variable ``BPTT_KERNELS``:

    auto       (default) numba kernels when numba is installed (``pip install bptt[fast]``)
    numba      numba kernels, and an error if numba is missing
    numpy      the fast paths without numba: the same loops in tuned numpy calls
    reference  no fast path at all: each layer runs its own readable numpy loop in
               ``bptt.layers`` (the equations of its docstring, one line each) -- the
               reference every fast path is tested against

or in code by ``bptt.kernels.use("numpy" | "numba" | "auto")`` (returns the previous
setting; ``with bptt.kernels.using("numpy"): ...`` restores it). The core never needs numba.

Where numpy's own BLAS gemm can be called from compiled code (kernels/blas.py: numpy's wheel
OpenBLAS), the LSTM (float32) and GRU (torch variant) run their whole time loops compiled, each
step's GEMM included: ``loops_enabled(dtype)``; ``set_loops(False)`` keeps the per-step Python
loop (for A/B runs and tests).

Differences from the numpy path: float32 tanh and sigmoid are a rational approximation
(kernels/common.py, at most ~6 units in the last place, where numpy's is ~1.4), and sums
are formed in the same order, so float32 results agree with the numpy path to a few ulp
per step; float64 uses libm's tanh (exact to an ulp), so the float64 finite-difference and
torch-parity checks hold for the kernels as they do for numpy.
"""

from __future__ import annotations

import contextlib
import os

MODES = ("auto", "numba", "numpy", "reference")
_mode: str | None = None        # set by use(); None -> read BPTT_KERNELS
_numba_ok: bool | None = None   # cached: is numba importable?


def _numba_importable() -> bool:
    global _numba_ok
    if _numba_ok is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            _numba_ok = False
        else:
            _numba_ok = True
    return _numba_ok


_enabled: bool | None = None    # cached answer of enabled(); reset by use()


def mode() -> str:
    """The current setting: use()'s, else BPTT_KERNELS, else "auto"."""
    if _mode is not None:
        return _mode
    value = os.environ.get("BPTT_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"BPTT_KERNELS must be one of {MODES}, got {value!r}")
    return value


def enabled() -> bool:
    """True when the layers should run their numba kernels. Asked once per layer call, so the
    answer is cached: BPTT_KERNELS is read on the first call; use() changes it later."""
    global _enabled
    if _enabled is None:
        m = mode()
        if m == "numba" and not _numba_importable():
            raise ImportError("BPTT_KERNELS=numba but numba is not installed: pip install 'bptt[fast]'")
        _enabled = m not in ("numpy", "reference") and _numba_importable()
    return _enabled


_fast: bool | None = None       # cached answer of fast_paths(); reset by use()


def fast_paths() -> bool:
    """False only under ``reference``: the layers then run their readable loops (layers/), never the
    tuned ones behind ``bptt.kernels`` (numpy or numba). Cached as enabled() is."""
    global _fast
    if _fast is None:
        _fast = mode() != "reference"
    return _fast


def check_setting() -> None:
    """Raise now (ValueError / ImportError naming the value) if BPTT_KERNELS is not a mode, or asks
    for numba where it is missing; "auto" and "numpy" do not import numba here."""
    if mode() == "numba":
        enabled()


def use(new_mode: str) -> str:
    """Choose the path for this process ("auto", "numba" or "numpy"); returns the previous setting."""
    global _mode, _enabled, _fast
    if new_mode not in MODES:
        raise ValueError(f"kernels mode must be one of {MODES}, got {new_mode!r}")
    previous = mode()
    _mode, _enabled, _fast = new_mode, None, None
    return previous


@contextlib.contextmanager
def using(new_mode: str):
    """``with using("numpy"): ...`` runs the block on that path and restores the previous one."""
    global _mode, _enabled, _fast
    saved = _mode
    use(new_mode)
    try:
        yield
    finally:
        _mode, _enabled, _fast = saved, None, None


_loops = True                   # set_loops()


def loops_enabled(dtype) -> bool:
    """True when the compiled whole-loop kernels (each step's GEMM inside, numpy's BLAS) should run
    for this dtype: the kernels are enabled, kernels/blas.py found numpy's gemm, set_loops(True)."""
    if not (_loops and enabled()):
        return False
    from .blas import gemm_for
    return gemm_for(dtype) is not None


def set_loops(flag: bool) -> bool:
    """Allow (True, the default) or forbid (False) the compiled whole-loop kernels; returns the
    previous setting."""
    global _loops
    previous, _loops = _loops, bool(flag)
    return previous


def describe() -> str:
    """One line for reports: which path runs, and why."""
    m = mode()
    if m == "reference":
        return "reference numpy loops (BPTT_KERNELS=reference)"
    if m == "numpy":
        return "numpy (BPTT_KERNELS=numpy)"
    if _numba_importable():
        import numba
        loops = " (LSTM/GRU time loops compiled, numpy's BLAS gemm inside)" if loops_enabled("float32") else ""
        return f"numba {numba.__version__} kernels{loops}"
    return "numpy (numba not installed)"
