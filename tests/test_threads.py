"""bptt.set_threads and the default thread choice (bptt.threads), and --threads on the CLI."""

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

import bptt
from bptt import threads
from bptt.cli import main


def blas_threads():
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    for name in threads.ENV_VARS:                  # the default's rule 1 must not hide what we test
        monkeypatch.delenv(name, raising=False)
    before = max(blas_threads() or {1})
    yield
    threadpoolctl.threadpool_limits(limits=before, user_api="blas")


def test_set_threads_changes_what_threadpoolctl_reports():
    assert bptt.set_threads(1) == 1
    assert blas_threads() == {1}
    assert threads.current_threads() == 1
    if threads.usable_cores() >= 2:
        assert bptt.set_threads(2) == 2
        assert blas_threads() == {2}
    assert threads.describe().startswith("BLAS threads")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_threads_refuses_bad_counts(bad):
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        bptt.set_threads(bad)


def test_default_is_one_thread_for_small_steps(monkeypatch):
    monkeypatch.setattr(threads, "idle_cores", lambda window=0.1: 8.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.default_threads("rnn", 64, 1)[0] == 1             # B = 1: nothing to split
    assert threads.default_threads("rnn", 64, 32)[0] == 1            # 32 * 64^2 = 131k < 2^18
    assert threads.default_threads("rnn", 128, 32)[0] == 8           # the CLI's default model: 524k, every idle core
    assert bptt.set_threads(None, cell="rnn", hidden=64, batch=32) == 1
    assert blas_threads() == {1}


def test_default_uses_idle_cores_for_large_steps_and_never_more(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda window=0.1: 1.9)
    assert threads.default_threads("rnn", 512, 64) == (2, "auto: large per-step GEMMs, 2 idle cores")
    monkeypatch.setattr(threads, "idle_cores", lambda window=0.1: 0.9)     # a job holds one of two cores
    assert threads.default_threads("rnn", 512, 64)[0] == 1
    monkeypatch.setattr(threads, "idle_cores", lambda window=0.1: 0.0)     # busy: still one thread
    assert threads.default_threads("lstm", 1024, 64)[0] == 1
    monkeypatch.setattr(threads, "idle_cores", lambda window=0.1: 16.0)    # never beyond the affinity mask
    assert threads.default_threads("lstm", 1024, 64)[0] == 2


def test_environment_setting_is_respected(monkeypatch):
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "default_threads", lambda *a, **k: pytest.fail("the environment decides"))
    assert bptt.set_threads(None, cell="rnn", hidden=4096, batch=512) == 1
    assert threads.describe() == "BLAS threads 1 (from OMP_NUM_THREADS)"


def test_idle_cores_is_a_share_of_the_cores():
    idle = threads.idle_cores(window=0.05)
    assert 0.0 <= idle <= threads.usable_cores() + 1e-9


def test_train_header_names_the_threads(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh " * 200, encoding="utf-8")
    common = ["train", "--text", str(text), "--steps", "2", "--hidden", "8", "--seq-len", "8", "--batch", "2",
              "--eval-every", "0"]
    assert main(common + ["--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "BLAS threads 1 (set)" in err and blas_threads() == {1}
    assert main(common + ["--out", str(tmp_path / "b")]) == 0
    assert "BLAS threads 1 (auto: small per-step GEMMs)" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "c"), "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "bptt train: error: --threads must be >= 1, got 0"


@pytest.mark.parametrize("command", [["sample", "{run}", "--length", "5"], ["evaluate", "{run}"]])
def test_threads_flag_on_other_commands(tmp_path, capsys, command):
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh " * 200, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--text", str(text), "--steps", "1", "--hidden", "8", "--seq-len", "8", "--batch", "2",
                 "--out", str(run), "--no-progress"]) == 0
    threadpoolctl.threadpool_limits(limits=2, user_api="blas")
    argv = [a.format(run=run) for a in command]
    assert main(argv + ["--threads", "1"]) == 0
    assert blas_threads() == {1}
    assert main(argv + ["--threads", "-3"]) == 2
    assert "--threads must be >= 1, got -3" in capsys.readouterr().err
