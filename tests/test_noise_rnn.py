"""Recurrent dropout and zoneout (layers/noise.py) in the RNN, minGRU and minLSTM layers' reference
loops: float64 central differences with the masks held fixed and random upstream gradients dE/dh_t
and dE/dh_T, through the inputs, h0 and every parameter; the masks' limits (an all-ones recurrent mask
and all-zeros zoneout masks are no regulariser at all, bit for bit; all-ones zoneout masks freeze
h0); the min cells' closed-form recurrence weights under zoneout; and the refused recurrent dropout."""

import numpy as np
import pytest

from bptt import kernels
from bptt.gradcheck import numerical_gradient, relative_error
from bptt.layers.mingru import MinGRULayer
from bptt.layers.minlstm import MinLSTMLayer
from bptt.layers.noise import LayerNoise
from bptt.layers.rnn import RNNLayer

T, B, I, H = 5, 3, 3, 4
TOL = 1e-7
CELLS = {
    "rnn-tanh": lambda rng: RNNLayer(I, H, nonlinearity="tanh", rng=rng),
    "rnn-relu": lambda rng: RNNLayer(I, H, nonlinearity="relu", rng=rng),
    "mingru": lambda rng: MinGRULayer(I, H, rng=rng),
    "minlstm": lambda rng: MinLSTMLayer(I, H, rng=rng),
}
MIN_CELLS = ["mingru", "minlstm"]


def _masks(rng, kind):
    """A LayerNoise of the kind asked: training masks drawn as Network would (keep-probability 0.7
    for recurrent dropout, zoneout rate 0.4), or evaluation-mode zoneout (d_t = p = 0.3)."""
    keep = 0.7
    recurrent = (rng.random((B, H)) < keep) / keep
    zoneout = ((rng.random((T, B, H)) < 0.4).astype(np.float64),)
    return {
        "recurrent": LayerNoise(recurrent=recurrent),
        "zoneout": LayerNoise(zoneout=zoneout, zoneout_p=0.4),
        "both": LayerNoise(recurrent=recurrent, zoneout=zoneout, zoneout_p=0.4),
        "zoneout-eval": LayerNoise(zoneout=None, zoneout_p=0.3),
    }[kind]


def _problem(seed, ids=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I))
    return (x, rng.standard_normal((B, H)), rng.standard_normal((T, B, H)),   # x, h0, dE/dh_t
            rng.standard_normal((B, H)))                                       # dE/dh_T


def _backward(layer, x, h0, dh, dlast, **options):
    h, (h_T,), cache = layer.forward(x, (h0,))
    grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    dx, (dh0,), total = layer.backward(dh.copy(), None if dlast is None else (dlast,), cache, grads, **options)
    return h, h_T, dx, dh0, total, grads


CASES = [(cell, kind) for cell in CELLS for kind in ("recurrent", "zoneout", "both", "zoneout-eval")
         if not (cell in MIN_CELLS and kind in ("recurrent", "both"))]


