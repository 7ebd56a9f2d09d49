"""Recurrent dropout and zoneout inside the LSTM's reference loop (layers/noise.py's contract,
layers/lstm.py's equations): float64 central differences with the masks held fixed and random
upstream gradients on every h_t and on (h_T, c_T), through the inputs, h0, c0 and every parameter;
the neutral masks give exactly the plain LSTM; all-ones zoneout masks freeze the state."""

import numpy as np
import pytest

from bptt import kernels
from bptt.functional import sigmoid
from bptt.layers.lstm import LSTMLayer, LSTMReferenceCache
from bptt.layers.noise import LayerNoise
from bptt.layers.readout import ChunkedReadoutGrad
from gated_layer_check import layer_gradient_errors, random_layer_inputs

TOL = 1e-6
T, B, I, H = 4, 3, 3, 4
P = 0.3                                          # the dropout / zoneout rate of the masks below


def _layer(seed=0, bias=True):
    return LSTMLayer(I, H, bias=bias, rng=np.random.default_rng(seed), dtype=np.float64)


def _recurrent_mask(rng):
    """Gal & Ghahramani's inverted keep-mask, (B, H) in {0, 1/(1-p)} -- some of each."""
    return (rng.random((B, H)) >= P) / (1 - P)


def _zoneout_masks(rng):
    """One (T, B, H) 0/1 mask per state (h, c), 1 = keep the previous value."""
    return tuple((rng.random((T, B, H)) < P).astype(np.float64) for _ in range(2))


def _noise(kind, rng):
    if kind == "recurrent":
        return LayerNoise(recurrent=_recurrent_mask(rng))
    if kind == "zoneout":
        return LayerNoise(zoneout=_zoneout_masks(rng), zoneout_p=P)
    if kind == "both":
        return LayerNoise(recurrent=_recurrent_mask(rng), zoneout=_zoneout_masks(rng), zoneout_p=P)
    if kind == "evaluation zoneout":
        return LayerNoise(zoneout=None, zoneout_p=P)                # d_t = p, no masks
    raise ValueError(kind)


KINDS = ["recurrent", "zoneout", "both", "evaluation zoneout"]


def _forward_backward(layer, x, state0, dh, dstate, **options):
    h, final, cache = layer.forward(x, state0)
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    dx, dstate0, dh_total = layer.backward(dh, dstate, cache, grads, **options)
    return h.copy(), final, cache, grads, dx, dstate0, dh_total


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_finite_differences_with_the_masks_fixed(kind, ids, bias):
    rng = np.random.default_rng(KINDS.index(kind) + 10 * ids)
    layer = _layer(seed=3, bias=bias)
    layer.noise = _noise(kind, rng)
    if kind != "evaluation zoneout":             # the masks really mask something: some of each value
        masks = ([layer.noise.recurrent] if layer.noise.recurrent is not None else []) + list(layer.noise.zoneout or ())
        assert all(0 < np.count_nonzero(m) < m.size for m in masks)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    errors = layer_gradient_errors(layer, x, state0, seed=5)
    expected = {"U", "W", "h0", "c0"} | ({"b"} if bias else set()) | (set() if ids else {"x"})
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("kind", KINDS)
def test_the_finite_differences_can_fail(kind, monkeypatch):
    """A backward that forgets zoneout's (or dropout's) factor on one path fails the check above:
    here the reference backward is handed a cache without the noise forward used."""
    rng = np.random.default_rng(1)
    layer = _layer(seed=3)
    layer.noise = _noise(kind, rng)
    x, state0 = random_layer_inputs(layer, T, B, rng)
    backward = LSTMLayer.backward

    def without_noise(self, dh, dstate, cache, grads, **options):
        cache = LSTMReferenceCache(cache.x, cache.hs, cache.cs, cache.gates, cache.tanh_c, None)
        return backward(self, dh, dstate, cache, grads, **options)

    monkeypatch.setattr(LSTMLayer, "backward", without_noise)
    assert max(layer_gradient_errors(layer, x, state0, seed=5).values()) > 1e-3


