"""Property tests (hypothesis, derandomised): a checkpoint whose metadata or array headers were mutated
is refused in one line naming the file -- never a traceback, never a silently wrong model.

Three properties over one valid checkpoint written by ``bptt train``:

1. a field bptt reads, given a value of another JSON kind (a number where a string belongs, a list
   where an object belongs, ...), is refused naming the file and the field;
2. any mutation at any path of the metadata (another value, a deleted key, deep nesting, an unknown
   key) either loads and then rebuilds the network, vocabulary and trainer state without error, or is
   refused with one line -- ValueError or TypeError, nothing else;
3. a member's ``.npy`` header rewritten to another shape or dtype (the bytes kept) is refused.
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bptt.io.checkpoint import load_checkpoint

SETTINGS = settings(derandomize=True, max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TEXT = "nothing lost, nothing trusted blindly.\n" * 40


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from bptt.cli import main

    root = tmp_path_factory.mktemp("untrusted")
    (root / "t.txt").write_text(TEXT)
    assert main(["train", "--text", str(root / "t.txt"), "--out", str(root / "run"), "--steps", "2", "--hidden", "6",
                 "--seq-len", "6", "--batch", "2", "--cell", "lstm", "--no-progress"]) == 0
    path = root / "run" / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    return World((root, arrays, meta))


class World(tuple):
    def __repr__(self):                    # hypothesis prints its arguments: keep it short
        return "<the valid checkpoint>"


def write(path, arrays, meta_bytes: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays, __meta__=np.frombuffer(meta_bytes, np.uint8))
    return str(path)


def paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value, lists cut to their first 3 items."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            found += paths(item, prefix + (i,))
    return found


def get(value, path):
    for key in path:
        value = value[key]
    return value


def kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def use(ckpt):
    """What bptt train --resume / sample / evaluate do with a loaded checkpoint."""
    from bptt.training.optim import make_optimizer
    from bptt.training.schedules import make_schedule
    from bptt.training.train import Trainer

    net = ckpt.network()
    ckpt.vocabulary()
    state = ckpt.trainer_state()
    args = ckpt.meta.get("extra", {}).get("train_args")
    if state is not None and args is not None:            # as bptt train --resume (it refuses the rest)
        trainer = Trainer(net, make_optimizer(args["optimizer"], net.params, lr=args["lr"]),
                          schedule=make_schedule(args["schedule"], args["lr"]))
        trainer.load_state_dict(state)


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                        st.lists(st.integers(-3, 3), max_size=3),
                        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))

# Fields bptt reads that are never null, with their path in the metadata.
STRICT = [("version",), ("sha256",), ("config", "hidden_size"), ("config", "cell"), ("config", "dtype"),
          ("config", "num_layers"), ("config", "bidirectional"), ("vocabulary", "tokens"), ("trainer", "step"),
          ("trainer", "updates"), ("trainer", "rng"), ("trainer", "rng", "state", "state"),
          ("trainer", "optimizer", "kind"), ("trainer", "optimizer", "hyper", "lr"),
          ("trainer", "optimizer", "hyper", "betas"), ("trainer", "history"), ("trainer", "optimizer_slots"),
          ("trainer", "numerics", "lr_scale"), ("extra", "text_sha256"), ("extra", "train_args", "seq_len"),
          ("extra", "train_args", "optimizer"), ("dropout_rng", "state", "inc")]


@SETTINGS
@given(field=st.sampled_from(STRICT), value=JSON_VALUES)
def test_a_field_of_the_wrong_kind_is_refused_naming_the_field(good, tmp_path, field, value):
    root, arrays, meta = good
    assume(kind(value) != kind(get(meta, field)) and kind(value) != "null")
    bad = copy.deepcopy(meta)
    get(bad, field[:-1])[field[-1]] = value
    path = write(tmp_path / "case" / "checkpoint.npz", arrays, json.dumps(bad).encode())
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path), message
    assert f"metadata field {'.'.join(map(str, field))}" in message, message


MUTATIONS = st.one_of(
    st.tuples(st.just("set"), JSON_VALUES),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("nest"), st.integers(1, 200)),
    st.tuples(st.just("unknown key"), JSON_VALUES))


@SETTINGS
@given(data=st.data(), mutation=MUTATIONS)
def test_any_mutation_of_the_metadata_loads_cleanly_or_is_one_line(good, tmp_path, data, mutation):
    root, arrays, meta = good
    where = data.draw(st.sampled_from(paths(meta)[1:]), label="path")
    bad = copy.deepcopy(meta)
    parent, key = get(bad, where[:-1]), where[-1]
    how, arg = mutation
    if how == "set":
        parent[key] = arg
    elif how == "delete":
        del parent[key]
    elif how == "nest":
        for _ in range(arg):
            parent[key] = [parent[key]]
    elif isinstance(parent[key], dict):
        parent[key]["zz_unknown"] = arg
    else:
        parent[key] = {"zz_unknown": arg}
    raw = json.dumps(bad).encode()
    path = write(tmp_path / "case" / "checkpoint.npz", arrays, raw)
    try:
        use(load_checkpoint(path))
    except (ValueError, TypeError) as error:
        assert "\n" not in str(error) and str(error), repr(error)
    # anything else (KeyError, AttributeError, RecursionError, OverflowError, ...) fails the test


DESCRS = ["<f4", "<f8", ">f4", "<i4", "<i8", "|u1", "|b1", "<f2", "|O", "<U2", "|V8", "<c8"]


@SETTINGS
@given(data=st.data())
def test_a_rewritten_array_header_is_refused(good, tmp_path, data):
    root, arrays, meta = good
    name = data.draw(st.sampled_from(sorted(arrays)), label="member")
    original = arrays[name]
    shape = tuple(data.draw(st.lists(st.integers(0, 40), min_size=0, max_size=3), label="shape"))
    descr = data.draw(st.sampled_from(DESCRS), label="descr")
    assume((shape, descr) != (original.shape, original.dtype.str))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    path = str(tmp_path / "case" / "checkpoint.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for other, a in {**arrays, "__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)}.items():
            buf = io.BytesIO()
            np.save(buf, a)
            body = buf.getvalue()
            if other == name:
                body = header.getvalue() + np.ascontiguousarray(a).tobytes()
            z.writestr(other + ".npy", body)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path), message


def test_the_unmutated_checkpoint_loads(good, tmp_path):
    """The control: the same writer with nothing changed gives a checkpoint that loads and is used."""
    root, arrays, meta = good
    use(load_checkpoint(write(tmp_path / "same" / "checkpoint.npz", arrays, json.dumps(meta).encode())))


def test_an_encrypted_member_is_refused_in_one_line(good, tmp_path):
    """zipfile raises RuntimeError ("File is encrypted") on opening such a member: refused before."""
    root, arrays, meta = good
    path = write(tmp_path / "enc" / "checkpoint.npz", arrays, json.dumps(meta).encode())
    raw = bytearray(open(path, "rb").read())
    for signature, flag_at in ((b"PK\x01\x02", 8), (b"PK\x03\x04", 6)):     # central and local headers
        at = raw.find(signature)
        raw[at + flag_at] |= 1
    open(path, "wb").write(bytes(raw))
    with pytest.raises(ValueError, match=r"is encrypted; bptt checkpoints never are"):
        load_checkpoint(path)
