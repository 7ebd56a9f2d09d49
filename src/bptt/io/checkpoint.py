"""Checkpoints: one ``.npz`` file, no pickle, written atomically, verified on load.

Layout of ``DIR/checkpoint.npz`` (a plain zip of ``.npy`` arrays):

    params/<name>           every entry of net.params (``layers.0.U``, ..., ``V``, ``c``)
    optim/<slot>/<name>     optimiser slots (Adam's exp_avg, ...), when a trainer is saved
    state/<i>               the hidden state carried between batches (h, or h and c)
    __meta__                UTF-8 JSON as a uint8 array: format name and version, the network
                            config, the vocabulary, optimiser hyper-parameters and step count,
                            schedule state, step, RNG states, metrics, the training arguments,
                            and a SHA-256 over every other array (name, dtype, shape, bytes)

Why one file: the arrays and the metadata must change together. The file is written to a
temporary name in the same directory, flushed and fsync'ed, then ``os.replace``'d over the
old one (atomic on POSIX), and the directory is fsync'ed. A crash or SIGKILL mid-write
leaves the previous checkpoint intact (plus, at worst, a stray ``.tmp`` file that loading
ignores). Loading uses ``np.load(allow_pickle=False)`` and checks, with a one-line error
each: the file exists, is a zip of arrays, carries bptt metadata, has a format version this
bptt reads, its arrays hash to the recorded SHA-256, and the arrays fit the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from dataclasses import dataclass

import numpy as np

from ..training.numerics import describe_nonfinite, first_nonfinite
from .files import file_kind, fsync_directory, public_mode
from .safeload import check_config_fits, check_training_arrays, inspect_archive
from .schema import MAX_META_BYTES, METADATA, SchemaError, parse_json, validate

FORMAT = "bptt-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.npz"
_META = "__meta__"


def checkpoint_path(path) -> str:
    """``DIR`` -> ``DIR/checkpoint.npz``; a path ending in ``.npz`` is used as is."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else os.path.join(path, FILENAME)


def arrays_sha256(arrays: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _state_arrays(state) -> tuple[dict, str | None]:
    if state is None:
        return {}, None
    parts = state if isinstance(state, tuple) else (state,)
    return {f"state/{i}": np.asarray(p) for i, p in enumerate(parts)}, ("tuple" if isinstance(state, tuple) else "array")


def save_checkpoint(path, net, *, trainer=None, vocab=None, metrics: dict | None = None,
                    extra: dict | None = None) -> str:
    """Write ``net`` (and, if given, the trainer's optimiser/schedule/step/carried state, the
    vocabulary, metrics and ``extra`` JSON such as the training arguments) atomically.
    Returns the file written."""
    from .. import __version__
    from ..data import require_vocabulary

    if vocab is not None:                             # a list of tokens: TypeError naming vocab, nothing written
        require_vocabulary(vocab)
    target = checkpoint_path(path)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    arrays = {f"params/{name}": np.asarray(p) for name, p in net.params.items()}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "bptt_version": __version__,
            "config": net.config, "vocabulary": None if vocab is None else vocab.to_json(),
            "metrics": metrics or {}, "extra": extra or {}}
    dropout_rng = getattr(net, "dropout_rng", None)
    if dropout_rng is not None:
        meta["dropout_rng"] = dropout_rng.bit_generator.state
    if trainer is not None:
        state = trainer.state_dict()
        optim = state["optimizer"]
        for slot, named in optim["slots"].items():
            for name, a in named.items():
                arrays[f"optim/{slot}/{name}"] = np.asarray(a)
        carried, kind = _state_arrays(state["carried_state"])
        arrays.update(carried)
        meta["trainer"] = {"step": state["step"], "updates": state["updates"],
                           "optimizer": {k: v for k, v in optim.items() if k != "slots"},
                           "optimizer_slots": sorted(optim["slots"]), "schedule": state["schedule"],
                           "rng": state["rng"], "history": state["history"], "carried_state": kind,
                           "carried_parts": len(carried), "numerics": state.get("numerics")}
    bad = first_nonfinite(arrays)                     # bptt.training.numerics: a NaN/inf is never written to disk
    if bad is not None:
        raise ValueError(f"refusing to write {target}: {describe_nonfinite(bad, arrays[bad])} is not finite; "
                         f"the previous checkpoint is kept")
    meta["sha256"] = arrays_sha256(arrays)
    arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)

    tmp = os.path.join(directory, f".{os.path.basename(target)}.tmp{os.getpid()}")
    if os.path.lexists(tmp):                          # ours from an earlier failed try (same PID)
        os.unlink(tmp)
    # O_EXCL | O_NOFOLLOW: never write through a link planted under the temporary's name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), public_mode())
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())                      # the bytes are on disk before the rename
        os.replace(tmp, target)                       # atomic: readers see old or new, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_directory(directory)                        # make the rename itself durable
    return target


