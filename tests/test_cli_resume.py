"""bptt train --resume as users expect: what may change (printed), what may not (named), what
survives; best.npz, --patience, sample/evaluate --best; a relative --text found from elsewhere;
the header's stopping rule and the progress display."""

import io
import json
import os
import shutil

import numpy as np
import pytest

from bptt.cli import main
from bptt.cli.train import stopping_rule
from bptt.io.checkpoint import load_checkpoint
from bptt.training.train import Progress, StepSummary, Trainer

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness.\n") * 30
SMALL = ["--hidden", "16", "--seq-len", "8", "--batch", "4", "--no-progress", "--eval-every", "5",
         "--checkpoint-every", "4", "--log-every", "1"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def metrics(run):
    return [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]


def continue_by_hand(run_dir, steps, lr):
    """The reference: the checkpoint's state, trained on by the API with Adam at ``lr``."""
    from bptt.data import TextStreams, split_ids
    from bptt.training.clip import make_clipper
    from bptt.training.optim import Adam
    from bptt.training.schedules import Constant

    ckpt = load_checkpoint(run_dir)
    args = ckpt.meta["extra"]["train_args"]
    net = ckpt.network()
    trainer = Trainer(net, Adam(net.params, lr=lr), clip=make_clipper("global-norm", 5.0, per_token=True),
                      schedule=Constant(lr))
    trainer.load_state_dict(dict(ckpt.trainer_state(), schedule=None))
    train_ids, _ = split_ids(ckpt.vocabulary().encode(TEXT), args["val_fraction"])
    trainer.fit(TextStreams(train_ids, args["batch"], args["seq_len"]), steps)
    return net.params


def test_resume_with_a_new_lr_continues_from_the_same_state(tmp_path, text_file, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "6", "--out", run] + SMALL) == 0
    saved = str(tmp_path / "at6")
    shutil.copytree(run, saved)
    capsys.readouterr()
    assert main(["train", "--resume", run, "--steps", "3", "--lr", "1e-4", "--no-progress"]) == 0
    assert "bptt train: changed on resume: lr 0.002 -> 0.0001" in capsys.readouterr().err
    lines = metrics(run)
    assert [m["lr"] for m in lines if m["step"] > 6] == pytest.approx([1e-4] * 3)
    assert [m["lr"] for m in lines if m["step"] <= 6] == pytest.approx([2e-3] * 6)
    expected = continue_by_hand(saved, 3, 1e-4)
    got = load_checkpoint(run).params
    for name in expected:
        assert np.array_equal(got[name], expected[name]), name
    # and the new lr mattered: the same 3 steps at the old lr end elsewhere
    other = continue_by_hand(saved, 3, 2e-3)
    assert not all(np.array_equal(got[n], other[n]) for n in got)
    assert load_checkpoint(run).meta["extra"]["train_args"]["lr"] == 1e-4


def test_a_new_schedule_counts_from_the_resume_step_and_survives_the_next(tmp_path, text_file, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "4", "--out", run] + SMALL) == 0
    assert main(["train", "--resume", run, "--steps", "3", "--schedule", "step", "--lr-every", "2",
                 "--lr-gamma", "0.5", "--no-progress"]) == 0
    assert "changed on resume: schedule constant -> step, lr-every 1000 -> 2" in capsys.readouterr().err
    assert main(["train", "--resume", run, "--steps", "3", "--no-progress"]) == 0      # nothing changes now
    assert "changed on resume" not in capsys.readouterr().err
    lrs = [m["lr"] for m in metrics(run) if m["step"] > 4]
    assert lrs == pytest.approx([2e-3, 2e-3, 1e-3, 1e-3, 5e-4, 5e-4])


