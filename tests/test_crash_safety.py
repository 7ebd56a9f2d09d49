"""Nothing lost: SIGKILL at random moments, Ctrl-C, and a failing disk never cost a run its checkpoint.

Each trial below starts ``bptt train`` in a real process (a tiny model, a checkpoint after
*every* step, so much of its time is spent writing checkpoints) and kills it with SIGKILL --
a third of the trials at a random moment after it has checkpointed, a third exactly while a
checkpoint's temporary file exists (mid-write), a third at a random moment from its start
(during start-up, taking the lock, loading the checkpoint, or training). After every kill the newest checkpoint must load (its SHA-256 verified), its step
must never go backwards, and the next trial resumes from it (taking over the dead run's lock).
"""

import errno
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bptt.io.checkpoint import load_checkpoint, save_checkpoint
from bptt.network import Network
from bptt.io.runlock import LOCK_NAME

pytestmark = pytest.mark.slow

TRIALS = 12


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("nothing lost, nothing trusted blindly. " * 80)
    return path


def train_cmd(text_file, *argv):
    return [sys.executable, "-m", "bptt", "train", "--text", str(text_file), "--hidden", "16", "--seq-len", "8",
            "--batch", "2", "--no-progress", "--log-every", "1", "--checkpoint-every", "1", *argv]


def wait_for(predicate, proc, seconds=60.0, poll=0.0005):
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def test_sigkill_at_random_moments_never_loses_the_checkpoint(tmp_path, text_file):
    out = tmp_path / "run"
    rng = np.random.default_rng(2024)
    last_step, mid_write = 0, 0
    for trial in range(TRIALS):
        # the last trial is killed after it checkpointed, so it surely left its lock behind
        kind = ("after a checkpoint", "mid-write", "from the start")[(trial + 1) % 3]
        start = ["--out", str(out)] if trial == 0 else ["--resume", str(out)]
        proc = subprocess.Popen(train_cmd(text_file, *start, "--steps", "100000"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            if kind == "from the start":                       # start-up, lock, loading, or training
                time.sleep(rng.uniform(0.0, 1.5))
            else:                                              # once it has checkpointed
                assert wait_for(lambda: (out / "checkpoint.npz").exists() and
                                load_step(out) > last_step, proc), proc.stderr.read().decode()
                if kind == "mid-write":                        # exactly while a checkpoint is being written
                    in_write = wait_for(lambda: any(".tmp" in f and "lock" not in f for f in os.listdir(out)), proc,
                                        seconds=20, poll=0.0001)
                    mid_write += in_write
                else:                                          # at a random moment
                    time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, (kind, proc.returncode)
        ckpt = load_checkpoint(out)                            # verified: zip, SHA-256, config vs arrays
        assert ckpt.step >= last_step, (trial, ckpt.step, last_step)
        assert all(np.isfinite(a).all() for a in ckpt.params.values())
        last_step = ckpt.step
    assert mid_write >= TRIALS // 3 - 1, f"only {mid_write} kills landed during a checkpoint write"
    # the run continues from the newest checkpoint: a stale lock, possibly a stray temp file, no harm
    assert (out / LOCK_NAME).exists()                          # left by the last SIGKILLed run
    done = subprocess.run(train_cmd(text_file, "--resume", str(out), "--steps", "3"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "taking over the stale lock" in done.stderr
    assert load_checkpoint(out).step == last_step + 3
    assert not (out / LOCK_NAME).exists()


def load_step(out):
    try:
        return load_checkpoint(out).step
    except (ValueError, OSError):
        return -1


def test_sigint_saves_a_final_checkpoint_and_exits_130(tmp_path, text_file):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(text_file, "--out", str(out), "--steps", "100000000", "--checkpoint-every", "100000000"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size > 0,
                        proc, poll=0.01)
        time.sleep(0.3)
        assert not (out / "checkpoint.npz").exists()           # nothing saved yet: only Ctrl-C will save
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "SIGINT received" in err and "checkpoint saved" in err and "Traceback" not in err
    ckpt = load_checkpoint(out)
    import json
    logged = [json.loads(line)["step"] for line in open(out / "metrics.jsonl")]
    assert ckpt.step == logged[-1] > 0                          # the step it stopped after, saved whole
    assert not (out / LOCK_NAME).exists()


def test_a_write_error_keeps_the_previous_checkpoint(tmp_path, text_file):
    """The disk fills up (RLIMIT_FSIZE: writes past the limit fail with EFBIG) while the resumed run
    writes its next checkpoint: one clear line, exit 2, the previous checkpoint byte-identical."""
    out = tmp_path / "run"
    first = subprocess.run(train_cmd(text_file, "--out", str(out), "--steps", "3"), capture_output=True, timeout=120)
    assert first.returncode == 0
    before = (out / "checkpoint.npz").read_bytes()
    limit = len(before) // 2                                    # the new checkpoint cannot fit

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # EFBIG instead of being killed

    failed = subprocess.run(train_cmd(text_file, "--resume", str(out), "--steps", "3"), capture_output=True,
                            text=True, timeout=120, preexec_fn=small_disk)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert lines[-1].startswith("bptt train: error:") and "File too large" in lines[-1], failed.stderr
    assert "Traceback" not in failed.stderr
    assert (out / "checkpoint.npz").read_bytes() == before
    assert sorted(f for f in os.listdir(out) if not f.startswith("metrics")) == \
        ["best.npz", "checkpoint.npz"]                          # no temp, no lock (best.npz: the first run's)
    assert load_checkpoint(out).step == 3


def test_a_failing_write_in_process_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Fault injection inside save_checkpoint: the writer dies half way (ENOSPC) -> old file intact,
    temporary file removed, the error propagates."""
    net = Network(3, 4, 3, seed=0)
    path = save_checkpoint(tmp_path / "run", net)
    before = open(path, "rb").read()

    real_savez = np.savez

    def savez_then_disk_full(file, **arrays):
        real_savez(file, **arrays)
        file.truncate(file.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_disk_full)
    net.params["V"] += 1.0
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "run", net)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path / "run") == ["checkpoint.npz"]
