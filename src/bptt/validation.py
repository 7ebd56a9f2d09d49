"""Argument checks with messages that name the argument and the value.

Every public entry point validates up front, so a user sees
``ValueError: hidden_size must be >= 1, got 0`` instead of a shape error deep inside
a matrix product.
"""

from __future__ import annotations

import numbers

import numpy as np

DTYPES = ("float32", "float64")


def positive_int(name: str, value) -> int:
    """An int >= 1 (bools are refused: True is not a size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def positive_float(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def one_of(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def dtype(value) -> np.dtype:
    try:
        dt = np.dtype(value)
    except TypeError:
        raise ValueError(f"dtype must be one of {DTYPES}, got {value!r}") from None
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {value!r}")
    return dt


def float_array(name: str, value, shape: tuple, dt: np.dtype) -> np.ndarray:
    """A finite floating array of exactly ``shape`` (None in shape means any size),
    converted to ``dt``. Integer arrays are refused: they are token ids, not features."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fc" and arr.dtype != bool:
        if arr.dtype.kind in "iu":
            raise ValueError(f"{name} must be a float array of shape {_fmt(shape)}, got integer dtype {arr.dtype}")
        raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    _check_shape(name, arr, shape)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains a non-finite value {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return np.ascontiguousarray(arr, dtype=dt)


def id_array(name: str, value, shape: tuple, vocab_size: int) -> np.ndarray:
    """Integer token ids of ``shape`` with every id in [0, vocab_size)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer token ids of shape {_fmt(shape)}, got dtype {arr.dtype}")
    _check_shape(name, arr, shape)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} holds token id {bad}, outside [0, {vocab_size})")
    return np.ascontiguousarray(arr, dtype=np.intp)


def _check_shape(name: str, arr: np.ndarray, shape: tuple) -> None:
    ok = arr.ndim == len(shape) and all(want is None or want == got for want, got in zip(shape, arr.shape))
    if not ok:
        raise ValueError(f"{name} must have shape {_fmt(shape)}, got {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def lengths_array(name: str, value, batch: int, seq_len: int, allow_zero: bool = False) -> np.ndarray:
    """Sequence lengths: integers of shape (batch,), each in [1, seq_len] ([0, seq_len] with allow_zero)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.dtype == bool:
        raise ValueError(f"{name} must be an integer array of shape ({batch},), got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},) (one length per sequence), got {arr.shape}")
    low = 0 if allow_zero else 1
    lo, hi = int(arr.min()), int(arr.max())
    if lo < low or hi > seq_len:
        bad = lo if lo < low else hi
        where = int(np.flatnonzero(arr == bad)[0])
        raise ValueError(f"{name}[{where}] = {bad} is outside [{low}, {seq_len}] (the padded length T = {seq_len})")
    return arr.astype(np.int64)
