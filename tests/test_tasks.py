"""The task generators: each definition (targets from the inputs by the paper's formula,
marker placement), empirical trivial baselines against the analytic ones, seeding, bad input."""

import numpy as np
import pytest

from bptt import Network
from bptt.tasks import TASKS, adding, copying, get_task, latch, temporal_order

# sequences for the Monte Carlo baseline checks (tolerances >= 3 standard errors); copying's
# baseline is exact for any batch, and its one-hot arrays are large, so it gets few.
BIG = {"copying": 4_000, "temporal-order": 10_000}


# ----------------------------------------------------------------------------- shared contract
@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("T", [13, 60])
def test_format_shapes_and_single_final_mask(name, T):
    task = get_task(name)
    inputs, targets, mask = task.generate(T, 7, seed=3)
    steps = task.sequence_length(T)
    assert inputs.shape == (steps, 7, task.input_size) and inputs.dtype.kind == "f"
    assert mask.shape == (steps, 7)
    if task.loss == "cross_entropy":
        assert targets.shape == (steps, 7) and targets.dtype.kind in "iu"
        assert targets.min() >= 0 and targets.max() < task.output_size
    else:
        assert targets.shape == (steps, 7, task.output_size)
    if name in ("copying", "parity", "selective-copying"):  # many-to-many: a loss at every step
        np.testing.assert_array_equal(mask, np.ones((steps, 7)))
    else:                                                   # many-to-one: one loss step per column, at its end
        np.testing.assert_array_equal(mask.sum(axis=0), np.ones(7))
        if not task.options.get("vary_length"):
            np.testing.assert_array_equal(mask[-1], np.ones(7))


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_repeats_and_other_seed_differs(name):
    task = get_task(name)
    a, b, c = task.generate(30, 5, seed=11), task.generate(30, 5, seed=11), task.generate(30, 5, seed=12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("name", list(TASKS))
def test_networks_train_on_the_generated_format(name):
    """The arrays go straight into Network.forward_backward (validation included)."""
    task = get_task(name)
    net = Network(task.input_size, 4, task.output_size, loss=task.loss, seed=0)
    inputs, targets, mask = task.generate(12, 3, seed=0)
    result = net.forward_backward(inputs, targets, mask)
    assert np.isfinite(result.loss)
    metrics = task.score(result.outputs, targets, mask)
    assert task.metric in metrics and isinstance(task.solved(metrics), bool)


@pytest.mark.parametrize("name", list(TASKS))
def test_empirical_trivial_baseline_matches_analytic(name):
    task = get_task(name)
    for T in (24, 100):
        inputs, targets, mask = task.generate(T, BIG.get(name, 40_000), seed=5)
        empirical = task.score(task.trivial_outputs(inputs, targets, mask), targets, mask)
        analytic = task.baseline(T)
        for key, value in analytic.items():
            if key == "sequence_accuracy":
                continue
            assert empirical[key] == pytest.approx(value, rel=0.02, abs=0.006), (key, T)
        assert not task.solved(empirical)


@pytest.mark.parametrize("name", ["not-a-task", "", None])
def test_unknown_task_names_the_value(name):
    with pytest.raises(ValueError, match="task must be one of"):
        get_task(name)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_bad_T_names_argument(bad):
    with pytest.raises(ValueError, match="T"):
        adding.generate(bad, 2)


def test_bad_batch_and_seed_and_form():
    with pytest.raises(ValueError, match="batch"):
        copying.generate(10, 0)
    with pytest.raises(ValueError, match="seed"):
        copying.generate(10, 2, seed=-1)
    with pytest.raises(ValueError, match="form"):
        adding.generate(10, 2, form="hinton")
    with pytest.raises(ValueError, match="T must be >= 10"):
        temporal_order.generate(9, 2)


# ----------------------------------------------------------------------------- adding, Le et al.
def test_adding_le_markers_one_per_half_and_target_is_marked_sum():
    T, B = 37, 500
    x, y, m = adding.generate(T, B, seed=1, form="le")
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    half = T // 2
    np.testing.assert_array_equal(markers[:half].sum(0), np.ones(B))     # one in the first half
    np.testing.assert_array_equal(markers[half:].sum(0), np.ones(B))     # one in the second half
    np.testing.assert_allclose(y[-1, :, 0], (values * markers).sum(0), rtol=0, atol=1e-12)
    assert np.all(y[:-1] == 0)
    # both halves' positions are used, not a fixed slot
    assert len(np.unique(markers[:half].argmax(0))) > half // 2


def test_adding_le_score_is_papers_mse_equal_to_twice_bptt_loss():
    x, y, m = adding.generate(20, 16, seed=2)
    net = Network(2, 5, 1, loss="mse", seed=3)
    result = net.forward_backward(x, y, m)
    assert adding.score(result.outputs, y, m)["mse"] == pytest.approx(2 * result.loss, rel=1e-12)


def test_adding_le_perfect_predictor_scores_zero_and_is_solved():
    x, y, m = adding.generate(20, 16, seed=2)
    metrics = adding.score(y.copy(), y, m)
    assert metrics["mse"] == 0 and adding.solved(metrics)


# ----------------------------------------------------------------------------- adding, H&S 1997
def test_adding_hs_definition():
    T, B = 40, 2000
    x, y, m = adding.generate(T, B, seed=4, form="hs")
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= -1 and values.max() <= 1
    marked = markers == 1.0
    np.testing.assert_array_equal(marked.sum(0), 2 * np.ones(B))         # exactly two marked
    positions = np.sort(np.argwhere(marked.T)[:, 1].reshape(B, 2), axis=1)
    assert positions[:, 0].max() <= 9                                     # X1 among the first ten
    assert positions[:, 1].max() <= T // 2 - 1                            # X2 among the first T/2 - 1 unmarked
    assert np.all(markers[-1] == -1)                                      # last pair: -1
    first_unmarked = positions[:, 0] != 0
    assert np.all(markers[0, first_unmarked] == -1)                       # first pair -1 unless marked
    assert np.all(values[0, ~first_unmarked] == 0)                        # "we set X1 to zero"
    np.testing.assert_allclose(y[-1, :, 0], 0.5 + (values * marked).sum(0) / 4, atol=1e-12)


def test_adding_hs_variable_length_marks_each_end():
    T, B = 50, 300
    x, y, m = adding.generate(T, B, seed=5, form="hs", vary_length=True)
    assert x.shape[0] == T + T // 10
    ends = m.argmax(0)
    assert ends.min() >= T - 1 and ends.max() <= T + T // 10 - 1 and len(np.unique(ends)) > 1
    cols = np.arange(B)
    assert np.all(x[ends, cols, 1] == -1)                                 # -1 marker on each last pair
    after = np.arange(x.shape[0])[:, None] > ends[None, :]
    assert np.all(x[after] == 0)                                          # zero padding after the end
    assert np.all(y[ends, cols, 0] >= 0) and np.all(y[ends, cols, 0] <= 1)


def test_adding_hs_accuracy_uses_the_004_threshold():
    x, y, m = adding.generate(30, 4, seed=0, form="hs")
    out = y.copy()
    out[-1, :, 0] += np.array([0.039, -0.039, 0.041, -0.2])
    assert adding.score(out, y, m, form="hs")["accuracy"] == 0.5


# ----------------------------------------------------------------------------- temporal order
def test_temporal_order_symbols_positions_and_class():
    T, B = 100, 3000
    x, y, m = temporal_order.generate(T, B, seed=6)
    ids = x.argmax(2)
    assert np.all(x.sum(2) == 1)                                          # one-hot
    sym = {s: i for i, s in enumerate(temporal_order.SYMBOLS)}
    assert np.all(ids[0] == sym["E"]) and np.all(ids[-1] == sym["B"])
    relevant = (ids == sym["X"]) | (ids == sym["Y"])
    np.testing.assert_array_equal(relevant.sum(0), 2 * np.ones(B))
    t = np.sort(np.argwhere(relevant.T)[:, 1].reshape(B, 2), axis=1)
    assert t[:, 0].min() >= 10 and t[:, 0].max() <= 20                    # H&S: t1 in [10, 20]
    assert t[:, 1].min() >= 50 and t[:, 1].max() <= 60                    # H&S: t2 in [50, 60]
    first_y = ids[t[:, 0], np.arange(B)] == sym["Y"]
    second_y = ids[t[:, 1], np.arange(B)] == sym["Y"]
    np.testing.assert_array_equal(y[-1], 2 * first_y + second_y)           # XX, XY, YX, YY -> 0..3
    assert np.bincount(y[-1], minlength=4).min() > B / 4 * 0.85           # classes balanced


def test_temporal_order_error_counts_argmax_mistakes():
    x, y, m = temporal_order.generate(20, 4, seed=0)
    logits = np.zeros((20, 4, 4))
    logits[-1, np.arange(4), y[-1]] = 5.0
    logits[-1, 0] = [0, 0, 0, 0]
    logits[-1, 0, (y[-1, 0] + 1) % 4] = 5.0                                 # one wrong
    metrics = temporal_order.score(logits, y, m)
    assert metrics["error"] == 0.25 and not temporal_order.solved(metrics)


# ----------------------------------------------------------------------------- copying
def test_copying_layout():
    T, B = 15, 200
    x, y, m = copying.generate(T, B, seed=7)
    ids = x.argmax(2)
    assert x.shape[0] == T + 20 and np.all(m == 1)
    data = ids[:10]
    assert data.min() >= 1 and data.max() <= 8                           # a_1..a_8
    assert np.all(ids[10:10 + T - 1] == copying.BLANK)                     # T - 1 blanks
    assert np.all(ids[10 + T - 1] == copying.DELIMITER)                    # then a_9
    assert np.all(ids[10 + T:] == copying.BLANK)                           # then 10 blanks
    assert np.all(y[:T + 10] == copying.BLANK)
    np.testing.assert_array_equal(y[T + 10:], data)                        # the copy, last 10 steps


def test_copying_score_is_bptt_loss_over_length():
    x, y, m = copying.generate(5, 8, seed=1)
    net = Network(10, 6, 10, seed=2)
    result = net.forward_backward(x, y, m)
    assert copying.score(result.outputs, y, m)["cross_entropy"] == pytest.approx(result.loss / 25, rel=1e-12)


def test_copying_baseline_formula():
    for T in (1, 20, 100, 1000):
        assert copying.baseline(T)["cross_entropy"] == pytest.approx(10 * np.log(8) / (T + 20))


# ----------------------------------------------------------------------------- latch
@pytest.mark.parametrize("info_steps", [1, 3])
def test_latch_first_steps_carry_class_rest_is_noise(info_steps):
    T, B = 30, 4000
    x, y, m = latch.generate(T, B, seed=8, info_steps=info_steps)
    label = y[-1, :, 0]
    assert set(np.unique(label)) == {-1.0, 1.0}
    np.testing.assert_array_equal(x[:info_steps, :, 0], np.broadcast_to(label, (info_steps, B)))
    noise = x[info_steps:, :, 0]
    assert noise.mean() == pytest.approx(0.0, abs=0.01)
    assert noise.var() == pytest.approx(latch.NOISE_VARIANCE, rel=0.03)
    assert abs(np.corrcoef(noise[-1], label)[0, 1]) < 0.05                 # noise says nothing of the class


def test_latch_accuracy_is_sign_agreement():
    x, y, m = latch.generate(10, 4, seed=0)
    out = np.zeros_like(y)
    out[-1, :, 0] = y[-1, :, 0] * np.array([0.1, 2.0, -0.3, 1.0])
    assert latch.score(out, y, m)["accuracy"] == 0.75
