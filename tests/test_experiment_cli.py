"""``bptt experiment``: a tiny run end to end (JSON, table, figure), repeatability, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bptt.cli import main
from bptt.experiments.tasks import run_experiment, train_one


def test_quick_run_writes_json_table_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "adding"
    code = main(["experiment", "adding", "--cell", "rnn,irnn", "--T", "12,20", "--seeds", "0,1",
                 "--quick", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "adding" and result["metric"] == "mse"
    assert len(result["runs"]) == 2 * 2 * 2
    assert {(r["cell"], r["T"]) for r in result["summary"]} == {("rnn", 12), ("irnn", 12), ("rnn", 20), ("irnn", 20)}
    for run in result["runs"]:
        curve = run["curve"]
        assert curve["step"][0] == 0 and curve["step"][-1] == result["settings"]["steps"]
        assert len(curve["mse"]) == len(curve["step"]) and all(np.isfinite(curve["mse"]))
        assert run["final"]["mse"] == curve["mse"][-1]
    assert result["baseline"]["12"]["mse"] == pytest.approx(1 / 6)
    assert "--out " + str(out) in result["command"]
    table = (out / "results.md").read_text()
    assert "| irnn | 20 |" in table and "trivial baseline" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "| rnn | 12 |" in printed


def test_every_task_and_gated_cell_runs(tmp_path):
    for task in ("adding-hs", "temporal-order", "copying", "latch", "two-sequence"):
        result = run_experiment(task, cells=["lstm", "gru"], seq_lens=[12], seeds=[0], out_dir=None,
                                steps=3, hidden=4, batch=4, eval_batch=8, eval_every=3)
        assert [row["cell"] for row in result["summary"]] == ["lstm", "gru"]
        assert all(np.isfinite(row["mean"]) for row in result["summary"])


def test_runs_repeat_given_the_seed():
    kwargs = dict(steps=6, hidden=5, batch=4, lr=1e-2, eval_every=3, eval_batch=16, dtype="float64")
    a = train_one("copying", "rnn", 6, 3, **kwargs)
    b = train_one("copying", "rnn", 6, 3, **kwargs)
    c = train_one("copying", "rnn", 6, 4, **kwargs)
    assert a["curve"]["cross_entropy"] == b["curve"]["cross_entropy"]
    assert a["curve"]["cross_entropy"] != c["curve"]["cross_entropy"]


def test_training_lowers_the_loss_on_an_easy_case():
    """Latch at T=5 is learnable in a few hundred tiny steps: the run must move off chance."""
    run = train_one("latch", "rnn", 5, 0, steps=150, hidden=4, batch=16, lr=3e-2, eval_every=50,
                    eval_batch=200, dtype="float64")
    assert run["curve"]["mse"][-1] < 0.5 * run["curve"]["mse"][0]
    assert run["final"]["accuracy"] > 0.9


def test_lstm_forget3_variant_sets_the_forget_bias():
    from bptt.experiments.tasks import make_network
    from bptt.tasks import get_task
    task = get_task("latch")
    assert make_network(task, "lstm-forget3", 4, seed=0).config["forget_bias"] == 3.0
    assert make_network(get_task("copying"), "lstm", 4, seed=0).config["forget_bias"] == 1.0
    # on the latch (and adding-hs) the "lstm" variant starts with the forget gate open: TASK_VARIANTS
    assert make_network(task, "lstm", 4, seed=0).config["forget_bias"] == 5.0


def test_irnn_starts_from_identity_and_relu():
    from bptt.experiments.tasks import make_network
    from bptt.tasks import get_task
    net = make_network(get_task("adding"), "irnn", 6, seed=0, dtype="float64")
    np.testing.assert_array_equal(net.params["layers.0.W"], np.eye(6))
    assert net.nonlinearity == "relu"


@pytest.mark.parametrize("argv, fragment", [
    (["experiment", "adding", "--cell", "transformer", "--out", "X"], "cell must be one of"),
    (["experiment", "adding", "--steps", "0", "--out", "X"], "--steps must be >= 1"),
    (["experiment", "adding", "--lr", "-1", "--out", "X"], "--lr must be > 0"),
    (["experiment", "adding", "--clip", "-2", "--out", "X"], "--clip must be >= 0"),
])
def test_bad_flags_print_one_line_and_exit_2(argv, fragment, tmp_path, capsys):
    argv = [a if a != "X" else str(tmp_path / "o") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bptt experiment: error:") and fragment in err[0]


def test_bad_T_list_and_unknown_task_exit_nonzero(tmp_path):
    for argv in (["--T", "1,x"], ["--seeds", "-1"]):
        proc = subprocess.run([sys.executable, "-m", "bptt", "experiment", "adding", *argv, "--out",
                               str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bptt", "experiment", "sorting", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_vanishing_dispatch_is_clear_either_way(tmp_path, capsys, monkeypatch):
    """With bptt.experiments.vanishing present the call reaches run_vanishing with the documented
    arguments; absent, one clear error line."""
    import importlib
    calls = {}
    try:
        vanishing = importlib.import_module("bptt.experiments.vanishing")
    except ImportError:
        assert main(["experiment", "vanishing", "--quick", "--out", str(tmp_path)]) == 2
        assert "vanishing experiment is not available" in capsys.readouterr().err
        return
    monkeypatch.setattr(vanishing, "run_vanishing", lambda **kw: calls.update(kw))
    assert main(["experiment", "vanishing", "--quick", "--T", "30", "--seeds", "0,1", "--steps", "7",
                 "--out", str(tmp_path)]) == 0
    assert calls == {"out_dir": str(tmp_path), "seeds": [0, 1], "quick": True, "steps": 7, "seq_len": 30}


def test_pascanu_variants_use_sgd_clipping_and_omega():
    kwargs = dict(steps=4, hidden=5, batch=4, lr=1e-3, eval_every=2, eval_batch=16, dtype="float64",
                  clip=0.5, sgd_lr=0.05, omega=3.0)
    plain = train_one("temporal-order", "rnn-sgd", 12, 0, **kwargs)
    clipped = train_one("temporal-order", "rnn-sgd-clip", 12, 0, **kwargs)
    regular = train_one("temporal-order", "rnn-sgd-clip-omega", 12, 0, **kwargs)
    assert (plain["optimizer"], plain["lr"], plain["clip"], plain["omega"]) == ("sgd", 0.05, None, 0.0)
    assert (clipped["optimizer"], clipped["clip"], clipped["omega"]) == ("sgd", 0.5, 0.0)
    assert (regular["optimizer"], regular["clip"], regular["omega"]) == ("sgd", 0.5, 3.0)
    # the regulariser changes the updates, so the held-out curve moves differently
    assert regular["curve"]["cross_entropy"][-1] != clipped["curve"]["cross_entropy"][-1]
    # clipping statistics per evaluation interval: none without clipping
    assert plain["curve"]["clipped_fraction"][1:] == [0.0, 0.0]
    assert all(n > 0 for n in plain["curve"]["max_grad_norm"][1:])


def test_clipping_statistics_count_clipped_steps():
    run = train_one("adding", "rnn", 10, 0, steps=4, hidden=4, batch=4, lr=1e-3, eval_every=2, eval_batch=8,
                    clip=1e-6)                                   # every step's norm exceeds 1e-6
    assert run["curve"]["clipped_fraction"] == [None, 1.0, 1.0]
    assert run["curve"]["max_grad_norm"][0] is None and run["curve"]["max_grad_norm"][1] > 1e-6


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_diverging_run_is_recorded_not_raised():
    run = train_one("adding", "rnn-sgd", 10, 0, steps=50, hidden=4, batch=4, lr=1e-3, eval_every=10,
                    eval_batch=8, sgd_lr=1e6)               # plain SGD, no clipping, absurd step size
    assert run["diverged_at"] is not None and run["diverged_at"] <= 50
    assert not run["solved"] and run["curve"]["step"][-1] == run["diverged_at"] - 1


def test_outputs_are_readable_by_others(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the results must end up with the umask's mode."""
    import os
    pytest.importorskip("matplotlib")
    run_experiment("latch", cells=["rnn"], seq_lens=[5], seeds=[0], out_dir=str(tmp_path), steps=2, hidden=2,
                   batch=2, eval_batch=4, eval_every=1)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("result.json", "results.md", "curves.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
