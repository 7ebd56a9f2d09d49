"""The bad-input matrix: every kind of bad input, through the CLI (a real ``python -m bptt`` process)
and through the API. Each case must give ONE line naming the problem and the value -- a
non-zero exit (CLI) or a ValueError/TypeError (API; OSError only for a file that is not there)
-- never a traceback, and must leave no file behind (the case's directory is byte-for-byte as
before). ``CASES`` is the table; README "## Reliability" quotes its size.

Every case runs in its own copy of a small world: texts (good, empty, binary, Latin-1, with
unknown characters), a trained run, and hostile checkpoints built from it (truncated, future
format, arrays tampered, config hand-edited, arrays from another model, a pickled object
array whose unpickling would run code, a compressed zip bomb, a header lying about its shape,
NaN weights with a valid checksum, no metadata).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bptt.io.checkpoint import arrays_sha256, load_checkpoint, save_checkpoint
from bptt.training.clip import clip_by_global_norm, clip_by_value, make_clipper
from bptt.data import TextStreams, Vocabulary, read_text, split_ids
from bptt.network import Network
from bptt.training.optim import make_optimizer
from bptt.sample import sample_ids, sample_text
from bptt.training.schedules import make_schedule
from bptt.training.train import Trainer
from bptt.training.truncation import make_truncation

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
# a hidden size whose float32 weights take half this machine's memory: they alone would pass a
# weights-only guard, the whole run (init draws, gradients, Adam slots) cannot fit
FITS_BUT_RUN_DOES_NOT = int((os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 / 4) ** 0.5)
TEXT = "nothing lost, nothing trusted blindly.\n" * 60

# ---------------------------------------------------------------- the world each case starts from


def _rewrite(src, dst, change):
    """Copy checkpoint ``src`` to ``dst`` with ``change(arrays, meta)`` applied (SHA kept unless changed)."""
    with np.load(src, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    change(arrays, meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


class RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _lying_header(dst, good):
    """A valid checkpoint plus one member whose .npy header claims 10**12 float64 (8 TB)."""
    shutil.copyfile(good, dst)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)})
    with zipfile.ZipFile(dst, "a") as z:
        z.writestr("optim/huge.npy", header.getvalue() + b"\0" * 64)


def build_world(root):
    os.makedirs(root)
    j = lambda *p: os.path.join(root, *p)                        # noqa: E731
    open(j("t.txt"), "w", encoding="utf-8").write(TEXT)
    open(j("empty.txt"), "w").close()
    open(j("binary.dat"), "wb").write(bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8)))
    open(j("latin1.txt"), "wb").write("café crème\n".encode("latin-1"))
    open(j("unknown.txt"), "w", encoding="utf-8").write("Zebra € ünïcode\n")
    open(j("afile"), "w").write("not a directory\n")
    os.makedirs(j("adir"))
    from bptt.cli import main
    code = main(["train", "--text", j("t.txt"), "--out", j("good"), "--steps", "3", "--hidden", "8",
                 "--seq-len", "8", "--batch", "2", "--no-progress"])
    assert code == 0
    good = j("good", "checkpoint.npz")
    for name in ("metrics.jsonl",):
        if os.path.exists(j("good", name)):
            os.unlink(j("good", name))
    raw = open(good, "rb").read()
    os.makedirs(j("truncated"))
    open(j("truncated", "checkpoint.npz"), "wb").write(raw[: len(raw) // 2])
    os.makedirs(j("notzip"))
    open(j("notzip", "checkpoint.npz"), "w").write("just text\n")
    _rewrite(good, j("future", "checkpoint.npz"), lambda a, m: m.update(version=99))

    def tamper(a, m):
        a["params/V"] = a["params/V"] + 0.5                    # SHA-256 no longer matches
    _rewrite(good, j("tampered", "checkpoint.npz"), tamper)

    def edit_config(a, m):
        m["config"]["hidden_size"] = 10 ** 7                   # arrays untouched: SHA still valid
    _rewrite(good, j("edited", "checkpoint.npz"), edit_config)

    other = Network(len(json.loads(np.load(good)["__meta__"].tobytes())["vocabulary"]["tokens"]), 12,
                    len(json.loads(np.load(good)["__meta__"].tobytes())["vocabulary"]["tokens"]), seed=1,
                    dtype="float32")

    def other_model(a, m):                                     # another model's weights, checksum redone
        for name, p in other.params.items():
            a[f"params/{name}"] = p.copy()
        for key in [k for k in a if k.startswith(("optim/", "state/"))]:
            del a[key]
        m.pop("trainer")
        m["sha256"] = arrays_sha256(a)
    _rewrite(good, j("othermodel", "checkpoint.npz"), other_model)

    def nan_weights(a, m):
        a["params/layers.0.W"] = a["params/layers.0.W"].copy()
        a["params/layers.0.W"][0, 0] = np.nan
        m["sha256"] = arrays_sha256(a)
    _rewrite(good, j("nanweights", "checkpoint.npz"), nan_weights)

    def no_train_state(a, m):
        for key in [k for k in a if k.startswith(("optim/", "state/"))]:
            del a[key]
        m.pop("trainer")
        m["sha256"] = arrays_sha256(a)
    _rewrite(good, j("notrain", "checkpoint.npz"), no_train_state)

    def drop_state(a, m):                                      # the record says 1 state array; none stored
        del a["state/0"]
        m["sha256"] = arrays_sha256(a)
    _rewrite(good, j("nostate", "checkpoint.npz"), drop_state)

    def bad_vocabulary(a, m):
        m["vocabulary"] = {"tokens": 5}
    _rewrite(good, j("badvocab", "checkpoint.npz"), bad_vocabulary)

    shutil.copytree(j("good"), j("badhistory"))                # a run folder with a damaged metrics.jsonl
    open(j("badhistory", "metrics.jsonl"), "wb").write(b'{"step": 1, "loss": 2.0}\n[1, 2]\n')
    shutil.copytree(j("good"), j("binaryhistory"))
    open(j("binaryhistory", "diagnostics.jsonl"), "wb").write(b'{"update": 1}\n\xff\xfe\n')

    os.makedirs(j("pickled"))
    with np.load(good, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    evil = np.empty(1, dtype=object)
    evil[0] = RunsCode(j("pickled", "PWNED"))
    np.savez(j("pickled", "checkpoint.npz"), **arrays, **{"params/evil": evil})   # np.savez pickles it

    os.makedirs(j("compressed"))
    np.savez_compressed(j("compressed", "checkpoint.npz"), **arrays, **{"optim/bomb": np.zeros(2_000_000)})
    os.makedirs(j("lying"))
    _lying_header(j("lying", "checkpoint.npz"), good)
    os.makedirs(j("nometa"))
    np.savez(j("nometa", "checkpoint.npz"), weights=np.ones(3))
    os.makedirs(j("badjson"))
    arrays_bad = dict(arrays)
    arrays_bad["__meta__"] = np.frombuffer(b"{not json", np.uint8)
    np.savez(j("badjson", "checkpoint.npz"), **arrays_bad)
    os.makedirs(j("ro"))
    if not ROOT:
        os.chmod(j("ro"), 0o555)
    build_world_round_two(root, good)


# ---------------------------------------------------------------- round two (issue 15): the world's new corners
FIFOS = ["fifolock/.bptt-lock", "fifometrics/metrics.jsonl", "fifo.txt"]   # made in each case's copy


def _rewrite_raw(src, dst, edit):
    """Copy checkpoint ``src`` to ``dst`` with its metadata bytes replaced by ``edit(raw)``."""
    with np.load(src, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["__meta__"] = np.frombuffer(edit(arrays["__meta__"].tobytes()), np.uint8)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def _zip_pointing_at_one_member(dst, names, member=None):
    """A zip (by hand) whose central directory lists every one of ``names`` at offset 0, where one
    stored ``.npy`` member lies: the trick that made loading read the same bytes again and again."""
    import zlib
    if member is None:
        buf = io.BytesIO()
        np.save(buf, np.zeros(16))
        member = buf.getvalue()
    first = names[0].encode()
    crc, size = zlib.crc32(member), len(member)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size, len(first), 0) + first + member
    central = b"".join(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size, size, len(n.encode()),
                                   0, 0, 0, 0, 0, 0) + n.encode() for n in names)
    count = min(len(names), 0xFFFF)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f:
        f.write(local + central + eocd)


def build_world_round_two(root, good):
    j = lambda *p: os.path.join(root, *p)                        # noqa: E731
    outside = os.path.dirname(root)                              # shared by every case, never copied
    open(j("nul.txt"), "wb").write(b"\0" * 100_000)
    open(j("t2.txt"), "w", encoding="utf-8").write(TEXT.replace("nothing", "nothing, nothing"))
    with open(os.path.join(outside, "big.txt"), "wb") as f:      # sparse: 600 MiB on paper, no disk
        f.truncate(600 * 2**20)
    os.mkfifo(os.path.join(outside, "fifo"))
    _zip_pointing_at_one_member(os.path.join(outside, "manyentries", "checkpoint.npz"),
                                [f"params/m{i}.npy" for i in range(2000)])
    _zip_pointing_at_one_member(os.path.join(outside, "hugecd", "checkpoint.npz"),
                                [f"params/m{i}.npy" for i in range(20_000)])
    _zip_pointing_at_one_member(j("overlap", "checkpoint.npz"), ["params/a.npy", "params/b.npy"])

    deep = b'"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b", "
    _rewrite_raw(good, j("deepmeta", "checkpoint.npz"), lambda raw: raw[:1] + deep + raw[1:])
    _rewrite_raw(good, j("hugeint", "checkpoint.npz"),
                 lambda raw: raw.replace(b'"step": 3', b'"step": 1' + b"0" * 5000, 1))
    edits = {
        "norngstate": lambda a, m: m["trainer"]["rng"].pop("state"),
        "infstep": lambda a, m: m["trainer"].update(step=float("inf")),
        "negstep": lambda a, m: m["trainer"].update(step=-7),
        "extralist": lambda a, m: m.update(extra=[1, 2]),
        "numericsstr": lambda a, m: m["trainer"].update(numerics="stop"),
        "versiontrue": lambda a, m: m.update(version=True),
        "versionneg": lambda a, m: m.update(version=-1),
        "celllist": lambda a, m: m["config"].update(cell=["rnn"]),
        "floatlayers": lambda a, m: m["config"].update(num_layers=1.5),
        "nanlr": lambda a, m: m["trainer"]["optimizer"]["hyper"].update(lr=float("nan")),
        "badslotname": lambda a, m: m["trainer"].update(optimizer_slots=["exp_avg", "exp_avg_sq", "evil"]),
        "bigparts": lambda a, m: m["trainer"].update(carried_parts=10 ** 6),
        "historystr": lambda a, m: m["trainer"].update(history="none"),
        "shaint": lambda a, m: m.update(sha256=12),
        "tokensdup": lambda a, m: m["vocabulary"].update(tokens=m["vocabulary"]["tokens"][:1] * 2),
        "devzero": lambda a, m: m["extra"]["train_args"].update(text="/dev/zero"),
        "fifoname": lambda a, m: m["extra"]["train_args"].update(text=os.path.join(outside, "fifo")),
        "dirname": lambda a, m: m["extra"]["train_args"].update(text=j("adir")),
        "changedtext": lambda a, m: m["extra"]["train_args"].update(text=j("t2.txt")),
    }
    for name, change in edits.items():
        _rewrite(good, j(name, "checkpoint.npz"), change)

    def slot(value, where=(0, 0), name="optim/exp_avg_sq/V"):
        def change(a, m):
            a[name] = a[name].copy()
            a[name][where] = value
            m["sha256"] = arrays_sha256(a)
        return change
    _rewrite(good, j("nanslot", "checkpoint.npz"), slot(np.nan, name="optim/exp_avg/V"))
    _rewrite(good, j("negslot", "checkpoint.npz"), slot(-1.0))
    _rewrite(good, j("nanstate", "checkpoint.npz"), slot(np.nan, (0, 0, 1), "state/0"))

    def slot_shape(a, m):
        a["optim/exp_avg/V"] = a["optim/exp_avg/V"][:, :3].copy()
        m["sha256"] = arrays_sha256(a)
    _rewrite(good, j("slotshape", "checkpoint.npz"), slot_shape)

    for name in ("fifolock", "fifometrics", "linkmetrics"):     # run folders with something planted in them
        shutil.copytree(j("good"), j(name))
    open(j("victim.txt"), "w").write("must never be appended to\n")
    os.symlink(j("victim.txt"), j("linkmetrics", "metrics.jsonl"))


def snapshot(root):
    """Every file under root with its size and SHA-256 (directories included by name)."""
    state = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(d, name), root)] = "dir"
        for name in files:
            p = os.path.join(d, name)
            if os.path.islink(p):
                state[os.path.relpath(p, root)] = "link -> " + os.readlink(p)
            elif not stat.S_ISREG(os.stat(p).st_mode):        # a FIFO: opening it would block
                state[os.path.relpath(p, root)] = "special"
            else:
                state[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return state


# ---------------------------------------------------------------- the table
# (id, where, argv or callable, regex the single line must match)
# CLI argv: "{w}" is the case's world directory; "{ro}" a directory it cannot write,
# "{ro_new}" a directory it cannot create.

TRAIN = ["train", "--text", "{w}/t.txt", "--out", "{w}/out", "--steps", "1", "--hidden", "8", "--seq-len", "8",
         "--batch", "2", "--no-progress"]


def train(*extra, text=None):
    argv = list(TRAIN)
    if text is not None:
        argv[2] = text
    return argv + list(extra)


CLI = [
    # files
    ("missing text file", train(text="{w}/missing.txt"), r"No such file.*missing\.txt"),
    ("empty text file", train(text="{w}/empty.txt"), r"empty\.txt is empty"),
    ("binary text file", train(text="{w}/binary.dat"), r"binary\.dat is not UTF-8 .*byte 0x"),
    ("non-UTF-8 (Latin-1) text file", train(text="{w}/latin1.txt"), r"latin1\.txt is not UTF-8 .*0xe9"),
    ("text path is a directory", train(text="{w}/adir"), r"--text .*adir is a directory"),
    ("evaluate: non-UTF-8 text", ["evaluate", "{w}/good", "--text", "{w}/latin1.txt"], r"latin1\.txt is not UTF-8"),
    ("evaluate: empty text", ["evaluate", "{w}/good", "--text", "{w}/empty.txt"], r"empty\.txt is empty"),
    ("evaluate: characters the model lacks", ["evaluate", "{w}/good", "--text", "{w}/unknown.txt"],
     r"not in the model's vocabulary: .*'€'"),
    # unknown characters at sampling
    ("sample: prime with unknown characters", ["sample", "{w}/good", "--prime", "Zü€"],
     r"--prime: .*3 characters not in the model's vocabulary: 'Z', 'ü', '€'"),
    # sizes and rates: negative, zero, absurd, non-finite
    ("zero hidden size", train("--hidden", "0"), r"--hidden must be >= 1, got 0"),
    ("negative hidden size", train("--hidden", "-5"), r"--hidden must be >= 1, got -5"),
    ("absurd hidden size", train("--hidden", "100000000"), r"this run needs about [\d,.]+ GiB of memory .*more than this machine's"),
    ("absurd layer count", train("--layers", "1000000000"), r"this run needs about [\d,.]+ GiB of memory .*more than this machine's"),
    ("zero layers", train("--layers", "0"), r"--layers must be >= 1, got 0"),
    ("zero batch", train("--batch", "0"), r"--batch must be >= 1, got 0"),
    ("absurd batch", train("--batch", "100000000"), r"too short.*batch=100000000"),
    ("zero sequence length", train("--seq-len", "0"), r"--seq-len must be >= 1, got 0"),
    ("sequence longer than the text", train("--seq-len", "100000"), r"too short.*seq_len\+1=100001"),
    ("zero learning rate", train("--lr", "0"), r"--lr must be > 0, got 0"),
    ("negative learning rate", train("--lr", "-0.1"), r"--lr must be > 0, got -0\.1"),
    ("NaN learning rate", train("--lr", "nan"), r"--lr must be > 0, got nan"),
    ("infinite learning rate", train("--lr", "inf"), r"--lr must be finite, got inf"),
    ("NaN clip threshold", train("--clip", "nan"), r"--clip must be > 0, got nan"),
    ("negative weight decay", train("--weight-decay", "-1"), r"weight_decay must be .*>= 0, got -1"),
    ("dropout of 1.5", train("--dropout", "1.5", "--layers", "2"), r"dropout must be in \[0, 1\), got 1\.5"),
    ("NaN momentum", train("--optimizer", "sgd", "--momentum", "nan"), r"momentum must be .*got nan"),
    ("negative warm-up", train("--warmup", "-1"), r"--warmup must be >= 0, got -1"),
    ("validation fraction 1", train("--val-fraction", "1"), r"--val-fraction must be in \[0, 1\), got 1"),
    ("negative steps", train("--steps", "-3"), r"--steps must be >= 0, got -3"),
    ("infinite epochs", ["train", "--text", "{w}/t.txt", "--out", "{w}/out", "--epochs", "inf", "--no-progress"],
     r"--epochs must be a finite number > 0, got inf"),
    ("NaN time limit", train("--time", "nan"), r"--time must be a finite number > 0, got nan"),
    ("negative seed", train("--seed", "-1"), r"--seed must be >= 0, got -1"),
    ("rollback factor 2", train("--rollback-factor", "2"), r"--rollback-factor must be in \(0, 1\), got 2"),
    ("sample: zero length", ["sample", "{w}/good", "--length", "0"], r"--length must be >= 1, got 0"),
    ("sample: absurd length", ["sample", "{w}/good", "--length", "100000000000"], r"--length must be <= 100,000,000 tokens, got 100,000,000,000"),
    ("sample: zero temperature", ["sample", "{w}/good", "--temperature", "0"], r"--temperature must be > 0, got 0"),
    ("sample: infinite temperature", ["sample", "{w}/good", "--temperature", "inf"],
     r"temperature must be a finite number > 0, got inf"),
    ("sample: zero top-k", ["sample", "{w}/good", "--top-k", "0"], r"--top-k must be >= 1, got 0"),
    ("evaluate: zero batch", ["evaluate", "{w}/good", "--batch", "0"], r"--batch and --seq-len must be >= 1, got 0"),
    ("gradcheck: zero hidden size", ["gradcheck", "--hidden", "0"], r"hidden_size must be >= 1, got 0"),
    ("gradcheck: NaN eps", ["gradcheck", "--eps", "nan"], r"--eps must be > 0, got nan"),
    # truncation windows
    ("truncation window longer than the sequence", train("--truncation", "window", "--k", "100"),
     r"--k 100 is longer than --seq-len 8"),
    ("tbptt k2 longer than the sequence", train("--truncation", "tbptt", "--k1", "4", "--k2", "50"),
     r"--k2 50 is longer than --seq-len 8"),
    ("tbptt k2 < k1", train("--truncation", "tbptt", "--k1", "6", "--k2", "3"), r"--k2 must be >= --k1, got k1=6, k2=3"),
    # output directories
    ("output directory is a file", train("--out", "{w}/afile"), r"afile is a file, not a directory"),
    ("output directory not writable", train("--out", "{ro}"), r"(cannot write a lock in|not writable).*"),
    ("output directory cannot be created", train("--out", "{ro_new}"), r"cannot (create|write).*"),
    ("output directory holds a run", ["train", "--text", "{w}/t.txt", "--out", "{w}/good", "--steps", "1",
                                      "--no-progress"], r"good already holds a run: .*--resume"),
    # checkpoints
    ("no checkpoint there", ["sample", "{w}/adir"], r"no checkpoint at .*adir"),
    ("truncated checkpoint", ["sample", "{w}/truncated"], r"truncated/checkpoint\.npz is corrupt"),
    ("checkpoint that is text", ["evaluate", "{w}/notzip"], r"notzip/checkpoint\.npz is corrupt or not a bptt"),
    ("checkpoint from a future format", ["sample", "{w}/future"], r"newer bptt \(checkpoint format version 99"),
    ("checkpoint with tampered arrays", ["sample", "{w}/tampered"], r"do not match the SHA-256"),
    ("checkpoint with a hand-edited config", ["sample", "{w}/edited"],
     r"layers\.0\.U has shape \(8, 18\) .*hidden_size=10000000.*implies \(10000000, 18\).*edited"),
    ("checkpoint from another model", ["sample", "{w}/othermodel"], r"from another model|edited"),
    ("resume from another model's file", ["train", "--resume", "{w}/othermodel", "--steps", "1", "--no-progress"],
     r"another model|edited"),
    ("checkpoint with NaN weights", ["sample", "{w}/nanweights"], r"corrupt: parameter layers\.0\.W \(1 NaN"),
    ("pickled object array in the npz", ["sample", "{w}/pickled"], r"params/evil\.npy.*object array.*pickle"),
    ("compressed npz (zip bomb)", ["sample", "{w}/compressed"], r"is compressed"),
    ("npy header claiming 8 TB", ["sample", "{w}/lying"], r"optim/huge\.npy.*declares shape \(1000000000000,\)"),
    ("npz without bptt metadata", ["diagnose", "{w}/nometa"], r"not a bptt checkpoint"),
    ("metadata that is not JSON", ["sample", "{w}/badjson"], r"metadata is not JSON"),
    ("hand-edited training record (array missing)", ["train", "--resume", "{w}/nostate", "--steps", "1"],
     r"training state is inconsistent.*state/0"),
    ("hand-edited vocabulary", ["sample", "{w}/badvocab"], r"badvocab/checkpoint\.npz is corrupt: metadata field vocabulary\.tokens must be a list.*got 5"),
    ("diagnose: metrics line that is not an object", ["diagnose", "{w}/badhistory", "--seq-len", "4", "--batch", "1"],
     r"metrics\.jsonl: line 2 is not a JSON object \(got list\)"),
    ("diagnose: binary diagnostics file", ["diagnose", "{w}/binaryhistory", "--seq-len", "4", "--batch", "1"],
     r"diagnostics\.jsonl: line 2 is not UTF-8"),
    ("resume of a model without training state", ["train", "--resume", "{w}/notrain", "--steps", "1"],
     r"no training state"),
    ("resume changing the model", ["train", "--resume", "{w}/good", "--steps", "1", "--hidden", "9"],
     r"--hidden cannot change on --resume"),
] + [
    # --- round two (issue 15). Metadata is checked against one schema, naming file, field and value
    ("metadata nested 100,000 deep", ["sample", "{w}/deepmeta"], r"deepmeta/checkpoint\.npz is corrupt: metadata is nested 10000\d levels deep"),
    ("metadata with a 5000-digit integer", ["sample", "{w}/hugeint"], r"hugeint/checkpoint\.npz is corrupt: .*not JSON"),
    ("RNG state without its state key", ["sample", "{w}/norngstate"], r"norngstate/checkpoint\.npz is corrupt: metadata field trainer\.rng\.state is missing"),
    ("step that is Infinity", ["train", "--resume", "{w}/infstep", "--steps", "1"], r"infstep/checkpoint\.npz .*field trainer\.step must be an integer.*got inf"),
    ("negative step", ["train", "--resume", "{w}/negstep", "--steps", "1"], r"field trainer\.step must be an integer in \[0, .*got -7"),
    ("extra that is a list", ["evaluate", "{w}/extralist"], r"field extra must be an object, got a list of 2 items"),
    ("numerics that is a string", ["train", "--resume", "{w}/numericsstr", "--steps", "1"], r"field trainer\.numerics must be null or an object, got 'stop'"),
    ("version true", ["sample", "{w}/versiontrue"], r"field version must be an integer in \[1, .*got true"),
    ("version -1", ["sample", "{w}/versionneg"], r"field version must be an integer in \[1, .*got -1"),
    ("cell that is a list", ["sample", "{w}/celllist"], r"field config\.cell must be one of .*got a list of 1 items"),
    ("fractional layer count", ["sample", "{w}/floatlayers"], r"field config\.num_layers must be an integer.*got 1\.5"),
    ("NaN learning rate in the optimiser record", ["train", "--resume", "{w}/nanlr", "--steps", "1"], r"field trainer\.optimizer\.hyper\.lr must be a finite number in \(0, inf\], got nan"),
    ("unknown optimiser slot", ["sample", "{w}/badslotname"], r"field trainer\.optimizer_slots\[2\] must be one of .*got 'evil'"),
    ("a million carried-state parts", ["sample", "{w}/bigparts"], r"field trainer\.carried_parts must be an integer in \[0, 8\], got 1000000"),
    ("history that is a string", ["sample", "{w}/historystr"], r"field trainer\.history must be a list"),
    ("SHA-256 that is a number", ["sample", "{w}/shaint"], r"field sha256 must be a string matching"),
    ("vocabulary with a duplicate token", ["sample", "{w}/tokensdup"], r"field vocabulary\.tokens must be a list .*all different"),
    # every loaded array is checked, not just the weights
    ("NaN Adam slot", ["train", "--resume", "{w}/nanslot", "--steps", "1"], r"nanslot/checkpoint\.npz is corrupt: optimizer slot optim/exp_avg/V \(1 NaN"),
    ("negative Adam second moment", ["train", "--resume", "{w}/negslot", "--steps", "1"], r"optim/exp_avg_sq/V holds -1\.0 at \(0, 0\).*cannot be negative"),
    ("NaN carried hidden state", ["train", "--resume", "{w}/nanstate", "--steps", "1"], r"carried state state/0 \(1 NaN"),
    ("optimiser slot of another shape", ["sample", "{w}/slotshape"], r"optimizer slot exp_avg/V is float32 \(18, 3\), but the parameter is float32 \(18, 8\)"),
    # zip tricks, refused before any member is read
    ("2,000 directory entries on one member", ["sample", "{w}/../manyentries"], r"members 'params/m0\.npy' and 'params/m1\.npy' overlap"),
    ("20,000 directory entries", ["sample", "{w}/../hugecd"], r"20,000 members \(at most 10,000\)"),
    ("overlapping zip members", ["sample", "{w}/overlap"], r"members 'params/a\.npy' and 'params/b\.npy' overlap"),
    # any text read -- from a flag or from a checkpoint -- is a regular file, bounded, not binary
    ("text that is a FIFO", train(text="{w}/fifo.txt"), r"--text .*fifo\.txt is a FIFO \(named pipe\), not a regular file"),
    ("evaluate: text that is a FIFO", ["evaluate", "{w}/good", "--text", "{w}/fifo.txt"], r"fifo\.txt is a FIFO"),
    ("evaluate: checkpoint naming /dev/zero", ["evaluate", "{w}/devzero"], r"training text named in .*devzero/checkpoint\.npz, /dev/zero is a character device"),
    ("evaluate: checkpoint naming a FIFO", ["evaluate", "{w}/fifoname"], r"training text named in .*fifo is a FIFO"),
    ("evaluate: checkpoint naming a directory", ["evaluate", "{w}/dirname"], r"adir is a directory"),
    ("diagnose: the checkpoint's text changed", ["diagnose", "{w}/changedtext", "--seq-len", "4", "--batch", "1"],
     r"t2\.txt, the text .* was trained on, changed since .*pass --text"),
    ("resume: the checkpoint's text changed", ["train", "--resume", "{w}/changedtext", "--steps", "1"], r"t2\.txt, the text .* was trained on, changed since .*pass --text"),
    ("NUL-filled text", train(text="{w}/nul.txt"), r"nul\.txt is a binary file, not text \(a NUL byte at offset 0, 100,000 in all\)"),
    ("text over the size limit", train(text="{w}/../big.txt"), r"big\.txt is 600\.0 MiB, more than the 512\.0 MiB bptt reads"),
    ("resume: a FIFO as the lock", ["train", "--resume", "{w}/fifolock", "--steps", "1"], r"lock .*\.bptt-lock is unreadable"),
    ("resume: a FIFO as metrics.jsonl", ["train", "--resume", "{w}/fifometrics", "--steps", "1"], r"metrics\.jsonl is a FIFO"),
    ("diagnose: a FIFO as metrics.jsonl", ["diagnose", "{w}/fifometrics", "--seq-len", "4", "--batch", "1"], r"metrics\.jsonl is a FIFO"),
    # resources: counted and refused up front, with the figure
    ("hidden size whose weights fit but the run does not", train("--hidden", str(FITS_BUT_RUN_DOES_NOT)),
     r"this run needs about [\d,.]+ GiB of memory \(.*init draws.*\), more than this machine's [\d,.]+ GiB"),
    ("sample: length of two billion", ["sample", "{w}/good", "--length", "2000000000"], r"--length must be <= 100,000,000"),
    ("epochs of 1e308", ["train", "--text", "{w}/t.txt", "--out", "{w}/out", "--epochs", "1e308", "--no-progress"],
     r"--epochs 1e\+308 is \S+ steps .*more than the 9,223,372,036,854,775,807"),
    ("absurd seed", train("--seed", str(10 ** 30)), r"--seed must be <= 9,223,372,036,854,775,807, got 1,000"),
    ("absurd step count", train("--steps", str(10 ** 30)), r"--steps must be <= 9,223,372,036,854,775,807"),
    ("absurd checkpoint interval", train("--checkpoint-every", str(10 ** 30)), r"--checkpoint-every must be <= "),
    ("resume: metrics.jsonl a symlink elsewhere", ["train", "--resume", "{w}/linkmetrics", "--steps", "1"], r"metrics\.jsonl is a symbolic link"),
]


# ---------------------------------------------------------------- API cases: fn(world) must raise


def _net(**kw):
    return Network(3, 4, 2, **kw)


def _ids_net():
    return Network(5, 4, 5, seed=0)


def _save_nan(w):
    net = _net()
    net.params["V"][0, 0] = np.inf
    save_checkpoint(os.path.join(w, "good"), net)


def _resume_other_model(w):
    net = _net()
    trainer = Trainer(net, make_optimizer("adam", net.params, lr=0.1))
    trainer.load_state_dict(load_checkpoint(os.path.join(w, "good")).trainer_state())


def _metadata_over_the_limit(w):
    """A checkpoint whose metadata is 17 MiB (the limit is 16 MiB), built outside the case's world."""
    import tempfile
    with tempfile.TemporaryDirectory() as other:
        good = os.path.join(w, "good", "checkpoint.npz")
        _rewrite(good, os.path.join(other, "big", "checkpoint.npz"), lambda a, m: m["extra"].update(pad="x" * (17 << 20)))
        load_checkpoint(os.path.join(other, "big"))


