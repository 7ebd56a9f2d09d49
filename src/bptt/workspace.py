"""Scratch arrays reused from one training step to the next.

A training step allocates the same large arrays every time (h_t for all t, the logits,
dE/dh_t, ...). Fresh ones cost more than their size suggests: the allocator hands big
arrays back to the operating system when they are freed, so the next step's arrays are
new pages that the kernel must fault in and zero on first touch -- about a fifth of a
mid-sized RNN step here (docs/performance.md). A ``Workspace`` keeps one array per name and
hands it out again while shape and dtype match (``np.empty`` semantics: contents undefined).

Only ``Network.loss_and_grads`` uses one, because nothing it returns (the loss, fresh
gradient arrays) can alias a scratch array; ``forward``/``backward``/``forward_backward``
return arrays to their caller and always allocate fresh ones.
"""

from __future__ import annotations

import threading

import numpy as np

# One lean step at a time in a process: a second thread stepping meanwhile gets fresh arrays.
LOCK = threading.Lock()


class Workspace:
    """Named arrays kept between calls; ``empty(name, shape, dtype)`` like ``np.empty``."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: tuple, dtype) -> np.ndarray:
        array = self.arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.empty(shape, dtype)
            self.arrays[name] = array
        return array

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def empty(workspace: Workspace | None, name: str, shape: tuple, dtype) -> np.ndarray:
    """A scratch array from ``workspace``, or a fresh ``np.empty`` when there is none."""
    if workspace is None:
        return np.empty(shape, dtype)
    return workspace.empty(name, shape, dtype)