def test_forward_matches_the_equations_written_out():
    """Two steps computed directly from layers/noise.py's equations: W (m h_{t-1}), c zoned with
    d^c, h~ = o tanh(c~) of the un-zoned candidate, h zoned with d^h; c_{t-1} itself is not masked."""
    rng = np.random.default_rng(2)
    layer = _layer()
    noise = layer.noise = _noise("both", rng)
    x, (h, c) = random_layer_inputs(layer, T, B, rng)
    U, W, b = layer.params["U"], layer.params["W"], layer.params["b"]
    out, (hT, cT), _ = layer.forward(x, (h, c))
    for t in range(T):
        a = x[t] @ U.T + (noise.recurrent * h) @ W.T + b
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        d_h, d_c = noise.zoneout[0][t], noise.zoneout[1][t]
        h, c = d_h * h + (1 - d_h) * h_new, d_c * c + (1 - d_c) * c_new
        np.testing.assert_allclose(out[t], h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(hT, h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(cT, c, rtol=1e-13, atol=1e-15)


def _upstream(rng):
    return rng.standard_normal((T, B, H)), (rng.standard_normal((B, H)), rng.standard_normal((B, H)))


@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_neutral_masks_give_exactly_the_plain_lstm(ids):
    """An all-ones recurrent mask and all-zeros zoneout masks: every output and gradient bit for
    bit the reference LSTM's without noise."""
    rng = np.random.default_rng(4)
    layer = _layer()
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    dh, dstate = _upstream(rng)
    with kernels.using("reference"):
        plain = _forward_backward(layer, x, state0, dh.copy(), dstate)
    neutral = LayerNoise(recurrent=np.ones((B, H)), zoneout=(np.zeros((T, B, H)), np.zeros((T, B, H))), zoneout_p=P)
    for noise in (neutral, LayerNoise(recurrent=np.ones((B, H))),
                  LayerNoise(zoneout=(np.zeros((T, B, H)), np.zeros((T, B, H))), zoneout_p=P)):
        layer.noise = noise
        masked = _forward_backward(layer, x, state0, dh.copy(), dstate)
        (h_a, final_a, _, grads_a, dx_a, d0_a, total_a), (h_b, final_b, _, grads_b, dx_b, d0_b, total_b) = plain, masked
        np.testing.assert_array_equal(h_b, h_a)
        for a, b in [*zip(final_a, final_b), *zip(d0_a, d0_b), (total_a, total_b)]:
            np.testing.assert_array_equal(b, a)
        assert (dx_a is None) == (dx_b is None) == ids
        if not ids:
            np.testing.assert_array_equal(dx_b, dx_a)
        for name in grads_a:
            np.testing.assert_array_equal(grads_b[name], grads_a[name], err_msg=name)


def test_all_ones_zoneout_masks_keep_the_initial_state():
    """d = 1 everywhere: h_t = h0 and c_t = c0 at every step, so dE/dh0 = dE/dh_T + sum_t dE/dh_t,
    dE/dc0 = dE/dc_T, and no parameter or input gets any gradient."""
    rng = np.random.default_rng(5)
    layer = _layer()
    layer.noise = LayerNoise(zoneout=(np.ones((T, B, H)), np.ones((T, B, H))), zoneout_p=P)
    x, (h0, c0) = random_layer_inputs(layer, T, B, rng)
    dh, dstate = _upstream(rng)
    h, (hT, cT), cache, grads, dx, (dh0, dc0), dh_total = _forward_backward(layer, x, (h0, c0), dh.copy(), dstate)
    for t in range(T):
        np.testing.assert_array_equal(h[t], h0)
        np.testing.assert_array_equal(cache.cs[t + 1], c0)
    np.testing.assert_array_equal(hT, h0)
    np.testing.assert_array_equal(cT, c0)
    np.testing.assert_allclose(dh0, dstate[0] + dh.sum(axis=0), rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(dc0, dstate[1])
    for name, g in [*grads.items(), ("x", dx)]:
        np.testing.assert_array_equal(g, 0.0, err_msg=name)


def test_backward_reads_the_noise_from_the_cache():
    """Network sets layer.noise for one forward call only: backward takes the masks forward used
    from its cache, whatever layer.noise is by then; and any backward option still holds."""
    rng = np.random.default_rng(6)
    layer = _layer()
    layer.noise = _noise("both", rng)
    x, state0 = random_layer_inputs(layer, T, B, rng)
    dz, V = rng.standard_normal((T, B, 5)), rng.standard_normal((5, H))
    dh = np.dot(dz.reshape(T * B, 5), V).reshape(T, B, H)
    _, dstate = _upstream(rng)
    expected = _forward_backward(layer, x, state0, dh.copy(), dstate)
    _, _, cache = layer.forward(x, state0)
    layer.noise = None
    for chunked in (False, True):
        grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
        given = ChunkedReadoutGrad(dz, V, H) if chunked else dh.copy()
        dx, d0, total = layer.backward(given, dstate, cache, grads, overwrite_dh=True)
        assert (total is None) == chunked
        if not chunked:
            assert total is given
            np.testing.assert_allclose(total, expected[6], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(dx, expected[4], rtol=1e-13, atol=1e-14)
        for a, b in zip(d0, expected[5]):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
        for name in grads:
            np.testing.assert_allclose(grads[name], expected[3][name], rtol=1e-13, atol=1e-14, err_msg=name)
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    dx, _, _ = layer.backward(dh.copy(), None, cache, grads, input_grad=False)
    assert dx is None


def test_masks_of_the_wrong_shape_are_refused():
    rng = np.random.default_rng(7)
    layer = _layer()
    x, state0 = random_layer_inputs(layer, T, B, rng)
    layer.noise = LayerNoise(recurrent=np.ones((B, H + 1)))
    with pytest.raises(ValueError, match=r"noise.recurrent must have shape \(3, 4\), got \(3, 5\)"):
        layer.forward(x, state0)
    layer.noise = LayerNoise(zoneout=(np.zeros((T, B, H)),), zoneout_p=P)
    with pytest.raises(ValueError, match="2 zoneout masks"):
        layer.forward(x, state0)
    layer.noise = LayerNoise(zoneout=(np.zeros((T, B, H)), np.zeros((T - 1, B, H))), zoneout_p=P)
    with pytest.raises(ValueError, match=r"zoneout mask of c must have shape \(4, 3, 4\), got \(3, 3, 4\)"):
        layer.forward(x, state0)


# ---------------------------------------------------- the layer-normalised LSTM and the LSTMP
# The same regularisers in their loops (layers/lnlstm.py, layers/lstmp.py): masks of h (B, P) and
# of c (B, H) for the LSTMP.

def _lnlstm(seed=0, bias=True):
    from bptt.layers.lnlstm import LNLSTMLayer
    layer = LNLSTMLayer(I, H, bias=bias, rng=np.random.default_rng(seed), dtype=np.float64)
    rng = np.random.default_rng(seed + 100)                   # LN gains and shifts away from 1 and 0
    for name, p in layer.params.items():
        if name.startswith("ln_"):
            p += 0.3 * rng.standard_normal(p.shape)
    return layer


def _lstmp(seed=0, bias=True):
    from bptt.layers.lstmp import LSTMPLayer
    return LSTMPLayer(I, H, 2, bias=bias, rng=np.random.default_rng(seed), dtype=np.float64)


FAMILY = {"lnlstm": _lnlstm, "lstmp": _lstmp}


def _family_noise(kind, layer, rng):
    """As _noise, with each mask the shape of its state (h: (B, P) for the LSTMP)."""
    sizes = [s.shape[1] for s in layer.zero_state(B)]
    recurrent = (rng.random((B, sizes[0])) >= P) / (1 - P)
    zoneout = tuple((rng.random((T, B, size)) < P).astype(np.float64) for size in sizes)
    return {"recurrent": LayerNoise(recurrent=recurrent), "zoneout": LayerNoise(zoneout=zoneout, zoneout_p=P),
            "both": LayerNoise(recurrent=recurrent, zoneout=zoneout, zoneout_p=P),
            "evaluation zoneout": LayerNoise(zoneout_p=P)}[kind]


@pytest.mark.parametrize("cell", list(FAMILY))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_family_finite_differences_with_the_masks_fixed(cell, kind, ids):
    rng = np.random.default_rng(KINDS.index(kind) + 10 * ids)
    layer = FAMILY[cell](seed=3)
    layer.noise = _family_noise(kind, layer, rng)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    errors = layer_gradient_errors(layer, x, state0, seed=5)
    assert set(errors) == set(layer.params) | {"h0", "c0"} | (set() if ids else {"x"})
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("cell", list(FAMILY))
@pytest.mark.parametrize("kind", KINDS)
def test_family_finite_differences_can_fail(cell, kind):
    """The check above notices a backward that ignores the masks (the cache's noise dropped)."""
    rng = np.random.default_rng(1)
    layer = FAMILY[cell](seed=3)
    layer.noise = _family_noise(kind, layer, rng)
    x, state0 = random_layer_inputs(layer, T, B, rng)
    backward = type(layer).backward

    def without_noise(dh, dstate, cache, grads, **options):
        cache.noise = None
        return backward(layer, dh, dstate, cache, grads, **options)

    layer.backward = without_noise
    assert max(layer_gradient_errors(layer, x, state0, seed=5).values()) > 1e-3


@pytest.mark.parametrize("cell", list(FAMILY))
def test_family_neutral_masks_give_exactly_the_plain_cell(cell):
    rng = np.random.default_rng(4)
    layer = FAMILY[cell]()
    x, state0 = random_layer_inputs(layer, T, B, rng)
    sizes = [s.shape[1] for s in state0]
    dh = rng.standard_normal((T, B, sizes[0]))
    dstate = tuple(rng.standard_normal(s.shape) for s in state0)
    plain = _forward_backward(layer, x, state0, dh.copy(), dstate)
    layer.noise = LayerNoise(recurrent=np.ones((B, sizes[0])),
                             zoneout=tuple(np.zeros((T, B, size)) for size in sizes), zoneout_p=P)
    masked = _forward_backward(layer, x, state0, dh.copy(), dstate)
    (h_a, final_a, _, grads_a, dx_a, d0_a, total_a), (h_b, final_b, _, grads_b, dx_b, d0_b, total_b) = plain, masked
    for a, b in [(h_a, h_b), (dx_a, dx_b), (total_a, total_b), *zip(final_a, final_b), *zip(d0_a, d0_b)]:
        np.testing.assert_array_equal(b, a)
    for name in grads_a:
        np.testing.assert_array_equal(grads_b[name], grads_a[name], err_msg=name)


@pytest.mark.parametrize("cell", list(FAMILY))
def test_family_all_ones_zoneout_masks_keep_the_initial_state(cell):
    rng = np.random.default_rng(5)
    layer = FAMILY[cell]()
    x, (h0, c0) = random_layer_inputs(layer, T, B, rng)
    layer.noise = LayerNoise(zoneout=(np.ones((T, B, h0.shape[1])), np.ones((T, B, H))), zoneout_p=P)
    dh = rng.standard_normal((T, B, h0.shape[1]))
    dstate = (rng.standard_normal(h0.shape), rng.standard_normal(c0.shape))
    h, (hT, cT), cache, grads, dx, (dh0, dc0), _ = _forward_backward(layer, x, (h0, c0), dh.copy(), dstate)
    for t in range(T):
        np.testing.assert_array_equal(h[t], h0)
        np.testing.assert_array_equal(cache.cs[t + 1], c0)
    np.testing.assert_array_equal(hT, h0)
    np.testing.assert_array_equal(cT, c0)
    np.testing.assert_allclose(dh0, dstate[0] + dh.sum(axis=0), rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(dc0, dstate[1])
    for name, g in [*grads.items(), ("x", dx)]:
        np.testing.assert_array_equal(g, 0.0, err_msg=name)


def test_lstmp_masks_of_the_wrong_shape_are_refused():
    rng = np.random.default_rng(7)
    layer = _lstmp()
    x, state0 = random_layer_inputs(layer, T, B, rng)
    layer.noise = LayerNoise(recurrent=np.ones((B, H)))             # h is (B, P) = (3, 2)
    with pytest.raises(ValueError, match=r"noise.recurrent must have shape \(3, 2\), got \(3, 4\)"):
        layer.forward(x, state0)
    layer.noise = LayerNoise(zoneout=(np.zeros((T, B, 2)), np.zeros((T, B, 2))), zoneout_p=P)
    with pytest.raises(ValueError, match=r"zoneout mask of c must have shape \(4, 3, 4\), got \(4, 3, 2\)"):
        layer.forward(x, state0)
