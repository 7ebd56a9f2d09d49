"""The adding problem, in its two published forms. Many-to-one, squared error.

Each step carries two inputs, x_t = (value_t, marker_t); exactly two values are marked and
the network must output their sum at the end of the sequence, after T steps of distractors.

**Le, Jaitly & Hinton (2015)**, "A Simple Way to Initialize Recurrent Networks of Rectified
Linear Units", sec. 4.1 (form ``"le"``, task name ``adding``):

    value_t ~ U[0, 1],  marker_t in {0, 1};  one 1 uniformly in the first half
    (t < T/2), the other uniformly in the second half (t >= T/2);
    target  y = X1 + X2,   metric: MSE at the last step.
    Trivial baseline: always predict 1 (the mean of y): MSE = Var(X1 + X2) = 2/12 ~ 0.167.

**Hochreiter & Schmidhuber (1997)**, "Long Short-Term Memory", sec. 5.4 Experiment 4
(form ``"hs"``, task name ``adding-hs``):

    value_t ~ U[-1, 1],  marker_t in {-1, 0, 1}; marker -1 on the first and last pair;
    X1 marked among the first ten pairs, X2 among the first T/2 - 1 still unmarked pairs
    (a marked first pair has its value set to 0, as in the paper);
    target  y = 0.5 + (X1 + X2) / 4   (the sum scaled to [0, 1]);
    a sequence is processed correctly if |y^ - y| < 0.04 at the end.
    The paper draws lengths in [T, T + T/10]: ``vary_length=True`` does that (the arrays are
    padded with zeros to T + T//10 steps and the mask marks each sequence's own last step;
    padding after the end cannot change the answer of a causal network). Default: length T.
    Trivial baseline: always predict 0.5; its accuracy and MSE are in ``baseline``.

bptt's squared error is 1/2 (z - y)^2 averaged over the batch, so with one output and a
mask at the end the training loss is MSE / 2: ``score`` reports the papers' MSE directly.
"""

from __future__ import annotations

import numpy as np

from ._common import final_outputs, final_targets, last_step_mask, make_rng, seq_len

FORMS = ("le", "hs")
HS_TOLERANCE = 0.04            # H&S 1997: correct if the absolute error at the end is below 0.04


def generate(T: int, batch: int, seed=0, *, form: str = "le", vary_length: bool = False):
    """-> inputs (T', B, 2) float, targets (T', B, 1) float, mask (T', B); T' = T unless
    ``form="hs", vary_length=True`` (then T' = T + T//10)."""
    from .. import validation as check
    form = check.one_of("form", form, FORMS)
    B = check.positive_int("batch", batch)
    rng = make_rng(seed)
    if form == "le":
        T = seq_len(T, 2)
        return _generate_le(T, B, rng)
    T = seq_len(T, 4)
    return _generate_hs(T, B, rng, bool(vary_length))


def _generate_le(T: int, B: int, rng: np.random.Generator):
    half = T // 2
    values = rng.uniform(0.0, 1.0, size=(T, B))                  # (T, B)
    first = rng.integers(0, half, size=B)                        # marker 1 in the first half
    second = rng.integers(half, T, size=B)                       # marker 2 in the second half
    cols = np.arange(B)
    markers = np.zeros((T, B))
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    inputs = np.stack([values, markers], axis=2)                 # (T, B, 2)
    targets = np.zeros((T, B, 1))
    targets[T - 1, :, 0] = values[first, cols] + values[second, cols]   # y = X1 + X2
    return inputs, targets, last_step_mask(np.full(B, T - 1), T)


def _generate_hs(T: int, B: int, rng: np.random.Generator, vary_length: bool):
    total = T + T // 10 if vary_length else T
    lengths = rng.integers(T, total + 1, size=B) if vary_length else np.full(B, T)
    cols = np.arange(B)
    values = rng.uniform(-1.0, 1.0, size=(total, B))
    values[np.arange(total)[:, None] >= lengths[None, :]] = 0.0   # padding after each end
    markers = np.zeros((total, B))
    markers[0, cols] = -1.0                                       # first and last pair: -1
    markers[lengths - 1, cols] = -1.0
    first = rng.integers(0, 10, size=B)                           # X1: one of the first ten
    # X2: one of the first T/2 - 1 pairs that are still unmarked: draw k among T/2 - 1 slots
    # and skip over X1's position.
    k = rng.integers(0, T // 2 - 1, size=B)
    second = k + (k >= first)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    values[0, (first == 0) | (second == 0)] = 0.0                 # "we set X1 to zero"
    inputs = np.stack([values, markers], axis=2)                  # (total, B, 2)
    targets = np.zeros((total, B, 1))
    targets[lengths - 1, cols, 0] = 0.5 + (values[first, cols] + values[second, cols]) / 4.0
    return inputs, targets, last_step_mask(lengths - 1, total)


def score(outputs, targets, mask, *, form: str = "le") -> dict:
    """The papers' measures at each sequence's last step: ``mse`` (mean of (y^ - y)^2,
    = 2 x bptt's loss here) and, for the H&S form, ``accuracy`` = share with |error| < 0.04."""
    pred = final_outputs(outputs, mask)[:, 0]                     # (B,)
    want = final_targets(targets, mask)[:, 0]
    err = pred - want
    result = {"mse": float(np.mean(err * err))}
    if form == "hs":
        result["accuracy"] = float(np.mean(np.abs(err) < HS_TOLERANCE))
    return result


def trivial_outputs(inputs, targets, mask, *, form: str = "le") -> np.ndarray:
    """The memoryless answer: the target's mean (1 for "le", 0.5 for "hs") at every step."""
    return np.full(np.shape(targets), 1.0 if form == "le" else 0.5)


def baseline(T: int, *, form: str = "le", vary_length: bool = False) -> dict:
    """Analytic scores of ``trivial_outputs``.

    "le": Var(X1 + X2) with X ~ U[0,1] is 2/12.
    "hs": the error is (X1 + X2)/4. A marked first pair zeroes its value; X1 is there with
    probability 1/10, X2 with probability (9/10) / (T/2 - 1). With both values U[-1,1] the sum
    is triangular on [-2, 2] and P(|X1 + X2| < a) = a - a^2/4 (a = 4 x 0.04 = 0.16); with one
    value zeroed it is P(|X| < a) = a. MSE = (E[X1^2] + E[X2^2]) / 16, E[X^2] = 1/3 unless zeroed.
    """
    if form == "le":
        return {"mse": 2.0 / 12.0}
    p1_zero = 1.0 / 10.0
    p2_zero = (9.0 / 10.0) / (T // 2 - 1)
    p_one_zero = p1_zero + p2_zero                                # never both: positions differ
    a = 4 * HS_TOLERANCE
    accuracy = (1 - p_one_zero) * (a - a * a / 4) + p_one_zero * a
    mse = ((1 - p1_zero) / 3.0 + (1 - p2_zero) / 3.0) / 16.0
    return {"mse": mse, "accuracy": accuracy}


def solved(metrics: dict, *, form: str = "le") -> bool:
    """H&S 1997 stop training when the average training error is below 0.01 and the 2000
    most recent sequences were processed correctly (|error| < 0.04); their Table 7 then
    counts wrong answers on 2560 test sequences. We call it solved when at least 99.9% of
    fresh sequences are within 0.04. Le et al. give no threshold -- they compare the MSE
    with the 0.167 baseline; we call it solved below 0.01 (our threshold, stated as such)."""
    if form == "hs":
        return metrics["accuracy"] >= 0.999
    return metrics["mse"] < 0.01
