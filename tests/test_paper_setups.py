"""The papers' setups (issue 16): Pascanu et al. 2013's sparse / small-Gaussian init and their
NaN/inf clipping fallback, the LSTM input-gate bias, the experiment variants that use them, the
stopping rule (solved by the paper's criterion, updates to solve) and --budget."""

import json

import numpy as np
import pytest

import bptt
from bptt.cli import main
from bptt.experiments.tasks import PASCANU_NET, VARIANTS, resolve, train_one
from bptt.init import sparse, spectral_radius
from bptt.tasks import get_task
from bptt.training.clip import clip_by_global_norm, clip_with_fallback, global_norm, make_fallback_clipper


# ------------------------------------------------------------------ initialisations
@pytest.mark.parametrize("cell,blocks", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_sparse_init_has_k_nonzero_weights_per_unit_at_the_radius(cell, blocks):
    H = 40
    net = bptt.Network(6, H, 4, cell=cell, recurrent_init="sparse", spectral_radius=0.95, seed=3)
    W = net.params["layers.0.W"]
    assert net.config["sparsity"] == 15                       # Pascanu's default
    for k in range(blocks):
        block = W[k * H:(k + 1) * H]
        np.testing.assert_array_equal(np.count_nonzero(block, axis=1), np.full(H, 15))
        assert spectral_radius(block) == pytest.approx(0.95, rel=1e-9)
    other = bptt.Network(6, H, 4, cell=cell, recurrent_init="sparse", sparsity=3, seed=3)
    np.testing.assert_array_equal(np.count_nonzero(other.params["layers.0.W"], axis=1), np.full(blocks * H, 3))


def test_sparse_entries_are_normal_with_std_001():
    rng = np.random.default_rng(0)
    W = sparse(rng, (400, 400), np.float64, sparsity=15)       # 6,000 non-zero draws
    values = W[W != 0]
    assert values.size == 400 * 15
    assert values.std() == pytest.approx(0.01, rel=0.05)       # 5% >> the ~1% sampling error
    assert abs(values.mean()) < 0.01 * 4 / np.sqrt(values.size)
    # positions: every column is used about equally (no bias towards the first units)
    assert np.count_nonzero(W, axis=0).max() < 40             # mean 15 per column


def test_sparse_options_are_checked():
    with pytest.raises(ValueError, match=r"sparsity must be <= hidden_size \(8\), got 15"):
        bptt.Network(2, 8, 1, recurrent_init="sparse", sparsity=15)
    with pytest.raises(ValueError, match=r"sparsity= applies to recurrent_init='sparse' only"):
        bptt.Network(2, 8, 1, sparsity=3)
    with pytest.raises(ValueError, match=r"sparsity must be"):
        bptt.Network(2, 8, 1, recurrent_init="sparse", sparsity=0)
    with pytest.raises(ValueError, match=r"input_init must be one of .*got 'gauss'"):
        bptt.Network(2, 8, 1, input_init="gauss")
    with pytest.raises(ValueError, match=r"input_bias=-3.0 needs cell='lstm'"):
        bptt.Network(2, 8, 1, cell="gru", input_bias=-3)
    with pytest.raises(ValueError, match=r"input_bias must be a finite number, got nan"):
        bptt.Network(2, 8, 1, cell="lstm", input_bias=float("nan"))


def test_small_gaussian_input_and_readout_with_zero_biases():
    H, I, O = 200, 30, 20
    net = bptt.Network(I, H, O, input_init="normal", readout_init="normal", seed=1)
    U, V = net.params["layers.0.U"], net.params["V"]
    assert U.std() == pytest.approx(0.01, rel=0.05) and V.std() == pytest.approx(0.01, rel=0.05)
    np.testing.assert_array_equal(net.params["layers.0.b"], 0.0)
    np.testing.assert_array_equal(net.params["c"], 0.0)
    plain = bptt.Network(I, H, O, seed=1)                     # the defaults: U(-1/sqrt(H), 1/sqrt(H))
    assert plain.params["layers.0.U"].std() == pytest.approx(1 / np.sqrt(3 * H), rel=0.05)
    np.testing.assert_array_equal(net.params["layers.0.W"], plain.params["layers.0.W"])   # W untouched


@pytest.mark.parametrize("cell,variant", [("gru", "torch"), ("gru", "cho"), ("rnn", "torch")])
def test_normal_input_init_zeroes_every_bias(cell, variant):
    net = bptt.Network(3, 6, 2, cell=cell, gru_variant=variant, num_layers=2, bidirectional=True,
                       input_init="normal", seed=3)
    biases = [n for n in net.params if n.rsplit(".", 1)[-1].startswith("b")]
    assert len(biases) >= 4 and (cell == "rnn" or variant == "cho" or any("b_hn" in n for n in biases))
    for name in biases:
        np.testing.assert_array_equal(net.params[name], 0.0)


def test_lstm_gate_biases_with_normal_init():
    H = 6
    net = bptt.Network(3, H, 1, cell="lstm", input_init="normal", forget_bias=5.0, input_bias=-3.0, seed=2)
    b = net.params["layers.0.b"]                              # [i, f, g, o]
    np.testing.assert_array_equal(b[:H], -3.0)
    np.testing.assert_array_equal(b[H:2 * H], 5.0)
    np.testing.assert_array_equal(b[2 * H:], 0.0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_input_bias_adds_to_the_input_gate_only(bidirectional):
    H = 5
    base = bptt.Network(3, H, 2, cell="lstm", num_layers=2, bidirectional=bidirectional, seed=4)
    shifted = bptt.Network(3, H, 2, cell="lstm", num_layers=2, bidirectional=bidirectional, input_bias=-3.0, seed=4)
    names = [n for n in base.params if n.rsplit(".", 1)[-1] in ("b", "b_reverse")]
    assert len(names) == (4 if bidirectional else 2)
    for name in base.params:
        diff = shifted.params[name] - base.params[name]
        if name in names:
            np.testing.assert_allclose(diff[:H], -3.0, atol=1e-12)
            np.testing.assert_array_equal(diff[H:], 0.0)
        else:
            np.testing.assert_array_equal(diff, 0.0)


def test_paper_options_survive_the_config():
    net = bptt.Network(6, 20, 4, cell="lstm", recurrent_init="sparse", sparsity=4, spectral_radius=0.9,
                       input_init="normal", readout_init="normal", input_bias=-2.0, forget_bias=4.0, seed=5)
    again = bptt.Network.from_config(json.loads(json.dumps(net.config)))
    for name in net.params:
        np.testing.assert_array_equal(again.params[name], net.params[name])
    assert {k: net.config[k] for k in ("sparsity", "input_init", "readout_init", "input_bias")} == \
        {"sparsity": 4, "input_init": "normal", "readout_init": "normal", "input_bias": -2.0}


# ------------------------------------------------------------------ clipping fallback
def _grads_and_params(rng):
    params = {"layers.0.U": rng.standard_normal((4, 3)), "layers.0.W": rng.standard_normal((4, 4)),
              "layers.0.b": rng.standard_normal(4), "V": rng.standard_normal((2, 4))}
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    return grads, params


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e11])
def test_fallback_replaces_dW_by_002_W_and_zeroes_the_rest(bad):
    rng = np.random.default_rng(7)
    grads, params = _grads_and_params(rng)
    grads["layers.0.b"][1] = bad if bad != 1e11 else 0.0
    if bad == 1e11:
        grads["V"][0, 0] = bad                                 # finite but not to be trusted
    report = clip_with_fallback(grads, 1.0, params)
    assert report.clipped and report.scale == 0.0 and report.num_clipped == 4
    assert not (np.isfinite(report.norm) and report.norm <= 1e10)
    np.testing.assert_array_equal(grads["layers.0.W"], 0.02 * params["layers.0.W"])
    for name in ("layers.0.U", "layers.0.b", "V"):
        np.testing.assert_array_equal(grads[name], 0.0)


