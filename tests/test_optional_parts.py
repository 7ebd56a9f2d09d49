"""Optional parts missing: ``bptt diagnose`` and ``bptt experiment`` without matplotlib say so in one
line naming the extra that brings it, before any work, and leave nothing on disk; ``diagnose`` on a
run whose text is not at hand asks for --text; a failed ``diagnose`` removes the folder it made."""

import os
import subprocess
import sys
import tomllib

import pytest

import bptt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# matplotlib made unimportable, as on a machine without it: the import system finds None in sys.modules
NO_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; from bptt.cli import main; "
                 "sys.exit(main(sys.argv[1:]))")


def _run_without_matplotlib(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", NO_MATPLOTLIB, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, dirs, files in os.walk(path) for f in dirs + files)


def test_the_named_extra_exists_and_brings_matplotlib():
    from bptt.diagnostics.plots import EXTRA

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert any(dep.startswith("matplotlib") for dep in extras[EXTRA])


@pytest.mark.parametrize("command", [
    ["diagnose", "run"],
    ["experiment", "adding", "--quick", "--out", "exp"],
    ["experiment", "vanishing", "--quick", "--out", "van"],
])
def test_without_matplotlib_one_line_and_nothing_created(tmp_path, command):
    from bptt.io.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "run", bptt.Network(3, 4, 2, seed=0))
    before = _tree(tmp_path)
    done = _run_without_matplotlib(command, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr                                   # no traceback, no progress lines
    assert lines[0].startswith(f"bptt {command[0]}: error: ") and "need matplotlib" in lines[0]
    assert 'pip install matplotlib' in lines[0] and 'pip install -e ".[plot]"' in lines[0]
    assert _tree(tmp_path) == before                                      # no diagnose/, exp/, van/ folder


def _text_run(tmp_path, text_path):
    from bptt.cli import main

    assert main(["train", "--text", str(text_path), "--steps", "2", "--hidden", "6", "--seq-len", "8", "--batch", "2",
                 "--out", str(tmp_path / "run"), "--no-progress", "--eval-every", "0"]) == 0


def test_diagnose_asks_for_text_when_the_runs_text_is_gone(tmp_path, capsys):
    from bptt.cli import main

    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    _text_run(tmp_path, text)
    moved = tmp_path / "elsewhere.txt"
    os.replace(text, moved)
    capsys.readouterr()
    assert main(["diagnose", str(tmp_path / "run"), "--seq-len", "6", "--batch", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(text) in err and "pass it with --text PATH" in err
    assert not os.path.exists(tmp_path / "run" / "diagnose")
    assert main(["diagnose", str(tmp_path / "run"), "--seq-len", "6", "--batch", "2", "--text", str(moved)]) == 0
    assert os.path.isfile(tmp_path / "run" / "diagnose" / "report.html")


def test_diagnose_of_an_api_checkpoint_with_a_vocabulary_asks_for_text(tmp_path, capsys):
    from bptt.cli import main
    from bptt.data import Vocabulary
    from bptt.io.checkpoint import save_checkpoint

    vocab = Vocabulary.build("abcab")
    save_checkpoint(tmp_path / "run", bptt.Network(len(vocab), 4, len(vocab), seed=0), vocab=vocab)
    assert main(["diagnose", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "does not record the text it was trained on; pass it with --text PATH" in err
    assert not os.path.exists(tmp_path / "run" / "diagnose")


def test_a_failed_diagnose_removes_the_folders_it_made(tmp_path, monkeypatch, capsys):
    from bptt.cli import main
    from bptt.diagnostics import plots
    from bptt.io.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "run", bptt.Network(3, 4, 2, loss="mse", seed=0))
    calls = []

    def fail(*args, **kwargs):                       # the second figure fails, after the first was written
        calls.append(args)
        raise ValueError("injected failure while plotting")

    monkeypatch.setattr(plots, "lag_profiles", fail)
    out = tmp_path / "a" / "b" / "diag"
    assert main(["diagnose", str(tmp_path / "run"), "--seq-len", "5", "--batch", "2", "--out", str(out)]) == 2
    assert "injected failure" in capsys.readouterr().err and calls
    assert not os.path.exists(tmp_path / "a")                              # every folder it created is gone
    existing = tmp_path / "keep"
    existing.mkdir()
    (existing / "mine.txt").write_text("x")
    assert main(["diagnose", str(tmp_path / "run"), "--seq-len", "5", "--batch", "2", "--out", str(existing)]) == 2
    assert _tree(existing) == ["mine.txt"]                                 # an existing folder is left as it was


def test_the_experiment_api_checks_matplotlib_before_training(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from bptt.experiments.tasks import run_experiment\n"
            "from bptt.experiments.vanishing import run_vanishing\n"
            "for call in (lambda: run_experiment('adding', cells=['rnn'], seq_lens=[5], seeds=[0], out_dir='e',\n"
            "                                    steps=1, progress=lambda *a: print('trained')),\n"
            "             lambda: run_vanishing('v', quick=True, progress=lambda line: print('trained'))):\n"
            "    try:\n"
            "        call()\n"
            "    except ImportError as error:\n"
            "        print('refused:', error)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "trained" not in done.stdout and done.stdout.count("refused:") == 2
    assert os.listdir(tmp_path) == []
