"""Parity and selective copying: generators, baselines (analytic = measured on the trivial predictor),
criteria, and that the tasks tell cells apart (quick runs)."""

import numpy as np
import pytest

from bptt import Network
from bptt.tasks import get_task
from bptt.training.optim import Adam
from bptt.training.train import Trainer


@pytest.mark.parametrize("name", ["parity", "selective-copying"])
def test_generator_shapes_seeds_and_baseline(name):
    task = get_task(name)
    x, y, mask = task.generate(20, 64, seed=1)
    assert x.shape == (task.sequence_length(20), 64, task.input_size) and y.shape == x.shape[:2]
    x2, y2, _ = task.generate(20, 64, seed=1)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(y, task.generate(20, 64, seed=2)[1])
    measured = task.score(task.trivial_outputs(x, y, mask), y, mask)
    big = task.generate(20, 4000, seed=3)
    measured = task.score(task.trivial_outputs(*big), big[1], big[2])
    for key, value in task.baseline(20).items():
        if key in ("cross_entropy", "error", "accuracy"):
            assert measured[key] == pytest.approx(value, abs=0.01), key
    assert not task.solved(measured)


def test_parity_targets_are_the_running_xor():
    x, y, _ = get_task("parity").generate(30, 5, seed=0)
    bits = x.argmax(axis=2)
    for b in range(5):
        acc = 0
        for t in range(30):
            acc ^= int(bits[t, b])
            assert y[t, b] == acc


def test_selective_copying_keeps_the_order_of_scattered_tokens():
    x, y, _ = get_task("selective-copying").generate(16, 8, seed=4)
    ids = x.argmax(axis=2)
    for b in range(8):
        data = [s for s in ids[:16, b] if 1 <= s <= 8]
        assert data == list(y[-4:, b]) and ids[16, b] == 10


def _train(cell, task, T, steps, seed=0):
    net = Network(task.input_size, 24, task.output_size, cell=cell, seed=seed)
    trainer = Trainer(net, Adam(net.params, lr=0.01))
    trainer.fit(lambda s: task.generate(T, 32, seed=1000 + s), steps=steps)
    x, y, m = task.generate(T, 500, seed=99)
    return task.score(net.forward(x).outputs, y, m)


def test_parity_tells_a_nonlinear_recurrence_from_a_diagonal_linear_one():
    task = get_task("parity")
    gru, mingru = _train("gru", task, 10, 600), _train("mingru", task, 10, 600)
    assert gru["error"] < 0.05, gru                           # carries the bit
    assert mingru["error"] > 0.2, mingru                      # cannot: a_t in (0, 1) has no sign flip