def test_clipping_and_every_n_flags_change_and_are_kept(tmp_path, text_file, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "4", "--out", run, "--record-every", "2"] + SMALL) == 0
    assert main(["train", "--resume", run, "--steps", "4", "--no-progress"]) == 0
    records = [json.loads(line) for line in open(os.path.join(run, "diagnostics.jsonl"))]
    assert [r["step"] for r in records if r.get("kind") == "gradients"] == [2, 4, 6, 8]    # --record-every kept
    capsys.readouterr()
    assert main(["train", "--resume", run, "--steps", "4", "--clip", "0.01", "--clip-mode", "value",
                 "--eval-every", "2", "--log-every", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "changed on resume: clip-mode global-norm -> value, clip 5 -> 0.01, eval-every 5 -> 2, " \
           "log-every 1 -> 2" in err
    assert "clipping fired 4/4 updates" in err
    lines = [m for m in metrics(run) if m["step"] > 8]
    assert [m["step"] for m in lines] == [10, 12]
    assert all("val_loss" in m for m in lines)
    args = load_checkpoint(run).meta["extra"]["train_args"]
    assert (args["clip"], args["clip_mode"], args["eval_every"], args["log_every"], args["record_every"]) == \
        (0.01, "value", 2, 2, 2)


@pytest.mark.parametrize("flag, value", [("--seq-len", "16"), ("--cell", "gru"), ("--batch", "2"),
                                         ("--optimizer", "sgd"), ("--val-fraction", "0.2")])
def test_model_and_data_flags_are_refused_by_name(tmp_path, text_file, capsys, flag, value):
    run = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "2", "--out", run] + SMALL) == 0
    capsys.readouterr()
    assert main(["train", "--resume", run, "--steps", "1", flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bptt train: error: {flag} cannot change on --resume") and len(err.splitlines()) == 1


def test_best_npz_sample_and_evaluate_best(tmp_path, text_file, capsys, monkeypatch):
    import bptt.data

    losses = iter([3.0, 2.0, 2.5, 2.7, 2.9, 3.1])     # validations at steps 2, 4, ... and the final one
    monkeypatch.setattr(bptt.data, "eval_loss_per_token", lambda net, ids: next(losses))
    run = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "20", "--out", run, "--eval-every", "2", "--patience", "3",
                 "--hidden", "16", "--seq-len", "8", "--batch", "4", "--checkpoint-every", "100"]) == 0
    err = capsys.readouterr().err
    assert "step 0 -> 20 (--steps 20), or 3 validations without a lower loss (--patience), whichever comes first" \
        in err
    assert "best validation loss 2.0000 nats/char at step 4" in err and "stopped early" in err
    assert load_checkpoint(run).step == 10                  # 3 validations after step 4's: 6, 8, 10
    best = load_checkpoint(os.path.join(run, "best.npz"))
    assert best.step == 4 and best.meta["metrics"]["val_loss"] == 2.0
    monkeypatch.undo()
    assert main(["evaluate", run, "--best"]) == 0
    assert "step 4)" in capsys.readouterr().out
    assert main(["sample", run, "--best", "--length", "30", "--seed", "1"]) == 0
    from_best = capsys.readouterr().out
    assert main(["sample", os.path.join(run, "best.npz"), "--length", "30", "--seed", "1"]) == 0
    assert capsys.readouterr().out == from_best
    # the best survives a resume: only a lower loss replaces it
    monkeypatch.setattr(bptt.data, "eval_loss_per_token", lambda net, ids: 2.5)
    assert main(["train", "--resume", run, "--steps", "2", "--no-progress"]) == 0
    assert load_checkpoint(os.path.join(run, "best.npz")).step == 4