def test_fallback_is_global_norm_clipping_otherwise():
    rng = np.random.default_rng(8)
    grads, params = _grads_and_params(rng)
    expected = {k: g.copy() for k, g in grads.items()}
    want = clip_by_global_norm(expected, 0.5)
    got = make_fallback_clipper(0.5, params)(grads)
    assert got.norm == want.norm and got.clipped and got.scale == want.scale
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected[name])
    assert global_norm(grads) == pytest.approx(0.5, rel=1e-5)
    small = {k: 1e-3 * g for k, g in grads.items()}
    before = {k: g.copy() for k, g in small.items()}
    assert not clip_with_fallback(small, 0.5, params).clipped
    for name in small:
        np.testing.assert_array_equal(small[name], before[name])


def test_fallback_step_shrinks_W_and_keeps_training_going():
    """A NaN gradient in a real Trainer: the fallback SGD step is W <- W (1 - 0.02 lr), the rest stays."""
    from bptt.training.optim import SGD
    from bptt.training.train import Trainer
    net = bptt.Network(2, 4, 1, loss="mse", seed=0)
    before = {k: v.copy() for k, v in net.params.items()}

    def poison(grads):
        grads["layers.0.b"][0] = np.nan
    trainer = Trainer(net, SGD(net.params, lr=0.5), clip=make_fallback_clipper(1.0, net.params), grad_hook=poison,
                      numerics=None)
    rng = np.random.default_rng(0)
    trainer.fit([(rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 1)))], 1)
    np.testing.assert_allclose(net.params["layers.0.W"], before["layers.0.W"] * (1 - 0.02 * 0.5), rtol=1e-12)
    for name in ("layers.0.U", "layers.0.b", "V", "c"):
        np.testing.assert_array_equal(net.params[name], before[name])


