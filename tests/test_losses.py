"""Cross-entropy against an independent float64 reference, on both sides of its shift choice:
one shared max while the logits' spread is <= SHARED_SHIFT_SPREAD, per-row maxima beyond (where a
shared shift would underflow whole rows to exp = 0 and log 0 = -inf)."""

import numpy as np
import pytest

from bptt import losses


def _reference(logits, targets, mask):
    z = logits.astype(np.float64)
    T, B, O = z.shape
    m = z.max(axis=2, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=2, keepdims=True))
    w = (np.ones((T, B)) if mask is None else mask) / B
    loss = -np.sum(w * np.take_along_axis(logp, targets[..., None], axis=2)[..., 0])
    grad = np.exp(logp) * w[..., None]
    np.put_along_axis(grad, targets[..., None], np.take_along_axis(grad, targets[..., None], axis=2) - w[..., None], axis=2)
    return loss, grad


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("spread", [3.0, 25.0, 200.0, 5000.0])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_cross_entropy_matches_reference(dtype, rtol, spread, masked, in_place):
    rng = np.random.default_rng(int(spread))
    T, B, O = 7, 5, 11
    logits = rng.uniform(-1, 1, (T, B, O))
    logits[:, :, 0] += spread / 2                 # rows far apart: the spread test decides the shift
    logits[2, 1] -= spread                        # one row far below the rest
    logits = logits.astype(dtype)
    targets = rng.integers(0, O, (T, B))
    mask = rng.uniform(0, 2, (T, B)).astype(dtype) if masked else None
    want_loss, want_grad = _reference(logits, targets, mask)
    loss, grad = losses.softmax_cross_entropy(logits.copy(), targets, mask, overwrite_logits=in_place)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, want_loss, rtol=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=rtol * 1e-2)
    assert grad.dtype == dtype


def test_wide_spread_takes_the_per_row_shift(monkeypatch):
    """With a shared shift only, a row 5000 below the maximum would give exp = 0 everywhere:
    the spread test must send it to per-row maxima (this test fails if it does not)."""
    logits = np.zeros((1, 2, 3))
    logits[0, 1] = -5000.0
    targets = np.array([[0, 1]])
    loss, grad = losses.softmax_cross_entropy(logits, targets)
    np.testing.assert_allclose(loss, np.log(3.0), rtol=1e-12)   # both rows are uniform over 3 classes
    monkeypatch.setattr(losses, "SHARED_SHIFT_SPREAD", np.inf)
    with np.errstate(all="ignore"):
        broken, _ = losses.softmax_cross_entropy(logits, targets)
    assert not np.isfinite(broken)


def test_nan_logits_stay_nan():
    logits = np.zeros((2, 1, 3))
    logits[1, 0, 2] = np.nan
    with np.errstate(invalid="ignore"):
        loss, grad = losses.softmax_cross_entropy(logits, np.array([[0], [1]]))
    assert np.isnan(loss) and np.isnan(grad[1]).all() and np.isfinite(grad[0]).all()
