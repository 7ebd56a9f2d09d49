"""`bptt train | sample | evaluate` end to end on a small text: the contract, resume
bit-identity, and bad input -> one clear line and a non-zero exit, no traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bptt.io.checkpoint import load_checkpoint
from bptt.cli import main

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness.\n") * 30
SMALL = ["--hidden", "16", "--seq-len", "8", "--batch", "4", "--no-progress", "--eval-every", "5",
         "--checkpoint-every", "4", "--log-every", "1"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def params(run_dir):
    return load_checkpoint(run_dir).params


def test_train_sample_evaluate_end_to_end(tmp_path, text_file, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "30", "--out", out, "--lr", "0.01"] + SMALL) == 0
    err = capsys.readouterr().err
    assert "validation loss" in err
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [line["step"] for line in lines] == list(range(1, 31))
    assert lines[-1]["loss_per_token"] < lines[0]["loss_per_token"] - 0.5        # it learns
    assert "val_loss" in lines[4] and "clip_fired" in lines[0] and lines[0]["tokens_per_s"] > 0
    ckpt = load_checkpoint(out)
    assert ckpt.step == 30 and ckpt.config["hidden_size"] == 16 and ckpt.config["dtype"] == "float32"

    assert main(["sample", out, "--length", "80", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", out, "--length", "80", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first and len(first) == 81 and set(first) <= set(TEXT)
    assert main(["sample", out, "--length", "20", "--prime", "It was", "--greedy"]) == 0
    assert capsys.readouterr().out.startswith("It was")

    assert main(["evaluate", out]) == 0
    report = capsys.readouterr().out
    val = float(report.split()[0])
    assert val == pytest.approx(ckpt.meta["metrics"]["val_loss"], abs=6e-5)     # printed with 4 decimals
    assert "nats/char" in report and "bits/char" in report


@pytest.mark.parametrize("extra", [
    [],
    ["--cell", "lstm", "--layers", "2", "--truncation", "tbptt", "--k1", "3", "--k2", "6",
     "--schedule", "halve-on-rise", "--optimizer", "rmsprop", "--dropout", "0.2"],
    ["--cell", "gru", "--recurrent-dropout", "0.3", "--zoneout", "0.15"],     # their masks repeat on resume too
    ["--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--lr", "0.05", "--clip-mode", "value",
     "--clip", "0.5", "--truncation", "window", "--k", "3", "--warmup", "5", "--dtype", "float64"],
])
def test_resume_gives_bit_identical_parameters(tmp_path, text_file, extra, capsys):
    one = str(tmp_path / "one")
    two = str(tmp_path / "two")
    n = 9                                                  # not a multiple of --checkpoint-every or --eval-every
    assert main(["train", "--text", text_file, "--steps", str(2 * n), "--out", one] + SMALL + extra) == 0
    assert main(["train", "--text", text_file, "--steps", str(n), "--out", two] + SMALL + extra) == 0
    assert main(["train", "--resume", two, "--steps", str(n), "--no-progress"]) == 0
    a, b = params(one), params(two)
    assert load_checkpoint(two).step == 2 * n
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    capsys.readouterr()


def run_cli(*argv):
    """Through a real process: exit code and stderr (no traceback allowed)."""
    proc = subprocess.run([sys.executable, "-m", "bptt", *argv], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def one_line_error(code, err, *needles):
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_files_through_a_real_process(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9\n".encode("latin-1"))
    one_line_error(*run_cli("train", "--text", str(latin), "--steps", "1", "--out", str(tmp_path / "o")),
                   "bptt train: error:", "not UTF-8")
    one_line_error(*run_cli("sample", str(tmp_path / "nothing")), "bptt sample: error:", "no checkpoint")


@pytest.mark.parametrize("argv, needle", [
    (["train", "--text", "{missing}", "--steps", "1"], "missing.txt"),
    (["train", "--text", "{empty}", "--steps", "1"], "is empty"),
    (["train", "--text", "{dir}", "--steps", "1"], "is a directory"),
    (["train", "--text", "{text}", "--steps", "1", "--hidden", "0"], "--hidden must be >= 1, got 0"),
    (["train", "--text", "{text}", "--steps", "-2"], "--steps must be >= 0, got -2"),
    (["train", "--text", "{text}", "--steps", "1", "--lr", "0"], "--lr must be > 0"),
    (["train", "--text", "{text}", "--steps", "1", "--truncation", "tbptt", "--k1", "5", "--k2", "3"],
     "--k2 must be >= --k1"),
    (["train", "--text", "{text}", "--steps", "1", "--truncation", "window"], "needs --k"),
    (["train", "--text", "{text}", "--steps", "1", "--epochs", "1"], "not both"),
    (["train", "--text", "{text}"], "say how long to train"),
    (["train", "--text", "{text}", "--steps", "1", "--batch", "1000"], "too short"),
    (["train", "--text", "{text}", "--steps", "1", "--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
    (["train", "--resume", "{run}", "--steps", "1", "--hidden", "32"], "--hidden cannot change on --resume"),
    (["train", "--text", "{text}", "--steps", "1", "--out", "{run}"], "already holds a run"),
    (["train", "--resume", "{corrupt}", "--steps", "1"], "corrupt"),
    (["sample", "{run}", "--prime", "It was \u2603"], "--prime: text has 1 character not in the model's vocabulary"),
    (["sample", "{run}", "--length", "0"], "--length must be >= 1"),
    (["sample", "{corrupt}"], "corrupt"),
    (["sample", "{foreign}"], "not a bptt checkpoint"),
    (["evaluate", "{run}", "--text", "{other}"], "not in the model's vocabulary"),
])
def test_bad_input_prints_one_line_and_exits_non_zero(tmp_path, text_file, capsys, argv, needle):
    run = tmp_path / "run"
    assert main(["train", "--text", text_file, "--steps", "2", "--out", str(run)] + SMALL) == 0
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "other.txt").write_text("zzz QQQ", encoding="utf-8")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    raw = (run / "checkpoint.npz").read_bytes()
    (corrupt / "checkpoint.npz").write_bytes(raw[:len(raw) // 2])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    names = {"missing": tmp_path / "missing.txt", "empty": tmp_path / "empty.txt", "dir": tmp_path,
             "text": text_file, "run": run, "corrupt": corrupt, "foreign": foreign, "other": tmp_path / "other.txt"}
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in argv]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    one_line_error(code, err, f"bptt {argv[0]}: error:", needle)


def test_help_on_every_command():
    for command in ("train", "sample", "evaluate", "demo"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
