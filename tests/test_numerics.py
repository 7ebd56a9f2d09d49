"""Non-finite losses and gradients are caught before the update (bptt.training.numerics): stop, skip, rollback.

Faults are injected deterministically: a grad_hook (which runs before the guard, where an MPI
all-reduce would) writes a NaN or an inf into one gradient at chosen steps, or a truncation
wrapper reports a NaN loss. Every test compares against the weights the run had before the
faulty step, bit for bit."""

import json
import os

import numpy as np
import pytest

from bptt.io.checkpoint import load_checkpoint, save_checkpoint
from bptt.cli import main
from bptt.network import Network
from bptt.training.numerics import NonFiniteError, NonFiniteGuard, describe_nonfinite, first_nonfinite
from bptt.training.optim import make_optimizer
from bptt.training.schedules import make_schedule
from bptt.training.train import Trainer
from bptt.training.truncation import Chunked, FullBPTT

T, B, V = 6, 3, 5


def batch(step):
    rng = np.random.default_rng([7, step])
    x = rng.integers(0, V, size=(T, B))
    return x, np.roll(x, -1, axis=0)


def make(policy, bad_steps=(), value=np.nan, optimizer="adam", schedule=None, truncation=None, once=False, **guard):
    net = Network(V, 4, V, seed=3)
    messages = []
    trainer = None

    def inject(grads):                              # the step being computed is trainer.step + 1
        if trainer.step + 1 in bad_steps:
            grads["layers.0.W"][1, 2] = value
            if once:                                # a transient fault: the step is clean when redone
                bad_steps.discard(trainer.step + 1)

    trainer = Trainer(net, make_optimizer(optimizer, net.params, lr=0.05), grad_hook=inject, schedule=schedule,
                      truncation=truncation, numerics=NonFiniteGuard(policy, warn=messages.append, **guard))
    return net, trainer, messages