# ------------------------------------------------------------------ variants and settings
def test_pascanu_variants_follow_their_code():
    for variant in ("rnn-sgd", "rnn-sgd-clip", "rnn-sgd-clip-omega"):
        assert VARIANTS[variant]["net"] == PASCANU_NET
        s = resolve("temporal-order", variant)
        assert (s["optimizer"], s["lr"], s["batch"]) == ("sgd", 0.01, 20)
    assert resolve("temporal-order", "rnn-sgd")["clip_mode"] == "none"
    assert resolve("temporal-order", "rnn-sgd-clip")["clip_mode"] == "global-norm+fallback"
    assert resolve("temporal-order", "rnn-sgd-clip-omega")["omega"] == 2.0
    assert resolve("temporal-order", "rnn")["batch"] == 32 and resolve("temporal-order", "rnn")["omega"] == 0.0


def test_explicit_optimizer_sgd_keeps_the_sgd_lr():
    """The old bug: --optimizer sgd made the rnn-sgd* variants use --lr instead of --sgd-lr."""
    s = resolve("temporal-order", "rnn-sgd-clip", optimizer="sgd", lr=0.5)
    assert (s["optimizer"], s["lr"]) == ("sgd", 0.01)
    s = resolve("temporal-order", "rnn-sgd-clip", optimizer="sgd", lr=0.5, sgd_lr=0.05, batch=7)
    assert (s["lr"], s["batch"]) == (0.05, 7)
    assert resolve("temporal-order", "rnn", optimizer="sgd", lr=0.5)["lr"] == 0.5


def test_variant_networks_are_built_as_documented():
    from bptt.experiments.tasks import make_network
    net = make_network(get_task("temporal-order"), "rnn-sgd-clip", 50, seed=0)
    W = net.params["layers.0.W"]
    np.testing.assert_array_equal(np.count_nonzero(W, axis=1), np.full(50, 15))
    assert spectral_radius(W) == pytest.approx(0.95, rel=1e-5)           # float32
    np.testing.assert_array_equal(net.params["layers.0.b"], 0.0)
    task = get_task("latch")
    lstm = make_network(task, "lstm-input-3", 4, seed=0)
    base = bptt.Network(task.input_size, 4, task.output_size, loss=task.loss, cell="lstm", dtype="float32", seed=0)
    diff = lstm.params["layers.0.b"] - base.params["layers.0.b"]         # [i, f, g, o]
    np.testing.assert_allclose(diff, np.repeat([-3.0, 4.0, 0.0, 0.0], 4), atol=1e-6)   # input -3, forget 1 -> 5
    assert make_network(get_task("adding-hs"), "lstm", 4, seed=0).config["forget_bias"] == 5.0


# ------------------------------------------------------------------ stopping and budget
def test_stops_at_the_first_confirmed_solve():
    task = get_task("latch")
    run = train_one("latch", "lstm", 5, 0, steps=3000, hidden=4, batch=16, lr=3e-2, eval_every=10,
                    eval_batch=200, dtype="float64", stop_when_solved=True, test_size=300)
    assert run["solved"] and run["solved_at"] is not None and run["solved_at"] < 3000
    assert run["steps_done"] == run["solved_at"] == run["curve"]["step"][-1]
    assert run["sequences_to_solve"] == 16 * run["solved_at"]
    assert run["solved_at"] % 10 == 0                                     # checked every 10 updates
    # no earlier check met the criterion on both sets
    confirmed = {c["step"]: task.solved(c) for c in run["confirmations"]}
    assert confirmed[run["solved_at"]] and not any(v for s, v in confirmed.items() if s < run["solved_at"])
    for step, acc in zip(run["curve"]["step"][1:-1], run["curve"]["accuracy"][1:-1]):
        assert acc < 0.99 or step in confirmed
    again = train_one("latch", "lstm", 5, 0, steps=run["solved_at"] + 50, hidden=4, batch=16, lr=3e-2,
                      eval_every=10, eval_batch=200, dtype="float64")
    assert again["steps_done"] == run["solved_at"] + 50 and again["solved_at"] is None   # no stop unless asked
    assert again["curve"]["accuracy"][:len(run["curve"]["step"])] == run["curve"]["accuracy"]


