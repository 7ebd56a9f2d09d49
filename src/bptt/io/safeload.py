"""Checks a checkpoint file must pass before any of its arrays is read or any network is built.

A checkpoint may come from anyone (a colleague, a download), so loading trusts nothing in it:

1. ``inspect_archive(path)``: the file is a zip whose members are all ``.npy`` arrays, stored
   uncompressed (as ``np.savez`` writes them: no zip bombs), each with a numeric dtype -- an
   object array (which only ``pickle`` could load, and unpickling runs code) is refused by
   name -- and each member's size equals what its ``.npy`` header declares (shape x itemsize),
   and no member claims more bytes than the file holds. Only the headers (a few hundred bytes
   each) are read; so the arrays ``np.load`` then allocates are bounded by the file's size.
2. ``check_config_fits(path, config, params)``: the network config in the metadata agrees with
   the stored parameter arrays (hidden/input/output sizes, layer count, dtype) *before*
   ``Network(**config)`` allocates anything -- a hand-edited ``hidden_size: 10**7`` is refused
   instead of allocating terabytes -- and every parameter is finite (bptt never writes a NaN).

Every refusal is a ValueError with one line naming the file, the member and the values.
"""

from __future__ import annotations

import math
import numbers
import os
import zipfile

import numpy as np

from ..training.numerics import describe_nonfinite, first_nonfinite

ALLOWED_KINDS = "fiub"            # float, signed/unsigned integers, bool: no objects, no structs
MAX_MEMBERS = 100_000
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "mingru": 2, "minlstm": 3}
NO_RECURRENT_MATRIX = ("mingru", "minlstm")      # cells whose recurrence is element-wise: no W


def inspect_archive(path) -> dict:
    """``{member name without .npy: (dtype, shape)}`` after the checks in the module doc."""
    path = os.fspath(path)
    on_disk = os.path.getsize(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:     # ValueError: e.g. negative seek
        raise ValueError(f"{path} is corrupt or not a bptt checkpoint (not a zip of arrays: {error})") from None
    found = {}
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"{path} is not a bptt checkpoint: {len(infos)} members (at most {MAX_MEMBERS})")
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"{path} is not a bptt checkpoint: member {name!r} is not a .npy array")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {name!r} is compressed; bptt checkpoints are written "
                                 f"uncompressed (np.savez), refusing to inflate it")
            if info.file_size > on_disk:
                raise ValueError(f"{path} is corrupt: member {name!r} claims {info.file_size} bytes, more than "
                                 f"the whole file ({on_disk})")
            dtype, shape, header_bytes = _read_header(path, archive, info)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {name!r} is a Python object array (dtype {dtype}), which only "
                                 f"pickle can load -- refused: checkpoints never run code")
            if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None:
                raise ValueError(f"{path}: member {name!r} has dtype {dtype}, not a numeric array")
            data_bytes = math.prod(shape) * dtype.itemsize
            if header_bytes + data_bytes != info.file_size:
                raise ValueError(f"{path} is corrupt: member {name!r} declares shape {shape} {dtype} "
                                 f"({data_bytes} bytes) but holds {info.file_size - header_bytes} bytes")
            found[name[:-len(".npy")]] = (dtype, shape)
    return found


def _read_header(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """(dtype, shape, header length in bytes) of one ``.npy`` member, reading only its header."""
    fmt = np.lib.format
    try:
        with archive.open(info) as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy version {version}")
            return np.dtype(dtype), tuple(int(n) for n in shape), f.tell()
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, SyntaxError, TypeError) as error:
        raise ValueError(f"{path} is corrupt: member {info.filename!r} has no valid .npy header "
                         f"({type(error).__name__}: {error})") from None


def _int(value) -> int | None:
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def check_config_fits(path, config: dict, params: dict) -> None:
    """Refuse a config whose sizes disagree with the stored parameters (see the module doc).
    Values of the wrong type are left for ``Network``'s own validation to name."""
    H, I, L = _int(config.get("hidden_size")), _int(config.get("input_size")), _int(config.get("num_layers"))
    O = config.get("output_size")
    gates = GATES.get(config.get("cell"))
    dirs = 2 if config.get("bidirectional") is True else 1
    if None in (H, I, L) or gates is None or H < 1 or I < 1 or L < 1:
        return
    stored_layers = {name.split(".")[1] for name in params if name.startswith("layers.")}
    if L != len(stored_layers):
        raise ValueError(f"{path}: the config says num_layers={L} but the file stores {len(stored_layers)} layers "
                         f"of parameters: the config was edited or the arrays come from another model")
    E = _int(config.get("embedding_size"))          # an embedding (I, E) feeds layer 0 instead of the ids
    expect = {"layers.0.U": (gates * H, I if E is None else E)}
    if E is not None:
        expect["embedding"] = (I, E)
    R = _int(config.get("proj_size")) or H           # what h holds: P for an LSTM with projection
    for k in range(L if config.get("cell") not in NO_RECURRENT_MATRIX else 0):
        expect[f"layers.{k}.W"] = (gates * H, R)
    if O is not None and _int(O) is not None and config.get("tie_weights") is not True:   # tied: V is the embedding
        expect["V"] = (int(O), dirs * R)
    for name, shape in expect.items():
        if name not in params:
            raise ValueError(f"{path}: parameter {name} is missing (the config describes a {config.get('cell')} "
                             f"network with {L} layers)")
        if tuple(params[name].shape) != shape:
            raise ValueError(f"{path}: parameter {name} has shape {tuple(params[name].shape)} but the config "
                             f"(hidden_size={H}, input_size={I}, output_size={O}, cell={config.get('cell')}) "
                             f"implies {shape}: the config was edited or the arrays come from another model")
    bad = first_nonfinite(params)
    if bad is not None:
        raise ValueError(f"{path} is corrupt: parameter {describe_nonfinite(bad, params[bad])} is not finite")
    dtype = config.get("dtype")
    if isinstance(dtype, str):
        for name, a in params.items():
            if a.dtype.name != dtype:
                raise ValueError(f"{path}: parameter {name} is {a.dtype.name} but the config says dtype={dtype}")
