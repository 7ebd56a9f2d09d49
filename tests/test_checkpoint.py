"""Checkpoints: round trip, verified loading with one-line errors, atomic writes under SIGKILL,
and library-level resume giving bit-identical parameters."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from bptt.io.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from bptt.training.clip import make_clipper
from bptt.data import TextStreams, Vocabulary
from bptt.network import Network
from bptt.training.optim import Adam
from bptt.training.schedules import make_schedule
from bptt.training.train import Trainer
from bptt.training.truncation import TBPTT

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def make_run(cell="rnn", dropout=0.0):
    vocab = Vocabulary.build(TEXT)
    net = Network(len(vocab), 12, len(vocab), num_layers=2, cell=cell, seed=5, dropout=dropout)
    trainer = Trainer(net, Adam(net.params, lr=5e-3), clip=make_clipper("global-norm", 1.0),
                      truncation=TBPTT(4, 6), schedule=make_schedule("halve-on-rise", 5e-3, warmup=3))
    data = TextStreams(vocab.encode(TEXT), batch=4, seq_len=10)
    return vocab, net, trainer, data


def evaluate(net):                              # a changing "validation loss" so halve-on-rise has state
    return float(np.sum(net.params["V"] ** 2))


@pytest.mark.parametrize("cell, dropout", [("rnn", 0.0), ("lstm", 0.3)])
def test_resume_is_bit_identical(tmp_path, cell, dropout):
    _, net_a, trainer_a, data = make_run(cell, dropout)
    trainer_a.fit(data, 12, evaluate=evaluate, eval_every=3)

    vocab, net_b, trainer_b, _ = make_run(cell, dropout)
    trainer_b.fit(data, 5, evaluate=evaluate, eval_every=3)     # stop mid-epoch, with a carried state
    save_checkpoint(tmp_path, net_b, trainer=trainer_b, vocab=vocab)
    del net_b, trainer_b

    ckpt = load_checkpoint(tmp_path)
    _, _, trainer_c, _ = make_run(cell, dropout)
    net_c = ckpt.network()
    trainer_c = Trainer(net_c, Adam(net_c.params, lr=1.0), clip=trainer_c.clip, truncation=trainer_c.truncation,
                        schedule=make_schedule("halve-on-rise", 5e-3, warmup=3))
    trainer_c.load_state_dict(ckpt.trainer_state())
    assert trainer_c.step == 5 and trainer_c.state is not None
    trainer_c.fit(data, 7, evaluate=evaluate, eval_every=3)
    for name in net_a.params:
        assert np.array_equal(net_a.params[name], net_c.params[name]), name
    assert trainer_c.schedule.state_dict() == trainer_a.schedule.state_dict()


def test_round_trip_contents(tmp_path):
    vocab, net, trainer, data = make_run()
    trainer.fit(data, 3)
    path = save_checkpoint(tmp_path / "run", net, trainer=trainer, vocab=vocab, metrics={"val_loss": 1.5},
                           extra={"note": "x"})
    assert path.endswith(FILENAME) and not [f for f in os.listdir(tmp_path / "run") if "tmp" in f]
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.config == net.config and ckpt.vocabulary() == vocab and ckpt.step == 3
    assert ckpt.meta["metrics"] == {"val_loss": 1.5} and ckpt.meta["extra"] == {"note": "x"}
    for name, p in ckpt.network().params.items():
        assert np.array_equal(p, net.params[name]) and p.dtype == net.params[name].dtype
    with np.load(path, allow_pickle=False) as archive:              # loads without pickle
        assert "params/V" in archive.files


def corrupt_copies(tmp_path, good):
    raw = open(good, "rb").read()
    cases = {}
    cases["truncated"] = raw[: len(raw) // 2]
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    cases["flipped"] = bytes(flipped)
    cases["text"] = b"this is not a checkpoint\n"
    out = {}
    for name, data in cases.items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(data)
        out[name] = p
    return out


def test_corrupt_foreign_and_future_checkpoints_fail_with_one_line(tmp_path):
    vocab, net, trainer, data = make_run()
    good = save_checkpoint(tmp_path / "good", net, trainer=trainer, vocab=vocab)
    for name, path in corrupt_copies(tmp_path, good).items():
        with pytest.raises(ValueError, match="corrupt|not a bptt checkpoint") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value), name
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="not a bptt checkpoint"):
        load_checkpoint(foreign)
    # a valid zip whose metadata claims a newer format
    with np.load(good, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["version"] = 99
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="newer bptt .*version 99"):
        load_checkpoint(tmp_path / "future.npz")
    # arrays changed after saving (same zip structure, different bytes): the SHA-256 catches it
    meta["version"] = 1
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays["params/V"] = arrays["params/V"] + 1
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(tmp_path / "tampered.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from bptt.io.checkpoint import save_checkpoint
    from bptt.network import Network
    net = Network(4, 2000, 2, seed=0)                # W alone is 4M floats, ~32 MB: each save takes a while
    version = 0
    while True:
        version += 1
        for p in net.params.values():
            p[...] = version
        save_checkpoint(sys.argv[1], net)
        print(version, flush=True)
""")


def test_sigkill_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    killed_mid_write = False
    try:
        assert proc.stdout.readline().strip() == "1"   # one complete checkpoint exists
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:             # wait until a new version is half written
            if any(".tmp" in f for f in os.listdir(target)):
                os.kill(proc.pid, signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed_mid_write, "the writer never showed a temporary file"
    ckpt = load_checkpoint(target)                     # ignores any stray temp file; verifies every SHA-256
    values = {float(a.ravel()[0]) for a in ckpt.params.values()}
    assert len(values) == 1 and values.pop() >= 1      # one whole version, never a mix
