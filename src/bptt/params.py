"""``net.params``: the name -> live-array mapping every optimiser updates in place, and why assigning
to it copies instead of rebinding."""

from __future__ import annotations

import numpy as np


class ParamDict(dict):
    """``net.params``: name -> the live array a layer computes with.

    Assigning ``params[name] = array`` copies into the live array (a plain dict would rebind the
    name and leave the layer computing with its old array -- a silent no-op). New names and
    deletion are refused."""

    def __setitem__(self, name, value):
        if name not in self:
            raise KeyError(f"params has no parameter {name!r}; the names are {sorted(self)}")
        live = dict.__getitem__(self, name)
        if value is live:
            return
        copy_into(name, live, value)

    def __delitem__(self, name):
        raise TypeError("parameters cannot be deleted from net.params")

    def pop(self, *args):
        raise TypeError("parameters cannot be removed from net.params")

    def update(self, *args, **kwargs):
        for name, value in dict(*args, **kwargs).items():
            self[name] = value


def copy_into(name: str, live: np.ndarray, value) -> None:
    """live[...] = value, refusing a wrong shape or a non-float dtype (ValueError naming both)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise ValueError(f"parameter {name!r} must be a float array, got dtype {arr.dtype}")
    if arr.shape != live.shape:
        raise ValueError(f"parameter {name!r} must have shape {live.shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"parameter {name!r} contains a non-finite value")
    live[...] = arr