def params_copy(net):
    return {k: v.copy() for k, v in net.params.items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_first_nonfinite_and_its_description():
    arrays = {"a": np.ones(3), "ids": np.arange(3), "b": np.array([[1.0, np.inf], [np.nan, 2.0]])}
    assert first_nonfinite(arrays) == "b"
    assert first_nonfinite({"a": np.ones(2)}) is None
    text = describe_nonfinite("b", arrays["b"])
    assert "1 NaN" in text and "1 inf" in text and "(0, 1)" in text


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_stop_raises_before_the_update(value):
    net, trainer, _ = make("stop", bad_steps={3}, value=value)
    trainer.fit(batch, 2)
    before = params_copy(net)
    t_before = trainer.optimizer.t
    with pytest.raises(NonFiniteError, match=r"gradient of layers\.0\.W .* at step 3") as info:
        trainer.fit(batch, 5)
    assert "\n" not in str(info.value)
    assert_same(params_copy(net), before)          # nothing applied, optimiser untouched
    assert trainer.optimizer.t == t_before and trainer.step == 2


def test_stop_on_a_nonfinite_loss():
    class NaNLoss:                                  # reports a NaN loss on the second step
        def __init__(self):
            self.calls = 0

        def run(self, net, x, y, mask, state, update):
            self.calls += 1

            def poisoned(piece):
                if self.calls == 2:
                    piece.loss = float("nan")
                update(piece)
            return FullBPTT().run(net, x, y, mask, state, poisoned)

    net, trainer, _ = make("stop", truncation=NaNLoss())
    with pytest.raises(NonFiniteError, match="the loss became nan at step 2"):
        trainer.fit(batch, 4)
    assert trainer.step == 1


def test_skip_leaves_the_weights_and_optimiser_alone_and_reports_it(tmp_path):
    net, trainer, messages = make("skip", bad_steps={3})
    trainer.metrics_path = str(tmp_path / "metrics.jsonl")
    trainer.fit(batch, 2)
    before, t_before = params_copy(net), trainer.optimizer.t
    [summary] = trainer.fit(batch, 1)                # step 3: poisoned
    assert_same(params_copy(net), before)
    assert trainer.optimizer.t == t_before and trainer.step == 3
    assert summary.extra["nonfinite"] == 1 and summary.extra["skipped_updates"] == 1
    assert len(messages) == 1 and "step 3" in messages[0] and "skipped" in messages[0]
    trainer.fit(batch, 1)                            # step 4 is clean: it does update
    assert not np.array_equal(net.params["V"], before["V"])
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [line["nonfinite"] for line in lines] == [0, 0, 1, 0]
    assert lines[-1]["skipped_updates"] == 1


def test_skip_equals_a_run_whose_optimiser_never_saw_that_update():
    # Chunked(2): three updates per step; only the second update of step 2 (the 5th) is poisoned
    net, trainer, _ = make("skip", truncation=Chunked(2))
    seen = []

    def hook(grads):
        seen.append(1)
        if len(seen) == 5:
            grads["V"][0, 0] = np.nan
    trainer.grad_hook = hook
    trainer.fit(batch, 3)
    assert trainer.numerics.skipped == 1 and trainer.optimizer.t == 8

    class DropFifth:                                 # reference: the optimiser ignores its 5th call
        def __init__(self, opt):
            self.opt, self.calls = opt, 0

        lr = property(lambda self: self.opt.lr, lambda self, value: setattr(self.opt, "lr", value))

        def step(self, grads):
            self.calls += 1
            if self.calls != 5:
                self.opt.step(grads)

    ref_net = Network(V, 4, V, seed=3)
    ref = Trainer(ref_net, DropFifth(make_optimizer("adam", ref_net.params, lr=0.05)), truncation=Chunked(2))
    ref.fit(batch, 3)
    assert_same(params_copy(net), params_copy(ref_net))
    assert first_nonfinite(net.params) is None


def test_skip_gives_up_after_max_skips_in_a_row():
    net, trainer, messages = make("skip", bad_steps=set(range(1, 100)), max_skips=4)
    with pytest.raises(NonFiniteError, match="4 non-finite updates in a row"):
        trainer.fit(batch, 50)
    assert len(messages) == 3 and trainer.step == 3


@pytest.mark.parametrize("with_schedule", [False, True])
def test_rollback_restores_the_last_snapshot_with_a_lower_learning_rate(with_schedule):
    schedule = make_schedule("step", 0.05, every=2, gamma=0.9) if with_schedule else None
    # reference: a clean run, weights after step 4
    ref_net, ref, _ = make("rollback", schedule=make_schedule("step", 0.05, every=2, gamma=0.9)
                           if with_schedule else None, snapshot_every=2)
    ref.fit(batch, 4)
    at_4 = params_copy(ref_net)

    net, trainer, messages = make("rollback", bad_steps={6}, schedule=schedule, snapshot_every=2, lr_factor=0.25,
                                  once=True)
    trainer.fit(batch, 5)
    summary = trainer.train_step(batch(5))           # step 6 poisoned -> back to the snapshot at step 4
    assert trainer.step == 4 and summary.extra["rollbacks"] == 1 and summary.extra["lr_scale"] == 0.25
    assert_same(params_copy(net), at_4)
    assert trainer.optimizer.t == ref.optimizer.t
    assert "rolled back to step 4" in messages[0]
    trainer.fit(batch, 1)                            # step 5 again, now at a quarter of the rate
    assert trainer.step == 5
    expected_lr = (schedule.lr(4) if with_schedule else 0.05) * 0.25
    assert trainer.optimizer.lr == pytest.approx(expected_lr, rel=1e-15)
    assert first_nonfinite(net.params) is None


def test_rollback_before_any_snapshot_goes_back_to_the_start():
    net, trainer, _ = make("rollback", bad_steps={2}, once=True)
    start = params_copy(net)
    trainer.fit(batch, 1)
    trainer.train_step(batch(1))
    assert trainer.step == 0 and trainer.numerics.rollbacks == 1
    assert_same(params_copy(net), start)


def test_rollback_gives_up_after_max_rollbacks():
    net, trainer, messages = make("rollback", bad_steps=set(range(1, 100)), max_rollbacks=3)
    with pytest.raises(NonFiniteError, match="after 3 rollbacks"):
        trainer.fit(batch, 50)
    assert len(messages) == 3


def test_an_update_that_overflows_the_weights_is_caught():
    # float32, SGD at an absurd rate: finite gradients, infinite weights after the step
    net = Network(V, 4, V, seed=3, dtype="float32")
    stop = Trainer(net, make_optimizer("sgd", net.params, lr=1e300), numerics=NonFiniteGuard("stop", warn=None))
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(NonFiniteError, match="became non-finite in the update"):
        stop.fit(batch, 3)
    net = Network(V, 4, V, seed=3, dtype="float32")
    start = params_copy(net)
    roll = Trainer(net, make_optimizer("sgd", net.params, lr=1e300),
                   numerics=NonFiniteGuard("rollback", lr_factor=1e-300, warn=None))
    with np.errstate(over="ignore", invalid="ignore"):
        summary = roll.train_step(batch(0))
    assert summary.extra["rollbacks"] == 1 and roll.step == 0
    assert_same(params_copy(net), start)
    roll.fit(batch, 3)                               # at lr 1 it trains
    assert first_nonfinite(net.params) is None and roll.step == 3


def test_guard_state_survives_a_checkpoint(tmp_path):
    net, trainer, _ = make("rollback", bad_steps={3}, snapshot_every=2, once=True)
    trainer.fit(batch, 3)
    save_checkpoint(tmp_path / "run", net, trainer=trainer)
    ckpt = load_checkpoint(tmp_path / "run")
    net2 = ckpt.network()
    trainer2 = Trainer(net2, make_optimizer("adam", net2.params, lr=0.05), numerics=NonFiniteGuard("rollback"))
    trainer2.load_state_dict(ckpt.trainer_state())
    assert trainer2.numerics.lr_scale == 0.5 and trainer2.numerics.rollbacks == 1
    assert trainer2.optimizer.lr == trainer.optimizer.lr == 0.025


def test_a_nonfinite_parameter_is_never_written(tmp_path):
    net = Network(V, 4, V, seed=3)
    path = save_checkpoint(tmp_path / "run", net)
    good = open(path, "rb").read()
    net.params["layers.0.U"][2, 1] = np.nan
    with pytest.raises(ValueError, match=r"refusing to write .*layers\.0\.U \(1 NaN.*previous checkpoint is kept"):
        save_checkpoint(tmp_path / "run", net)
    assert open(path, "rb").read() == good
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint.npz"]     # no temporary file either


def test_guard_arguments_are_checked():
    for kwargs, needle in [({"policy": "ignore"}, "policy must be one of"), ({"lr_factor": 1.5}, "lr_factor must be < 1"),
                           ({"lr_factor": 0}, "lr_factor"), ({"max_skips": 0}, "max_skips must be >= 1")]:
        with pytest.raises(ValueError, match=needle):
            NonFiniteGuard(**kwargs)


@pytest.mark.parametrize("policy, needle, code", [
    ("stop", "became non-finite", 2),
    ("skip", "became non-finite", 2),
    ("rollback", "after 5 rollbacks|still non-finite", 2),
])
def test_cli_policies_on_a_diverging_run(tmp_path, capsys, policy, needle, code):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 30)
    out = tmp_path / "run"
    argv = ["train", "--text", str(text), "--out", str(out), "--steps", "40", "--hidden", "8", "--seq-len", "8",
            "--batch", "2", "--optimizer", "sgd", "--lr", "1e300", "--clip-mode", "none", "--checkpoint-every", "1",
            "--no-progress", "--nonfinite", policy, "--rollback-factor", "0.9"]
    with np.errstate(all="ignore"):
        assert main(argv) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bptt train: error:") and __import__("re").search(needle, last), err
    if os.path.exists(out / "checkpoint.npz"):     # whatever was written is finite and loads
        ckpt = load_checkpoint(out)
        assert first_nonfinite(ckpt.params) is None
    if policy == "rollback":
        assert err.count("rolled back") == 5


