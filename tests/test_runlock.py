"""Two runs, one directory: the second is refused (bptt.io.runlock), a dead run's lock is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from bptt.io.runlock import LOCK_NAME, RunLock, RunLocked


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid                                   # reaped: no process has it now (until reused)


def write_lock(directory, **fields):
    directory.mkdir(exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "start": None, "command": "bptt train",
              "token": "someone-else"}
    record.update(fields)
    (directory / LOCK_NAME).write_text(json.dumps(record))
    return record


def test_second_lock_on_the_same_directory_is_refused_in_one_line(tmp_path):
    with RunLock(tmp_path / "run") as first:
        record = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(RunLocked, match=rf"in use by bptt train \(process {os.getpid()} on this host\)") as info:
            RunLock(tmp_path / "run").acquire()
        assert "\n" not in str(info.value)
        assert first.held
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with RunLock(tmp_path / "run"):                   # free again
        pass


def test_a_refused_or_released_lock_leaves_no_directory_it_created(tmp_path):
    with RunLock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()            # created here, still empty: removed
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "checkpoint.npz").write_bytes(b"x")
    assert (tmp_path / "kept" / "checkpoint.npz").exists() and not (tmp_path / "kept" / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    pid = dead_pid()
    write_lock(tmp_path / "run", pid=pid)
    with pytest.warns(RuntimeWarning, match=rf"stale lock .* process {pid} .* no longer running"):
        lock = RunLock(tmp_path / "run").acquire()
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["token"] == lock.token
    lock.release()


def test_a_reused_pid_does_not_keep_a_stale_lock_alive(tmp_path):
    # our own (live) PID, but recorded with another start time: the process that wrote it is gone
    write_lock(tmp_path / "run", pid=os.getpid(), start="1")
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc: start times unknown")   # only on systems without procfs
    with pytest.warns(RuntimeWarning, match="stale lock"):
        RunLock(tmp_path / "run").acquire().release()


@pytest.mark.parametrize("fields, needle", [
    ({}, "in use by bptt train"),                                      # a live process on this host (us)
    ({"host": "elsewhere.example"}, "on elsewhere.example.*remove"),   # cannot be checked from here
])
def test_live_or_foreign_locks_are_refused(tmp_path, fields, needle):
    write_lock(tmp_path / "run", **fields)
    with pytest.raises(RunLocked, match=needle):
        RunLock(tmp_path / "run").acquire()
    assert (tmp_path / "run" / LOCK_NAME).exists()    # someone else's lock is never removed


def test_an_unreadable_lock_is_refused_not_guessed(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).write_bytes(b"\xff\x00garbage")
    with pytest.raises(RunLocked, match="unreadable.*rm "):
        RunLock(tmp_path / "run").acquire()


def test_release_never_removes_a_lock_taken_over_by_another_run(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    write_lock(tmp_path / "run", token="the-new-owner")            # e.g. after our lock was judged stale
    lock.release()
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["token"] == "the-new-owner"


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunLocked, match="is a file, not a directory"):
        RunLock(tmp_path / "file").acquire()


def test_racing_lockers_one_wins(tmp_path):
    """Eight processes try to lock the same directory at once: exactly one succeeds."""
    code = ("import os, sys, time; from bptt.io.runlock import RunLock, RunLocked\n"
            "open(sys.argv[2] + '.' + str(os.getpid()), 'w').close()\n"      # ready
            "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"     # wait for the start line
            "try:\n    lock = RunLock(sys.argv[1]).acquire()\nexcept RunLocked:\n    print('refused'); sys.exit(0)\n"
            "print('won', flush=True); time.sleep(1.0); lock.release()\n")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run"), str(go)], stdout=subprocess.PIPE,
                              text=True) for _ in range(8)]
    deadline = time.monotonic() + 60
    while len([f for f in os.listdir(tmp_path) if f.startswith("go.")]) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.write_text("")
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outputs) == ["refused"] * 7 + ["won"], outputs


def test_bptt_train_refuses_a_directory_in_use_and_continues_after_the_holder_stops(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a small text for a small model. " * 60)
    out = tmp_path / "run"
    base = [sys.executable, "-m", "bptt", "train", "--text", str(text), "--hidden", "8", "--seq-len", "8",
            "--batch", "2", "--no-progress"]
    first = subprocess.Popen(base + ["--out", str(out), "--steps", "1000000", "--checkpoint-every", "5"],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists():
            assert time.monotonic() < deadline and first.poll() is None, "the first run never checkpointed"
            time.sleep(0.05)
        second = subprocess.run(base + ["--resume", str(out), "--steps", "2"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by bptt train (process {first.pid} on this host)" in lines[0], lines
        overwrite = subprocess.run(base + ["--out", str(out), "--steps", "2", "--overwrite"], capture_output=True,
                                   text=True, timeout=60)
        assert overwrite.returncode == 2 and "in use" in overwrite.stderr
        assert first.poll() is None                                 # the holder never noticed
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert not (out / LOCK_NAME).exists()
    again = subprocess.run(base + ["--resume", str(out), "--steps", "2"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