@dataclass
class Checkpoint:
    path: str
    meta: dict
    params: dict                  # name -> array
    optimizer_state: dict | None  # as Optimizer.state_dict(), slots filled
    carried_state: object         # h (L, B, H), (h, c), or None

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def step(self) -> int:
        return int(self.meta.get("trainer", {}).get("step", 0))

    def network(self):
        """The saved network, weights included."""
        from ..network import Network

        try:
            net = Network.from_config(self.config)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.path}: the checkpoint's config does not fit this bptt's Network ({error})") from None
        if set(net.params) != set(self.params):
            raise ValueError(f"{self.path}: the checkpoint's parameters {sorted(self.params)} do not match "
                             f"its config's {sorted(net.params)}")
        for name, p in net.params.items():
            saved = self.params[name]
            if saved.shape != p.shape:
                raise ValueError(f"{self.path}: parameter {name} has shape {saved.shape}, the config says {p.shape}")
            p[...] = saved
        if "dropout_rng" in self.meta and getattr(net, "dropout_rng", None) is not None:
            net.dropout_rng.bit_generator.state = self.meta["dropout_rng"]
        return net

    def vocabulary(self):
        from ..data import Vocabulary

        data = self.meta.get("vocabulary")
        try:
            return None if data is None else Vocabulary.from_json(data)
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{self.path} is corrupt: its vocabulary is not valid ({error})") from None

    def trainer_state(self) -> dict | None:
        """The dict ``Trainer.load_state_dict`` takes, or None if no trainer was saved."""
        t = self.meta.get("trainer")
        if t is None:
            return None
        return {"step": t["step"], "updates": t["updates"], "carried_state": self.carried_state,
                "optimizer": self.optimizer_state, "schedule": t["schedule"], "rng": t["rng"],
                "history": t["history"], "numerics": t.get("numerics")}


def read_metadata(target: str, raw: bytes) -> dict:
    """The ``__meta__`` record parsed (size and depth bounded) and validated against the declared
    schema (bptt.io.schema), before anything reads a field of it; one line naming file, field, value."""
    try:
        meta = parse_json(raw)
    except ValueError as error:
        raise ValueError(f"{target} is corrupt: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{target} is not a bptt checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ValueError(f"{target} was written by a newer bptt (checkpoint format version {version}; "
                         f"this bptt reads up to {FORMAT_VERSION}): upgrade bptt")
    try:
        validate(meta, METADATA)
    except SchemaError as error:
        raise ValueError(f"{target} is corrupt: {error}") from None
    return meta


def load_checkpoint(path) -> Checkpoint:
    """Read and verify a checkpoint; ValueError/OSError with one clear line when it is missing,
    corrupt, foreign, or from a newer format version. Order: a regular file; the zip's layout and
    every member's header (bptt.io.safeload); the metadata's size, depth and schema
    (bptt.io.schema); the arrays' SHA-256; the config against the weights; every other array."""
    target = checkpoint_path(path)
    if not os.path.lexists(target):
        where = f" (expected {target})" if target != os.fspath(path) else ""
        raise FileNotFoundError(f"no checkpoint at {os.fspath(path)}{where}")
    try:
        mode = os.stat(target).st_mode
    except OSError as error:
        raise ValueError(f"{target} cannot be read: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{target} is not a file ({file_kind(mode)})")
    members = inspect_archive(target)   # bptt.io.safeload: only .npy members, no objects, no zip tricks
    if _META not in members:
        raise ValueError(f"{target} is not a bptt checkpoint (no {_META} record)")
    meta_dtype, meta_shape = members[_META]
    if meta_dtype != np.uint8 or len(meta_shape) != 1:
        raise ValueError(f"{target} is corrupt: its {_META} record is {meta_dtype} {meta_shape}, not bytes")
    if meta_shape[0] > MAX_META_BYTES:
        raise ValueError(f"{target} is corrupt: its metadata is {meta_shape[0]:,} bytes, more than the "
                         f"{MAX_META_BYTES:,} bptt reads")
    try:
        with np.load(target, allow_pickle=False) as archive:
            meta = read_metadata(target, archive[_META].tobytes())
            arrays = {name: archive[name] for name in archive.files if name != _META}
    except (zipfile.BadZipFile, EOFError, KeyError, OSError, RuntimeError, NotImplementedError) as error:
        raise ValueError(f"{target} is corrupt or not a bptt checkpoint ({type(error).__name__}: {error})") from None
    except ValueError as error:
        if str(error).startswith(target):
            raise
        raise ValueError(f"{target} is corrupt or not a bptt checkpoint ({error})") from None
    if arrays_sha256(arrays) != meta["sha256"]:
        raise ValueError(f"{target} is corrupt: its arrays do not match the SHA-256 recorded when it was saved")
    params = {name[len("params/"):]: a for name, a in arrays.items() if name.startswith("params/")}
    check_config_fits(target, meta["config"], params)     # before any Network is built
    check_training_arrays(target, meta, arrays)           # optimiser slots and carried state too

    optimizer_state, carried = None, None
    t = meta.get("trainer")
    if t is not None:
        slots = {slot: {} for slot in t.get("optimizer_slots", [])}
        for name, a in arrays.items():
            if name.startswith("optim/"):
                _, slot, pname = name.split("/", 2)
                slots[slot][pname] = a
        optimizer_state = dict(t["optimizer"], slots=slots)
        parts = [arrays[f"state/{i}"] for i in range(t.get("carried_parts", 0))]
        if t.get("carried_state") == "tuple":
            carried = tuple(parts)
        elif t.get("carried_state") == "array":
            carried = parts[0]
    return Checkpoint(target, meta, params, optimizer_state, carried)