def test_best_without_a_validation_is_one_line(tmp_path, text_file, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--text", text_file, "--steps", "2", "--out", run, "--val-fraction", "0"] + SMALL) == 0
    assert not os.path.exists(os.path.join(run, "best.npz"))
    capsys.readouterr()
    assert main(["sample", run, "--best"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bptt sample: error: no best.npz in") and len(err.splitlines()) == 1


def test_patience_in_the_trainer():
    """Counts evaluations since the lowest loss, from the history (so across resumes)."""
    from bptt import Network
    from bptt.training.optim import SGD

    net = Network(3, 4, 3, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    batch = (rng.integers(0, 3, size=(5, 2)), rng.integers(0, 3, size=(5, 2)))
    losses = iter([3.0, 2.0, 2.0, 2.1, 1.0, 1.5, 1.6, 1.7, 0.5])
    trainer = Trainer(net, SGD(net.params, lr=0.01))
    trainer.fit(batch, 100, evaluate=lambda n: next(losses), eval_every=1, patience=3)
    assert trainer.step == 8 and trainer.stopped_early        # best 1.0 at step 5, then 3 without a lower one
    assert trainer.evaluations_since_best() == 3
    losses = iter([3.0, 2.0, 2.0, 2.1, 0.1])                  # an equal loss is not a lower one
    trainer = Trainer(net, SGD(net.params, lr=0.01))
    trainer.fit(batch, 100, evaluate=lambda n: next(losses), eval_every=1, patience=2)
    assert trainer.step == 4 and trainer.stopped_early
    trainer.fit(batch, 2, evaluate=lambda n: 5.0, eval_every=1)   # no patience: runs its steps
    assert trainer.step == 6 and not trainer.stopped_early
    with pytest.raises(ValueError, match="patience"):
        trainer.fit(batch, 1, patience=0)


def test_relative_text_is_found_from_another_directory(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "t.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.chdir(data)
    run = str(tmp_path / "run")
    assert main(["train", "--text", "t.txt", "--steps", "3", "--out", run] + SMALL) == 0
    assert load_checkpoint(run).meta["extra"]["train_args"]["text"] == str(data / "t.txt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", run]) == 0
    assert main(["train", "--resume", run, "--steps", "1", "--no-progress"]) == 0
    assert load_checkpoint(run).step == 4


class Args:
    def __init__(self, epochs=None, time=None):
        self.epochs, self.time = epochs, time


@pytest.mark.parametrize("step, steps, args, patience, expected", [
    (0, 200, Args(), 0, "200 (--steps 200)"),
    (100, 50, Args(), 0, "150 (--steps 50)"),
    (0, 1234, Args(epochs=1.5), 0, "1234 (--epochs 1.5)"),
    (0, None, Args(time=60), 0, "until 60 s (--time 60)"),
    (0, 200, Args(time=60), 0, "200 (--steps 200), or 60 s (--time 60), whichever comes first"),
])
def test_the_header_names_the_stopping_rule(step, steps, args, patience, expected):
    assert stopping_rule(step, steps, args, {"patience": patience}) == expected


def summary(step, val=None):
    s = StepSummary(step, 100.0, 50.0, 2.0, 1e-3, 1.0, 0, 0.01)
    if val is not None:
        s.extra["val_loss"] = val
    return s


def test_progress_lines_keep_the_validation_loss_and_the_time_budget():
    stream = io.StringIO()
    progress = Progress(None, every=1, stream=stream, use_tqdm=False, time_limit=60.0)
    progress.update(summary(1))
    progress.update(summary(2, val=1.5))
    progress.update(summary(3))
    lines = stream.getvalue().splitlines()
    assert "val" not in lines[0]
    assert "val 1.5000 (step 2)" in lines[1] and "val 1.5000 (step 2)" in lines[2]
    assert all("elapsed 0:00" in line and ("left 1:00" in line or "left 0:59" in line) for line in lines)


def test_tqdm_bar_counts_the_time_budget_and_shows_the_validation():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    progress = Progress(None, every=1, stream=stream, use_tqdm=True, time_limit=60.0)
    progress.update(summary(1, val=2.25))
    progress.update(summary(2))
    progress.close()
    out = stream.getvalue()
    assert "/60 s" in out and "val 2.2500 (step 1)" in out and ("left 0:59" in out or "left 1:00" in out)
    stream = io.StringIO()
    progress = Progress(10, every=1, stream=stream, use_tqdm=True, time_limit=3600.0)
    progress.update(summary(1))
    progress.close()
    assert "1/10 steps" in stream.getvalue()