API = [
    ("data: NUL-filled file", lambda w: read_text(os.path.join(w, "nul.txt")), r"nul\.txt is a binary file"),
    ("data: a FIFO", lambda w: read_text(os.path.join(w, "fifo.txt")), r"fifo\.txt is a FIFO \(named pipe\), not a regular file"),
    ("data: a character device", lambda w: read_text("/dev/zero"), r"/dev/zero is a character device"),
    ("data: a file over the limit", lambda w: read_text(os.path.join(w, "t.txt"), max_bytes=100),
     r"t\.txt is 2,?\d+ bytes|t\.txt is [\d.]+ KiB, more than the 100 bytes bptt reads"),
    ("load_checkpoint: metadata over the size limit", _metadata_over_the_limit,
     r"metadata is 17,\d{3},\d{3} bytes, more than the 16,777,216 bptt reads"),
    ("Network: zero hidden size", lambda w: Network(3, 0, 2), r"hidden_size must be >= 1, got 0"),
    ("Network: negative input size", lambda w: Network(-3, 4, 2), r"input_size must be >= 1, got -3"),
    ("Network: fractional size", lambda w: Network(3, 2.5, 2), r"hidden_size must be an integer >= 1, got 2\.5"),
    ("Network: absurd size", lambda w: Network(3, 10 ** 7, 2), r"hidden_size=10000000,.*more than this machine"),
    ("Network: integer dtype", lambda w: _net(dtype="int32"), r"dtype must be one of .*'int32'"),
    ("Network: unknown cell", lambda w: _net(cell="transformer"), r"cell must be one of .*'transformer'"),
    ("forward: wrong input width", lambda w: _net().forward(np.zeros((5, 2, 4))), r"must have shape \(\*, \*, 3\), got \(5, 2, 4\)"),
    ("forward: NaN in inputs", lambda w: _net().forward(np.full((5, 2, 3), np.nan)), r"non-finite value nan at index \(0, 0, 0\)"),
    ("forward: inf in inputs", lambda w: _net().forward(np.array([[[0.0, np.inf, 0.0]]])), r"non-finite value inf"),
    ("forward: complex inputs", lambda w: _net().forward(np.zeros((2, 2, 3), complex)), r"must be real, got dtype complex"),
    ("forward: string inputs", lambda w: _net().forward(np.array([[["a", "b", "c"]]])), r"must be a float array, got dtype <U1"),
    ("forward: token id out of range", lambda w: _ids_net().forward(np.array([[1, 7]])), r"token id 7, outside \[0, 5\)"),
    ("forward: empty sequence", lambda w: _net().forward(np.zeros((0, 2, 3))), r"must not be empty, got shape \(0, 2, 3\)"),
    ("forward: h0 of the wrong shape", lambda w: _net().forward(np.zeros((5, 2, 3)), np.zeros((1, 2, 5))), r"h0.*\(1, 2, 5\)"),
    ("loss: targets of the wrong shape", lambda w: _net().loss_and_grads(np.zeros((5, 2, 3)), np.zeros((5, 3), int)),
     r"targets.*\(5, 3\)"),
    ("loss: NaN targets (mse)", lambda w: _net(loss="mse").loss_and_grads(np.zeros((5, 2, 3)), np.full((5, 2, 2), np.nan)),
     r"targets contains a non-finite value nan"),
    ("loss: mask of the wrong shape", lambda w: _net().loss_and_grads(np.zeros((5, 2, 3)), np.zeros((5, 2), int),
                                                                        np.ones((4, 2))), r"mask.*\(4, 2\)"),
    ("optimiser: negative rate", lambda w: make_optimizer("adam", _net().params, lr=-1e-3), r"lr must be a finite number > 0, got -0\.001"),
    ("optimiser: NaN rate", lambda w: make_optimizer("sgd", _net().params, lr=float("nan")), r"lr must be a finite number > 0, got nan"),
    ("clip: zero max norm", lambda w: clip_by_global_norm(_net().zero_grads(), 0.0), r"max_norm.*got 0"),
    ("clip: negative limit", lambda w: clip_by_value(_net().zero_grads(), -1.0), r"limit.*got -1"),
    ("clip: unknown mode", lambda w: make_clipper("sideways", 1.0), r"sideways"),
    ("schedule: negative warm-up", lambda w: make_schedule("constant", 0.1, warmup=-2), r"-2"),
    ("truncation: zero window", lambda w: make_truncation("window", k=-1), r"k must be an integer >= 0, got -1"),
    ("truncation: k2 < k1", lambda w: make_truncation("tbptt", k1=5, k2=2), r"k2 must be >= k1, got k1=5, k2=2"),
    ("data: batch of zero streams", lambda w: TextStreams(np.arange(100), 0, 8), r"batch must be >= 1, got 0"),
    ("data: window longer than the text", lambda w: TextStreams(np.arange(20), 2, 64), r"too short: 20 tokens"),
    ("data: validation fraction 1", lambda w: split_ids(np.arange(10), 1.0), r"val_fraction must be < 1, got 1"),
    ("data: missing file", lambda w: read_text(os.path.join(w, "missing.txt")), r"missing\.txt"),
    ("data: empty file", lambda w: read_text(os.path.join(w, "empty.txt")), r"empty\.txt is empty"),
    ("data: binary file", lambda w: read_text(os.path.join(w, "binary.dat")), r"is not UTF-8 text \(byte 0x"),
    ("data: Latin-1 file", lambda w: read_text(os.path.join(w, "latin1.txt")), r"byte 0xe9 at offset 3"),
    ("vocabulary: unknown characters", lambda w: Vocabulary.build("abc").encode("abz€"),
     r"2 characters not in the model's vocabulary: 'z', '€'"),
    ("vocabulary: ids out of range", lambda w: Vocabulary.build("abc").decode([0, 9]), r"ids must be in \[0, 3\), got 0\.\.9"),
    ("sample: unknown prime", lambda w: sample_text(_ids_net(), Vocabulary.build("abcde"), 5, prime="xyz"),
     r"3 characters not in the model's vocabulary"),
    ("sample: vocabulary of another model", lambda w: sample_text(_ids_net(), Vocabulary.build("abc"), 5),
     r"different models"),
    ("sample: zero length", lambda w: sample_ids(_ids_net(), 0), r"length must be >= 1, got 0"),
    ("sample: NaN temperature", lambda w: sample_ids(_ids_net(), 3, temperature=float("nan")), r"temperature.*got nan"),
    ("fit: negative steps", lambda w: Trainer(_net(), make_optimizer("sgd", _net().params, lr=0.1)).fit(
        (np.zeros((2, 1, 3)), np.zeros((2, 1), int)), -1), r"steps must be an integer >= 0, got -1"),
    ("checkpoint: NaN weights are not written", _save_nan, r"refusing to write .*V \(0 NaN, 1 inf"),
    ("checkpoint: output directory is a file", lambda w: save_checkpoint(os.path.join(w, "afile"), _net()),
     r"afile"),
    ("checkpoint: optimiser state of another model", _resume_other_model, r"optimizer slot .* has shape|optimizer state"),
] + [(f"load_checkpoint: {name}", (lambda d: lambda w: load_checkpoint(os.path.join(w, d)))(d), needle)
     for name, d, needle in [
         ("truncated", "truncated", r"corrupt"), ("future version", "future", r"newer bptt"),
         ("tampered arrays", "tampered", r"SHA-256"), ("hand-edited config", "edited", r"edited"),
         ("another model", "othermodel", r"another model|edited"), ("pickled object array", "pickled", r"pickle"),
         ("zip bomb", "compressed", r"compressed"), ("lying header", "lying", r"declares shape"),
         ("NaN weights", "nanweights", r"not finite"), ("training record missing an array", "nostate",
                                                          r"training state is inconsistent"), ("no metadata", "nometa", r"not a bptt checkpoint"),
         ("a directory without one", "adir", r"no checkpoint at")]]