def test_an_unconfirmed_solve_is_not_a_solve(monkeypatch):
    """The held-out set alone is not enough: the fresh set of the paper's size must agree."""
    import dataclasses

    import bptt.experiments.tasks as experiments
    calls = []

    def held_out_yes_test_no(metrics):
        calls.append(metrics)
        return len(calls) % 2 == 1                        # each check: held-out first (yes), then the test (no)
    fake = dataclasses.replace(get_task("latch"), solved=held_out_yes_test_no)
    monkeypatch.setattr(experiments, "get_task", lambda name: fake)
    run = train_one("latch", "lstm", 5, 0, steps=40, hidden=4, batch=8, eval_every=10, eval_batch=16,
                    stop_when_solved=True, test_size=1500)
    assert run["solved_at"] is None and not run["solved"] and run["steps_done"] == 40
    assert [c["step"] for c in run["confirmations"]] == [10, 20, 30, 40]


def test_budget_bounds_a_run():
    run = train_one("temporal-order", "rnn-sgd-clip", 20, 0, steps=10 ** 7, hidden=8, eval_every=100,
                    eval_batch=50, budget=0.5)
    assert run["budget_hit"] and 0 < run["steps_done"] < 10 ** 7
    assert run["curve"]["step"][-1] == run["steps_done"]                  # the last state is scored
    with pytest.raises(ValueError, match="budget"):
        train_one("latch", "lstm", 5, 0, steps=5, hidden=2, budget=-1.0)


# ------------------------------------------------------------------ the CLI, every paper variant, quick
@pytest.mark.parametrize("task,cell", [("temporal-order", "rnn-sgd"), ("temporal-order", "rnn-sgd-clip"),
                                       ("temporal-order", "rnn-sgd-clip-omega"), ("adding-hs", "lstm"),
                                       ("latch", "lstm"), ("latch", "lstm-input-3"), ("copying", "gru")])
def test_cli_quick_run_of_each_paper_variant(tmp_path, task, cell):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["experiment", task, "--cell", cell, "--T", "10", "--quick", "--stop-when-solved",
                 "--budget", "20", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    run = result["runs"][0]
    assert result["settings"]["stop_when_solved"] and result["settings"]["budget"] == 20
    assert "--stop-when-solved" in result["command"] and "--budget 20.0" in result["command"]
    assert run["net"] == {**VARIANTS[cell]["net"], **({"sparsity": 8} if "sparsity" in VARIANTS[cell]["net"] else {}),
                          **({"forget_bias": 5.0} if (task, cell) in (("adding-hs", "lstm"), ("latch", "lstm")) else {})}
    if cell.startswith("rnn-sgd"):
        assert (run["optimizer"], run["lr"]) == ("sgd", 0.01)


def test_cli_optimizer_sgd_does_not_change_the_sgd_lr(tmp_path):
    out = tmp_path / "run"
    assert main(["experiment", "temporal-order", "--cell", "rnn-sgd-clip", "--T", "10", "--quick",
                 "--optimizer", "sgd", "--lr", "0.5", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    run = result["runs"][0]
    assert (run["optimizer"], run["lr"]) == ("sgd", 0.01)
    # the table's header states what the runs used (all cells agree here)
    assert (result["settings"]["optimizer"], result["settings"]["lr"]) == ("sgd", 0.01)


@pytest.mark.parametrize("flags,message", [(["--budget", "0"], "--budget must be a number of seconds > 0, got 0.0"),
                                           (["--budget", "nan"], "--budget must be a number of seconds > 0, got nan"),
                                           (["--test-size", "0"], "--test-size must be >= 1, got 0")])
def test_cli_refuses_bad_budget_and_test_size(tmp_path, capsys, flags, message):
    assert main(["experiment", "latch", "--quick", "--out", str(tmp_path / "x")] + flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_figure_of_runs_that_stopped_at_different_steps(tmp_path):
    """Seeds solved (and stopped) at different updates: the figure is still drawn."""
    pytest.importorskip("matplotlib")
    from bptt.experiments.task_report import write_figure
    runs = [{"cell": "lstm", "T": 5, "seed": s, "curve": {"step": list(range(0, 10 * n + 1, 10)),
                                                          "accuracy": list(np.linspace(0.5, 1.0, n + 1))}}
            for s, n in ((0, 3), (1, 6))]
    result = {"metric": "accuracy", "seq_lens": [5], "cells": ["lstm"], "runs": runs, "task": "latch",
              "baseline": {"5": {"accuracy": 0.5}}}
    write_figure(result, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
