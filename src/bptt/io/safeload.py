"""Checks a checkpoint file must pass before any of its arrays is read or any network is built.

A checkpoint may come from anyone (a colleague, a download), so loading trusts nothing in it:

1. ``inspect_archive(path)``: the zip's layout first -- at most MAX_MEMBERS entries (read from the
   end-of-central-directory record before zipfile parses any), no duplicate names, no two members
   whose bytes overlap, none outside the data, declared sizes summing to at most the file's size
   (so loading reads every byte once: 60,000 entries pointing at one member are refused at once).
   Then the members: all ``.npy`` arrays, stored
   uncompressed (as ``np.savez`` writes them: no zip bombs), each with a numeric dtype -- an
   object array (which only ``pickle`` could load, and unpickling runs code) is refused by
   name -- and each member's size equals what its ``.npy`` header declares (shape x itemsize),
   and no member claims more bytes than the file holds. Only the headers (a few hundred bytes
   each) are read; so the arrays ``np.load`` then allocates are bounded by the file's size.
2. ``check_config_fits(path, config, params)``: the network config in the metadata agrees with
   the stored parameter arrays (hidden/input/output sizes, layer count, dtype) *before*
   ``Network(**config)`` allocates anything -- a hand-edited ``hidden_size: 10**7`` is refused
   instead of allocating terabytes -- and every parameter is finite (bptt never writes a NaN).

3. ``check_training_arrays(path, meta, arrays)``: every other loaded array -- optimiser slots
   (the parameters' shapes and dtypes, finite, >= 0 where they are sums of squares) and the
   carried hidden state (the declared parts, (L*dirs, B, H), finite).

The metadata itself is parsed and validated by ``bptt.io.schema`` (one declared schema) between
steps 1 and 2. Every refusal is a ValueError with one line naming the file, the member and the values.
"""

from __future__ import annotations

import math
import numbers
import os
import struct
import zipfile

import numpy as np

from ..training.numerics import describe_nonfinite, first_nonfinite

ALLOWED_KINDS = "fiub"            # float, signed/unsigned integers, bool: no objects, no structs
MAX_MEMBERS = 10_000      # a 100-layer LSTM with Adam stores ~1,000
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "mingru": 2, "minlstm": 3}
NO_RECURRENT_MATRIX = ("mingru", "minlstm")      # cells whose recurrence is element-wise: no W


def _peek_entry_count(path: str, on_disk: int) -> int | None:
    """The member count the end-of-central-directory record declares (read from the last 64 KiB,
    before zipfile parses a single entry), or None where it cannot tell (zip64, no record)."""
    with open(path, "rb") as f:
        f.seek(max(0, on_disk - 65557))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    count = struct.unpack("<H", tail[at + 10:at + 12])[0]
    return None if count == 0xFFFF else count


def _check_layout(path: str, archive: zipfile.ZipFile, infos: list, on_disk: int) -> None:
    """Zip tricks refused before any member is read: duplicate names, members whose bytes overlap
    (many central-directory entries pointing at one member would make loading read the file's
    bytes again and again), members outside the file, declared sizes summing past the file."""
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{path} is not a bptt checkpoint: member {twice!r} appears more than once")
    end_of_data = getattr(archive, "start_dir", on_disk)
    extents = []
    with open(path, "rb") as f:
        for info in infos:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path} is corrupt: member {info.filename!r} has no local header "
                                 f"at offset {info.header_offset}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start, end = info.header_offset, info.header_offset + 30 + name_len + extra_len + info.compress_size
            if end > end_of_data:
                raise ValueError(f"{path} is corrupt: member {info.filename!r} runs past the end of the data "
                                 f"({end:,} > {end_of_data:,})")
            extents.append((start, end, info.filename))
    extents.sort()
    for (_, end, first), (start, _, second) in zip(extents, extents[1:]):
        if start < end:
            raise ValueError(f"{path} is not a bptt checkpoint: members {first!r} and {second!r} overlap "
                             f"(a zip trick); refusing to read it")
    declared = sum(info.file_size for info in infos)     # implied by the above; kept as the stated bound
    if declared > on_disk:
        raise ValueError(f"{path} is corrupt: its members declare {declared:,} bytes in all, more than the "
                         f"whole file ({on_disk:,}); refusing to read it")


def inspect_archive(path) -> dict:
    """``{member name without .npy: (dtype, shape)}`` after the checks in the module doc."""
    path = os.fspath(path)
    on_disk = os.path.getsize(path)
    declared = _peek_entry_count(path, on_disk)
    if declared is not None and declared > MAX_MEMBERS:
        raise ValueError(f"{path} is not a bptt checkpoint: {declared:,} members (at most {MAX_MEMBERS:,})")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:     # ValueError: e.g. negative seek
        raise ValueError(f"{path} is corrupt or not a bptt checkpoint (not a zip of arrays: {error})") from None
    found = {}
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"{path} is not a bptt checkpoint: {len(infos):,} members (at most {MAX_MEMBERS:,})")
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"{path} is not a bptt checkpoint: member {name!r} is not a .npy array")
            if info.flag_bits & 0x1:                                   # zipfile would raise RuntimeError
                raise ValueError(f"{path}: member {name!r} is encrypted; bptt checkpoints never are")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {name!r} is compressed; bptt checkpoints are written "
                                 f"uncompressed (np.savez), refusing to inflate it")
            if info.file_size > on_disk or info.file_size != info.compress_size:
                raise ValueError(f"{path} is corrupt: member {name!r} claims {info.file_size} bytes, more than "
                                 f"the whole file ({on_disk})")
        _check_layout(path, archive, infos, on_disk)
        for info in infos:
            name = info.filename
            dtype, shape, header_bytes = _read_header(path, archive, info)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {name!r} is a Python object array (dtype {dtype}), which only "
                                 f"pickle can load -- refused: checkpoints never run code")
            if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
                raise ValueError(f"{path}: member {name!r} has dtype {dtype}, not a numeric array")
            if any(n < 0 for n in shape) or len(shape) > 8:
                raise ValueError(f"{path} is corrupt: member {name!r} declares shape {shape}")
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
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, SyntaxError, TypeError, RuntimeError,
            NotImplementedError, MemoryError, RecursionError) as error:
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