def test_cli_rollback_recovers(tmp_path, capsys):
    """A rate that overflows once, then (scaled down) trains: the run ends normally."""
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 30)
    out = tmp_path / "run"
    argv = ["train", "--text", str(text), "--out", str(out), "--steps", "6", "--hidden", "8", "--seq-len", "8",
            "--batch", "2", "--optimizer", "sgd", "--lr", "1e300", "--clip-mode", "none", "--checkpoint-every", "2",
            "--no-progress", "--nonfinite", "rollback", "--rollback-factor", "1e-300", "--dtype", "float32"]
    with np.errstate(all="ignore"):
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert "rolled back to step 0" in err
    ckpt = load_checkpoint(out)
    assert ckpt.step == 6 and first_nonfinite(ckpt.params) is None
    lines = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert lines[-1]["rollbacks"] == 1 and lines[-1]["lr_scale"] == pytest.approx(1e-300)


# ---------------------------------------------------------------- divergence with finite numbers (issue 15)
class _Piece:
    def __init__(self, loss, T=4):
        self.loss, self.span, self.grads = loss, (0, T), {"w": np.ones(2)}


def _feed(guard, losses):
    """admit() each loss (per step x 4 steps); returns the admit results."""
    return [guard.admit(_Piece(4.0 * loss), step) for step, loss in enumerate(losses, 1)]


