"""Clipping that means something by default: --clip bounds the gradient of the per-token mean
loss (bptt.training.clip, per_token=True), so a healthy default run rarely clips."""

import json
import os

import numpy as np
import pytest

from bptt import Network
from bptt.cli import main
from bptt.training.clip import clip_by_global_norm, clip_by_value, make_clipper
from bptt.training.optim import SGD
from bptt.training.train import Trainer
from bptt.training.truncation import make_truncation


def random_grads(seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return {"W": scale * rng.standard_normal((4, 4)), "V": scale * rng.standard_normal((3, 4))}


@pytest.mark.parametrize("mode, fn", [("global-norm", clip_by_global_norm), ("value", clip_by_value)])
@pytest.mark.parametrize("n", [1.0, 7.0, 64.0])
def test_per_token_clip_is_the_clip_of_the_mean_loss_gradient(mode, fn, n):
    """clip(dE/dtheta, c n) == n clip(d(E/n)/dtheta, c), and the report's norm is that of d(E/n)/dtheta.
    (Up to the 1e-6 torch adds to the norm in the rescale: c n / (N + 1e-6) against c n / (N + n 1e-6).)"""
    c = 0.4
    grads = random_grads()
    mean = {k: g / n for k, g in grads.items()}
    expected = fn(mean, c)
    report = make_clipper(mode, c, per_token=True)(grads, loss_steps=n)
    for k in grads:
        np.testing.assert_allclose(grads[k], n * mean[k], rtol=1e-6 * n / 3.0, atol=0)
    assert report.clipped == expected.clipped
    assert report.norm == pytest.approx(expected.norm, rel=1e-12)


def test_sum_clip_is_unchanged():
    grads = random_grads()
    expected = {k: g.copy() for k, g in grads.items()}
    clip_by_global_norm(expected, 5.0)
    make_clipper("global-norm", 5.0)(grads)
    for k in grads:
        assert np.array_equal(grads[k], expected[k])


def test_trainer_passes_the_updates_loss_steps():
    """Chunked(k) updates carry k steps of loss (the last one what is left); a mask: its sum / B."""
    seen = []

    def clip(grads, loss_steps=1.0):
        from bptt.training.clip import ClipReport
        seen.append(loss_steps)
        return ClipReport(1.0, False)
    clip.per_token = True
    net = Network(3, 4, 3, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 3, size=(10, 2)), rng.integers(0, 3, size=(10, 2))
    trainer = Trainer(net, SGD(net.params, lr=0.1), clip=clip, truncation=make_truncation("chunked", k=4))
    trainer.fit((x, y), steps=1)
    assert seen == [4.0, 4.0, 2.0]
    seen.clear()
    mask = np.zeros((10, 2))
    mask[-1] = 1.0                                            # many-to-one: one loss-bearing step per sequence
    trainer = Trainer(net, SGD(net.params, lr=0.1), clip=clip)
    trainer.fit((x, y, mask), steps=1)
    assert seen == [1.0]


def clip_rate(out):
    last = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))][-1]
    return last["clip_fired"] / last["clip_calls"], last["clip_calls"]


def test_default_200_step_run_clips_on_fewer_than_half_its_updates(tmp_path, capsys):
    """The built-in corpus, every model/optimiser/clipping default, 200 steps (about 2 s)."""
    out = str(tmp_path / "default")
    assert main(["train", "--steps", "200", "--eval-every", "0", "--out", out, "--no-progress"]) == 0
    rate, calls = clip_rate(out)
    assert calls == 200 and rate < 0.5
    assert f"clipping fired {round(rate * 200)}/200 updates" in capsys.readouterr().err
    # the same run clipping the summed loss's gradient (what --clip 5 meant before): fires nearly always
    out = str(tmp_path / "sum")
    assert main(["train", "--steps", "200", "--eval-every", "0", "--out", out, "--no-progress",
                 "--clip-loss", "sum"]) == 0
    assert clip_rate(out)[0] > 0.9