NONNEGATIVE_SLOTS = ("sum", "square_avg", "exp_avg_sq", "max_exp_avg_sq")   # running sums of squares
PREFIXES = ("params/", "optim/", "state/")


def check_training_arrays(path, meta: dict, arrays: dict) -> None:
    """Every loaded array beyond the weights is checked too (ValueError naming file and member):
    optimiser slots exist for every parameter, have its shape and dtype, are finite, and the slots
    that hold sums of squares (Adam's exp_avg_sq, RMSprop's square_avg, Adagrad's sum) are >= 0;
    the carried hidden state has the parts the record declares, the shape (L*directions, B, H) and
    finite values. ``meta`` has passed the schema (bptt.io.schema) already."""
    params = {name[len("params/"):]: a for name, a in arrays.items() if name.startswith("params/")}
    for name in arrays:
        if not name.startswith(PREFIXES):
            raise ValueError(f"{path} is not a bptt checkpoint: unexpected member {name!r}")
    trainer = meta.get("trainer")
    declared = [] if trainer is None else list(trainer.get("optimizer_slots", []))
    inconsistent = f"{path} is corrupt: its training state is inconsistent"
    for name, a in arrays.items():
        if name.startswith(("state/", "optim/")) and trainer is None:
            raise ValueError(f"{inconsistent}: member {name!r} but no training record")
        if not name.startswith("optim/"):
            continue
        parts = name.split("/", 2)
        if len(parts) != 3 or parts[1] not in declared or parts[2] not in params:
            raise ValueError(f"{inconsistent}: optimizer member {name!r} matches no declared slot "
                             f"({', '.join(declared) or 'none'}) and parameter")
        slot, pname = parts[1], parts[2]
        p = params[pname]
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"{path}: optimizer slot {slot}/{pname} is {a.dtype} {a.shape}, but the parameter is "
                             f"{p.dtype} {p.shape}: the file was edited or mixes two models")
        bad = first_nonfinite({name: a})
        if bad is not None:
            raise ValueError(f"{path} is corrupt: optimizer slot {describe_nonfinite(bad, a)} is not finite")
        if slot in NONNEGATIVE_SLOTS and a.size and a.min() < 0:
            where = tuple(int(i) for i in np.argwhere(a < 0)[0])
            raise ValueError(f"{path} is corrupt: optimizer slot {name} holds {float(a[where])!r} at {where}, but it is "
                             f"a running sum of squares and cannot be negative")
    for slot in declared:
        for pname in params:
            if f"optim/{slot}/{pname}" not in arrays:
                raise ValueError(f"{inconsistent}: optimizer slot {slot!r} lacks parameter {pname!r} "
                                 f"(member optim/{slot}/{pname} is missing)")
    states = sorted(n for n in arrays if n.startswith("state/"))
    if trainer is None:
        return
    count, kind = trainer.get("carried_parts", 0), trainer.get("carried_state")
    if (kind is None) != (count == 0) or (kind == "array" and count != 1):
        raise ValueError(f"{inconsistent}: carried_state {kind!r} with carried_parts {count}")
    expected = [f"state/{i}" for i in range(count)]
    missing = [n for n in expected if n not in arrays]
    if missing or len(states) != count:
        raise ValueError(f"{inconsistent}: the record declares {count} carried-state arrays "
                         f"({', '.join(expected) or 'none'}), the file holds {', '.join(states) or 'none'}"
                         + (f" (KeyError: {missing[0]!r})" if missing else ""))
    config = meta["config"]
    rows = config["num_layers"] * (2 if config.get("bidirectional") else 1)
    shapes = set()
    proj = config.get("proj_size")                   # an LSTM with projection carries h of size P, c of size H
    for index, name in enumerate(expected):
        a = arrays[name]
        width = proj if proj and index == 0 else config["hidden_size"]
        if a.dtype.kind != "f" or a.ndim != 3 or a.shape[0] != rows or a.shape[2] != width or a.shape[1] < 1:
            raise ValueError(f"{path} is corrupt: carried state {name} is {a.dtype} {a.shape}, not "
                             f"(layers x directions = {rows}, batch, {'proj_size' if width == proj else 'hidden_size'}"
                             f" = {width}) floats")
        bad = first_nonfinite({name: a})
        if bad is not None:
            raise ValueError(f"{path} is corrupt: carried state {describe_nonfinite(bad, a)} is not finite")
        shapes.add(a.shape[:2])                        # (rows, batch): the width differs for h (P) and c (H)
    if len(shapes) > 1:
        raise ValueError(f"{inconsistent}: carried-state parts of different shapes {sorted(shapes)}")
