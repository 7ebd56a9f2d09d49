"""The latch and two-sequence problems: hold one bit for T steps through noise.
Many-to-one, one input, one output, squared error.

Bengio, Simard & Frasconi (1994), "Learning Long-Term Dependencies with Gradient Descent is
Difficult": a sequence's class depends only on its first L values; the rest is
noise, so the network must "latch" the class and keep it through T steps. They report the
share of trials that learn it (their density of training convergence) as T grows, for
several training algorithms. We use the fixed-input forms as Hochreiter & Schmidhuber
(1997, sec. 5.2, and "Bridging long time lags by weight guessing", 1996) restate them:

    class c in {+1, -1} with probability 1/2 each,
    u_t = c                        for t < L        (L = 1: the latch; L = 3: two-sequence),
    u_t ~ N(0, 0.2)  (variance)    for L <= t < T,
    target at t = T - 1:  y = c    (H&S use targets 1.0 / 0.0 for the two-sequence form;
                                     +-1 here for both, so one decision rule fits: sign(y^)).

A sequence is classified right when sign(y^) = c. A trial (one seed) succeeds when at least
99% of fresh sequences are right (our reading of "converged"; BSF94 count a trial as solved
when training reaches their stopping criterion). ``success rate against T`` = share of seeds
that succeed at each T (``bptt experiment latch --T 10,20,50,...``).
Trivial baseline: predict 0 (the mean): MSE 1, chance accuracy 1/2.
"""

from __future__ import annotations

import numpy as np

from ._common import final_outputs, final_targets, last_step_mask, make_rng, seq_len

NOISE_VARIANCE = 0.2
SUCCESS_ACCURACY = 0.99


def generate(T: int, batch: int, seed=0, *, info_steps: int = 1, noise_variance: float = NOISE_VARIANCE):
    """-> inputs (T, B, 1) float, targets (T, B, 1) float (+-1 at t = T-1), mask (T, B)."""
    from .. import validation as check
    info_steps = check.positive_int("info_steps", info_steps)
    noise_variance = check.positive_float("noise_variance", noise_variance, allow_zero=True)
    T = seq_len(T, info_steps + 1)
    B = check.positive_int("batch", batch)
    rng = make_rng(seed)
    label = rng.choice(np.array([-1.0, 1.0]), size=B)                      # c, (B,)
    inputs = rng.normal(0.0, np.sqrt(noise_variance), size=(T, B, 1))     # noise everywhere ...
    inputs[:info_steps, :, 0] = label                                     # ... but the first L steps
    targets = np.zeros((T, B, 1))
    targets[T - 1, :, 0] = label
    return inputs, targets, last_step_mask(np.full(B, T - 1), T)


def score(outputs, targets, mask, **_) -> dict:
    """``accuracy``: share with sign(y^) = c; ``mse``: mean (y^ - c)^2 (= 2 x bptt's loss here)."""
    pred = final_outputs(outputs, mask)[:, 0]
    want = final_targets(targets, mask)[:, 0]
    return {"accuracy": float(np.mean(np.where(pred > 0, 1.0, -1.0) == want)),
            "mse": float(np.mean((pred - want) ** 2))}


def trivial_outputs(inputs, targets, mask, **_) -> np.ndarray:
    """Always 0, the mean target (sign 0 counts as class -1: right half the time)."""
    return np.zeros(np.shape(targets))


def baseline(T: int, **_) -> dict:
    return {"accuracy": 0.5, "mse": 1.0}


def solved(metrics: dict, **_) -> bool:
    return metrics["accuracy"] >= SUCCESS_ACCURACY
