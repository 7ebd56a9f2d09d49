"""Nothing lost: SIGKILL at random moments, Ctrl-C, and a failing disk never cost a run its checkpoint.

Each trial below starts ``bptt train`` in a real process (a tiny model, a checkpoint after
*every* step, so much of its time is spent writing checkpoints) and kills it with SIGKILL --
a third of the trials at a random moment after it has checkpointed, a third exactly while a
checkpoint's temporary file exists (mid-write), a third at a random moment from its start
(during start-up, taking the lock, loading the checkpoint, or training). After every kill the newest checkpoint must load (its SHA-256 verified), its step
must never go backwards, and the next trial resumes from it (taking over the dead run's lock).
"""

import errno
import json
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
    assert [f for f in os.listdir(out) if ".tmp" in f] == []   # a killed writer's temporaries: removed at start


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


# ---------------------------------------------------------------- round two (issue 15): nothing half-written, nothing stale


def test_a_full_disk_mid_line_leaves_metrics_whole_lines(tmp_path, monkeypatch):
    """The disk fills in the middle of a metrics.jsonl line: the half line is cut off again, so the
    file holds whole lines only; the error propagates."""
    from bptt.io import files

    path = tmp_path / "metrics.jsonl"
    files.append_line(path, json.dumps({"step": 1}))
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        files.append_line(path, json.dumps({"step": 2, "loss": 1.5}))
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_readers_skip_a_torn_last_line_with_a_warning(tmp_path, text_file):
    """A metrics.jsonl whose last line was cut short (a kill or a full disk mid-write, before this
    fix) no longer makes bptt diagnose refuse the run: the line is skipped with a warning."""
    out = tmp_path / "run"
    assert subprocess.run(train_cmd(text_file, "--out", str(out), "--steps", "3"), capture_output=True,
                          timeout=120).returncode == 0
    with open(out / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 4, "loss": 2.')                    # torn: no end, no newline
    run = subprocess.run([sys.executable, "-m", "bptt", "diagnose", str(out), "--seq-len", "4", "--batch", "1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "metrics.jsonl: line 4 is cut short" in run.stderr and "Traceback" not in run.stderr
    from bptt.io.files import read_json_lines
    warned = []
    assert [line["step"] for line in read_json_lines(out / "metrics.jsonl", warn=warned.append)] == [1, 2, 3]
    assert len(warned) == 1
    (out / "metrics.jsonl").write_bytes(b'{"step": 1}\n{"step": 2\n{"step": 3}\n')   # torn in the middle: refused
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_json_lines(out / "metrics.jsonl")


def test_a_full_disk_while_taking_the_lock_leaves_nothing(tmp_path, monkeypatch):
    from bptt.io import runlock

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runlock.os, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        runlock.RunLock(tmp_path / "new-run").acquire()
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []                            # no temporary, no lock, no empty run directory


def test_stale_temporaries_of_dead_writers_are_removed_at_start(tmp_path, text_file):
    out = tmp_path / "run"
    assert subprocess.run(train_cmd(text_file, "--out", str(out), "--steps", "2"), capture_output=True,
                          timeout=120).returncode == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                                  # its PID is free now
    (out / f".checkpoint.npz.tmp{dead.pid}").write_bytes(b"half a checkpoint")
    (out / f".bptt-lock.{'0' * 32}.tmp{dead.pid}").write_bytes(b"{}")
    (out / f".checkpoint.npz.tmp{os.getpid()}").write_bytes(b"a live writer's")   # this test process is alive
    run = subprocess.run(train_cmd(text_file, "--resume", str(out), "--steps", "1"), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(f for f in os.listdir(out) if ".tmp" in f) == [f".checkpoint.npz.tmp{os.getpid()}"]


def test_the_checkpoint_writer_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(victim, run / f".checkpoint.npz.tmp{os.getpid()}")
    save_checkpoint(run, Network(3, 4, 3, seed=0))
    assert victim.read_text() == "precious\n"
    assert load_checkpoint(run).step == 0 and sorted(os.listdir(run)) == ["checkpoint.npz"]


def test_overwrite_killed_before_its_first_checkpoint_leaves_no_old_model(tmp_path, text_file):
    """--overwrite clears the old run before it writes: killed before its first checkpoint, it leaves
    no old checkpoint beside its own metrics, so --resume cannot silently continue the old model."""
    out = tmp_path / "run"
    assert subprocess.run(train_cmd(text_file, "--out", str(out), "--steps", "2"), capture_output=True,
                          timeout=120).returncode == 0
    proc = subprocess.Popen(train_cmd(text_file, "--out", str(out), "--overwrite", "--steps", "100000000",
                                      "--checkpoint-every", "100000000", "--hidden", "12"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: not (out / "checkpoint.npz").exists() and (out / "metrics.jsonl").exists() and
                        (out / "metrics.jsonl").stat().st_size > 0, proc, poll=0.01)   # the new run is training
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert not (out / "checkpoint.npz").exists()
    resumed = subprocess.run(train_cmd(text_file, "--resume", str(out), "--steps", "1"), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 2 and "no checkpoint at" in resumed.stderr, resumed.stderr


def test_sighup_saves_like_sigterm_and_exits_129(tmp_path, text_file):
    """A closed terminal (SIGHUP) used to kill the run without a checkpoint and leave its lock."""
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(text_file, "--out", str(out), "--steps", "100000000", "--checkpoint-every",
                                      "100000000"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size > 0,
                        proc, poll=0.01)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 129, err
    assert "SIGHUP received" in err and "Traceback" not in err
    assert load_checkpoint(out).step > 0 and not (out / LOCK_NAME).exists()


def bptt_frames(err: str) -> list:
    """Traceback frames in bptt's code, but for the one line that can precede installing the handler
    (``from . import _startup`` at the top of bptt/__init__.py, and _startup's own first lines)."""
    import bptt
    init = bptt.__file__
    first = next(n for n, line in enumerate(open(init), 1) if "import _startup" in line)
    frames = [line for line in err.splitlines() if line.strip().startswith('File "') and "bptt" + os.sep in line]
    return [f for f in frames if "_startup.py" not in f and f'{init}", line {first},' not in f]


def test_ctrl_c_while_starting_exits_130_quietly(tmp_path, text_file):
    """SIGINT at moments spread over the first second (imports, argument parsing, loading, training):
    always exit 130, never a traceback."""
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5):
        proc = subprocess.Popen(train_cmd(text_file, "--out", str(tmp_path / f"run{delay}"), "--steps", "100000000",
                                          "--checkpoint-every", "100000000"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not bptt_frames(err), (delay, err)                 # never a traceback through bptt's code
        # Early, the signal may land before bptt runs at all: Python's own start-up (site, runpy) dies
        # with -SIGINT or its own message (on a loaded machine that can take 0.1 s); nothing is written.
        if "Traceback" not in err and proc.returncode != -signal.SIGINT:
            assert proc.returncode == 130, (delay, proc.returncode, err)
        if delay >= 1.5:                  # surely inside bptt by then (start-up alone took 0.4 s on a loaded machine)
            assert proc.returncode == 130 and "Traceback" not in err, (delay, proc.returncode, err)


def _edit_meta(path, change):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    change(meta)
    with open(path, "wb") as f:
        np.savez(f, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))


@pytest.mark.parametrize("optimizer, lr", [("sgd", 1e6), ("adam", 1e30)])
def test_a_diverging_run_never_replaces_the_last_good_checkpoint(tmp_path, text_file, optimizer, lr):
    """The issue's two examples: SGD at lr 1e6 without clipping (the loss grows, all finite) and Adam at
    lr 1e30. A good run is checkpointed, then resumed at the huge rate (the record edited): it stops
    with one line naming the divergence, and the good checkpoint is byte-identical."""
    out = tmp_path / "run"
    first = subprocess.run(train_cmd(text_file, "--out", str(out), "--steps", "3", "--optimizer", optimizer,
                                     "--clip-mode", "none"), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr

    def huge_rate(meta):
        meta["extra"]["train_args"]["lr"] = lr
        meta["trainer"]["optimizer"]["hyper"]["lr"] = lr
        meta["trainer"]["schedule"]["base_lr"] = lr
    _edit_meta(out / "checkpoint.npz", huge_rate)
    before = (out / "checkpoint.npz").read_bytes()
    run = subprocess.run(train_cmd(text_file, "--resume", str(out), "--steps", "200"), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("bptt train: error: the loss diverged at step"), run.stderr
    assert (out / "checkpoint.npz").read_bytes() == before
    assert load_checkpoint(out).step == 3