def test_a_finite_loss_far_above_its_median_for_three_updates_stops():
    guard = NonFiniteGuard("stop", divergence_factor=10.0, warn=None)
    assert _feed(guard, [3.0, 2.9, 2.8, 2.9]) == [True] * 4
    assert guard.threshold() == pytest.approx(10 * 2.9)
    assert _feed(guard, [40.0, 1e3]) == [True, True] and guard.suspect          # suspect, not yet diverged
    with pytest.raises(NonFiniteError, match=r"the loss diverged at step 1: 1e\+05 per step, more than 10x its "
                                             r"running median 2\.9 for 3 updates in a row; stopped"):
        _feed(guard, [1e5])


def test_one_spike_is_not_divergence_and_does_not_move_the_median():
    guard = NonFiniteGuard("stop", divergence_factor=10.0, warn=None)
    _feed(guard, [3.0, 3.0, 500.0, 500.0, 2.5, 3.0, 700.0, 2.0])
    assert not guard.suspect and guard.threshold() == pytest.approx(30.0)      # spikes never entered the median
    assert guard.judge(29.0) is None and "more than 10x the running median 3" in guard.judge(31.0)
    assert NonFiniteGuard("stop").threshold() is None                          # off unless asked for


def test_skip_cannot_undo_a_divergence_and_says_so():
    guard = NonFiniteGuard("skip", divergence_factor=10.0, warn=None)
    with pytest.raises(NonFiniteError, match="policy 'skip' cannot undo a divergence"):
        _feed(guard, [3.0, 100.0, 100.0, 100.0])


def test_rollback_undoes_a_divergence_and_lowers_the_rate():
    net, trainer, messages = make("rollback", snapshot_every=2, divergence_factor=10.0)
    data = [batch(s) for s in range(4)]
    trainer.fit(lambda step: data[step % 4], steps=4)
    at_four = params_copy(net)
    real = trainer.truncation.run

    def diverging_once(net_, x, targets, mask, state, update):   # steps 5-7 look diverged, until the rollback
        def inflate(piece):
            if trainer.numerics.rollbacks == 0:
                piece.loss = 1e6
            update(piece)
        return real(net_, x, targets, mask, state, inflate)

    trainer.truncation.run = diverging_once
    trainer.fit(lambda step: data[step % 4], steps=3)
    assert trainer.numerics.rollbacks == 1 and trainer.numerics.lr_scale == 0.5 and trainer.step == 7
    assert any("diverged at step 7" in m and "rolled back to step 4" in m for m in messages), messages
    # the snapshot of step 6 was not taken (suspect): the rollback went to step 4's weights, then on
    trainer2 = make("rollback", snapshot_every=2, divergence_factor=10.0)[1]
    trainer2.fit(lambda step: data[step % 4], steps=4)
    assert_same(params_copy(trainer2.net), at_four)


def test_checking_a_model_before_saving_it_changes_nothing():
    """loss_per_step runs in evaluation mode: no dropout mask drawn, so a run stays bit-identical."""
    from bptt.losses import softmax_cross_entropy
    from bptt.training.numerics import loss_per_step
    from bptt.training.train import Batch

    net = Network(V, 4, V, num_layers=2, dropout=0.5, seed=3)
    x, y = batch(0)
    state = net.dropout_rng.bit_generator.state
    value = loss_per_step(net, Batch(x, y))
    assert net.dropout_rng.bit_generator.state == state and net.training
    net.eval()
    expected = softmax_cross_entropy(net.forward(x).outputs, y)[0] / T
    assert value == pytest.approx(expected, rel=1e-12)
