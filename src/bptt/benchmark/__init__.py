"""Side-by-side timing of a training step against torch and JAX (``bptt bench``).

Not imported by ``import bptt``: the core stays numpy-only, and torch/JAX/threadpoolctl are
imported inside the worker when present. See docs/performance.md for how to read the output.
"""

from .runner import GOAL_SIZES, QUICK_SIZES, run_suite, run_worker

__all__ = ["GOAL_SIZES", "QUICK_SIZES", "run_suite", "run_worker"]