CASES = [("cli",) + case for case in CLI] + [("api",) + case for case in API]


# ---------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad_input") / "world")
    build_world(root)
    return root


def _fill(arg, w):
    ro = "/sys/kernel" if ROOT else os.path.join(w, "ro")
    ro_new = "/sys/kernel/bptt-run" if ROOT else os.path.join(w, "ro", "run")
    return arg.replace("{w}", w).replace("{ro_new}", ro_new).replace("{ro}", ro)


def _case_dir(world, index):
    w = f"{world}-case{index}"
    if not os.path.exists(w):
        shutil.copytree(world, w, symlinks=True)
        if not ROOT:
            os.chmod(os.path.join(w, "ro"), 0o555)
        for rel in FIFOS:                                    # copytree cannot copy FIFOs: made per case
            os.mkfifo(os.path.join(w, rel))
    return w


@pytest.fixture(scope="module")
def cli_results(world):
    """All CLI cases at once (they are independent processes; 4 at a time)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")

    def one(index):
        _, _, argv, _ = CASES[index]
        w = _case_dir(world, index)
        before = snapshot(w)
        proc = subprocess.run([sys.executable, "-m", "bptt", *[_fill(a, w) for a in argv]], capture_output=True,
                              text=True, timeout=120, env=env, cwd=w)
        return proc, before, snapshot(w)

    indices = [i for i, case in enumerate(CASES) if case[0] == "cli"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(indices, pool.map(one, indices)))


def test_the_table_covers_every_kind_of_bad_input():
    names = " ".join(case[1] for case in CASES).lower()
    for kind in ["missing", "empty", "binary", "latin-1", "unknown characters", "wrong", "nan", "inf", "negative",
                 "zero", "absurd", "longer than the sequence", "is a file", "not writable", "truncated",
                 "another model", "future", "hand-edited", "pickled"]:
        assert kind in names, kind
    assert len(CASES) == len({case[:2] for case in CASES}), "case names must be unique"


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input(index, world, cli_results):
    where, name, action, needle = CASES[index]
    if where == "cli":
        proc, before, after = cli_results[index]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode != 0, f"{name}: exit 0\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        assert len(lines) == 1, f"{name}: expected one line, got\n{proc.stderr}"
        assert re.match(r"bptt \w+: error: ", lines[0]), lines[0]
        message = lines[0]
    else:
        w = _case_dir(world, index)
        before = snapshot(w)
        with pytest.raises((ValueError, TypeError, OSError)) as info:
            action(w)
        after = snapshot(w)
        if isinstance(info.value, OSError):           # only for a file that is not there / not a directory
            assert isinstance(info.value, (FileNotFoundError, NotADirectoryError, FileExistsError)), info.value
        message = str(info.value)
        assert "\n" not in message, message
    assert re.search(needle, message), f"{name}: {message!r} does not match {needle!r}"
    assert after == before, f"{name}: files changed: {set(after.items()) ^ set(before.items())}"
    assert not os.path.exists(os.path.join(_case_dir(world, index), "pickled", "PWNED")), "unpickling ran code"
