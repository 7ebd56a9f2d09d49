"""The Trainer: generators of float/mse many-to-one batches, hook -> clip -> step order,
per-update records, metrics log, determinism, divergence error."""

import json

import numpy as np
import pytest

from bptt.training.clip import make_clipper
from bptt.data import ArrayBatches
from bptt.network import Network
from bptt.training.optim import SGD, Adam
from bptt.training.schedules import make_schedule
from bptt.training.train import Batch, Trainer, TrainingDiverged
from bptt.training.truncation import Chunked


def adding_like(step, T=12, B=8):
    """A many-to-one regression batch: float inputs, mse, a mask on the last step only."""
    rng = np.random.default_rng(step)
    x = rng.random((T, B, 2))
    y = np.zeros((T, B, 1))
    y[-1, :, 0] = x[:, :, 0].sum(0) / T
    mask = np.zeros((T, B))
    mask[-1] = 1
    return x, y, mask


def test_generator_of_many_to_one_batches_learns():
    net = Network(2, 16, 1, loss="mse", seed=0)
    trainer = Trainer(net, Adam(net.params, lr=1e-2), clip=make_clipper("global-norm", 1.0))
    gen = (adding_like(s) for s in range(200))
    summaries = trainer.fit(gen)                          # runs until the generator is exhausted
    assert trainer.step == 200 and len(summaries) == 200
    early = np.mean([s.loss_per_token for s in summaries[:20]])
    late = np.mean([s.loss_per_token for s in summaries[-20:]])
    assert late < 0.5 * early
    assert summaries[0].tokens == 8                      # the mask's sum: one output per sequence


def test_hook_runs_before_clipping_and_records_per_update(tmp_path):
    net = Network(3, 5, 2, seed=1)
    seen = []

    def hook(grads):                                     # e.g. an all-reduce: in place, before clipping
        seen.append(float(np.sqrt(sum((g ** 2).sum() for g in grads.values()))))
        for g in grads.values():
            g *= 1000.0

    records = []
    trainer = Trainer(net, SGD(net.params, lr=0.01), clip=make_clipper("global-norm", 1.0), truncation=Chunked(4),
                      callbacks=[records.append], grad_hook=hook, keep_unclipped=True,
                      metrics_path=str(tmp_path / "m.jsonl"), schedule=make_schedule("step", 0.01, every=2))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 3, (10, 2)), rng.integers(0, 2, (10, 2))
    trainer.fit((x, y), steps=3)
    assert len(records) == 9 and [r.update for r in records] == list(range(1, 10))   # 3 chunks x 3 steps
    assert [r.step for r in records] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [r.piece.span for r in records[:3]] == [(0, 4), (4, 8), (8, 10)]
    for r, before in zip(records, seen):
        assert r.grad_norm == pytest.approx(1000 * before, rel=1e-9)        # norm measured after the hook
        assert r.clip.clipped and r.clip.scale < 1
        after = np.sqrt(sum((g ** 2).sum() for g in r.grads.values()))
        assert after == pytest.approx(1.0, rel=1e-5)                         # clipped to the threshold
        unclipped = np.sqrt(sum((g ** 2).sum() for g in r.grads_unclipped.values()))
        assert unclipped == pytest.approx(r.grad_norm, rel=1e-9)
        assert r.piece.dh[0].shape[1:] == (2, 5)
    assert [r.lr for r in records] == [0.01] * 6 + [0.005] * 3                # step schedule, every 2 steps
    lines = [json.loads(line) for line in open(tmp_path / "m.jsonl")]
    assert [line["step"] for line in lines] == [1, 2, 3] and lines[-1]["clip_fired"] == 9


def test_same_seeds_same_parameters():
    def run():
        net = Network(2, 6, 1, loss="mse", seed=3, num_layers=2, cell="gru")
        x, y, m = adding_like(0, B=20)
        data = ArrayBatches(x, y, m, batch=5, seed=7)
        Trainer(net, Adam(net.params, lr=1e-2)).fit(data, steps=9)
        return net.params
    a, b = run(), run()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_carried_state_between_batches():
    net = Network(3, 4, 3, seed=0)
    trainer = Trainer(net, SGD(net.params, lr=1e-9))
    x = np.random.default_rng(0).integers(0, 3, (6, 2))
    trainer.train_step(Batch(x[:3], x[:3], reset=True))
    carried = trainer.state.copy()
    np.testing.assert_allclose(carried, net.forward(x[:3]).final_state, rtol=1e-6)
    trainer.train_step(Batch(x[3:], x[3:], reset=False))
    np.testing.assert_allclose(trainer.state, net.forward(x[3:], carried).final_state, rtol=1e-6)


def test_divergence_and_bad_arguments():
    net = Network(2, 4, 1, loss="mse", seed=0)
    trainer = Trainer(net, SGD(net.params, lr=1e30))
    x, y, m = adding_like(0)
    with pytest.raises(TrainingDiverged, match="the loss became"):
        with np.errstate(all="ignore"):
            trainer.fit((x, y * 1e200, m), steps=5)
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        trainer.fit((x, y, m), steps=-1)
    with pytest.raises(TypeError, match="clip must be a function"):
        Trainer(net, SGD(net.params), clip=5.0)
    with pytest.raises(TypeError, match="a batch must be"):
        trainer.fit([1, 2, 3], steps=1)