@pytest.mark.parametrize("mode", ["reference", "numba"])
@pytest.mark.parametrize("cell,kind", CASES)
def test_finite_differences_with_fixed_masks(mode, cell, kind):
    """E = sum_t dh_t . h_t + dlast . h_T for random dh, dlast; the masks fixed, so E is smooth in
    every input, h0 and every parameter (relu: no pre-activation lands within eps of its kink here)."""
    if mode == "numba":
        pytest.importorskip("numba")       # noise must take the reference loop even when numba is on
    rng = np.random.default_rng(7)
    layer = CELLS[cell](rng)
    layer.noise = _masks(rng, kind)
    x, h0, dh, dlast = _problem(8)

    def objective():
        h, (h_T,), _ = layer.forward(x, (h0,))
        return float(np.sum(dh * h) + np.sum(dlast * h_T))

    with kernels.using(mode):
        h, h_T, dx, dh0, total, grads = _backward(layer, x, h0, dh, dlast)
        for name, p in layer.params.items():
            assert relative_error(grads[name], numerical_gradient(objective, p)) < TOL, name
        assert relative_error(dx, numerical_gradient(objective, x)) < TOL, "x"
        assert relative_error(dh0, numerical_gradient(objective, h0)) < TOL, "h0"
    # dh_total[T-1] = dE/dh_{T-1} = dh from above + dE/dh_T (nothing later reads h_T)
    np.testing.assert_allclose(total[-1], dh[-1] + dlast, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell,kind", [("rnn-tanh", "both"), ("mingru", "zoneout"), ("minlstm", "zoneout")])
def test_finite_differences_catch_a_gradient_without_the_noise(cell, kind):
    """The check can fail: the masks are used in forward but backward is handed the layer's cache
    without them (the un-regularised backward) -- the gradients must then be visibly wrong."""
    rng = np.random.default_rng(7)
    layer = CELLS[cell](rng)
    noise = _masks(rng, kind)
    x, h0, dh, dlast = _problem(8)
    with kernels.using("reference"):
        layer.noise = noise
        _, _, cache = layer.forward(x, (h0,))
        if hasattr(cache, "noise"):
            cache.noise, cache.cand = None, None                         # RNN: forget the masks
        else:
            cache.d = None                                               # min cells: forget d_t
        grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
        layer.backward(dh.copy(), (dlast,), cache, grads)

        def objective():
            h, (h_T,), _ = layer.forward(x, (h0,))
            return float(np.sum(dh * h) + np.sum(dlast * h_T))

        worst = max(relative_error(grads[k], numerical_gradient(objective, p)) for k, p in layer.params.items())
    assert worst > 1e-3


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_neutral_masks_are_bit_for_bit_no_regulariser(cell, ids):
    """An all-ones recurrent mask (RNN) and all-zeros zoneout masks change no bit of the reference's
    outputs, dx, dE/dh0, dh_total or gradients."""
    rng = np.random.default_rng(3)
    layer = CELLS[cell](rng)
    x, h0, dh, dlast = _problem(4, ids)
    ones = np.ones((B, H)) if cell.startswith("rnn") else None
    neutral = LayerNoise(recurrent=ones, zoneout=(np.zeros((T, B, H)),), zoneout_p=0.5)
    with kernels.using("reference"):
        plain = _backward(layer, x, h0, dh, dlast)
        layer.noise = neutral
        noisy = _backward(layer, x, h0, dh, dlast)
    for name, a, b in zip(("h", "h_T", "dx", "dh0", "dh_total"), plain[:5], noisy[:5]):
        if a is None:
            assert b is None, name
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)
    for name in plain[5]:
        np.testing.assert_array_equal(noisy[5][name], plain[5][name], err_msg=name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_all_ones_zoneout_keeps_h0_at_every_step(cell):
    """d_t = 1 everywhere: every unit keeps its previous value, so h_t = h0 exactly; then the cell's
    update is never used (every gradient 0) and dE/dh0 collects every dE/dh_t and dE/dh_T."""
    rng = np.random.default_rng(5)
    layer = CELLS[cell](rng)
    x, h0, dh, dlast = _problem(6)
    layer.noise = LayerNoise(zoneout=(np.ones((T, B, H)),), zoneout_p=0.5)
    with kernels.using("reference"):
        h, h_T, dx, dh0, _, grads = _backward(layer, x, h0, dh, dlast)
    for t in range(T):
        np.testing.assert_array_equal(h[t], h0, err_msg=f"step {t}")
    np.testing.assert_array_equal(h_T, h0)
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(dx, 0.0)
    np.testing.assert_allclose(dh0, dh.sum(axis=0) + dlast, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("kind", ["zoneout", "zoneout-eval"])
def test_min_cells_recurrence_weights_are_the_zoned_ones(cell, kind):
    """recurrence_weights(cache) (the closed-form lag diagnostics' a_t) is the diagonal of
    dh_t/dh_{t-1} under zoneout: dE/dh0 for E = g . h_T is g * prod_t a_t, from the layer's backward."""
    rng = np.random.default_rng(9)
    layer = CELLS[cell](rng)
    layer.noise = _masks(rng, kind)
    x, h0, _, g = _problem(10)
    with kernels.using("numba" if kernels._numba_importable() else "numpy"):
        _, _, _, dh0, _, _ = _backward(layer, x, h0, np.zeros((T, B, H)), g)
        _, _, cache = layer.forward(x, (h0,))
    a = layer.recurrence_weights(cache)
    np.testing.assert_allclose(dh0, g * np.prod(a, axis=0), rtol=1e-12, atol=1e-15)
    layer.noise = None
    _, _, clean = layer.forward(x, (h0,))
    assert not np.allclose(layer.recurrence_weights(clean), a)       # zoneout really changed a_t


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_cells_refuse_recurrent_dropout(cell):
    layer = CELLS[cell](np.random.default_rng(0))
    x, h0, _, _ = _problem(0)
    layer.noise = LayerNoise(recurrent=np.ones((B, H)))
    with pytest.raises(ValueError, match="recurrent_dropout needs a recurrent matrix W; minGRU/minLSTM have none"):
        layer.forward(x, (h0,))
