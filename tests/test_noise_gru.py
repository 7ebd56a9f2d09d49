"""Recurrent dropout and zoneout in GRULayer's reference loops (issue 17; layers/noise.py is the
contract, layers/gru.py's docstring the equations), both variants, float64:

- the masks enter where the equations say (one step written out by hand);
- the hand-derived BPTT under fixed masks against central differences, with random upstream
  gradients on every h_t and on h_T, through the inputs, h0 and every parameter: recurrent dropout
  only, zoneout only (training masks), both, and evaluation-mode zoneout (d_t = p);
- masks that do nothing give exactly (bit for bit) the un-regularised result; all-ones zoneout
  masks keep h0 at every step.
"""

import numpy as np
import pytest

from bptt import kernels
from bptt.functional import sigmoid
from bptt.layers.gru import GRULayer, GRUReferenceCache
from bptt.layers.noise import LayerNoise
from gated_layer_check import layer_gradient_errors, random_layer_inputs

TOL = 1e-6
VARIANTS = ("torch", "cho")
T, B, I, H = 4, 3, 3, 5


def dropout_mask(rng, p=0.4):
    """An inverted keep-mask (B, H) in {0, 1/(1-p)}, with both values present."""
    keep = rng.uniform(size=(B, H)) >= p
    keep[0, 0], keep[0, 1] = True, False
    return keep / (1.0 - p)


def zoneout_masks(rng, p=0.5):
    """One (T, B, H) 0/1 mask for the GRU's one state, with both values present."""
    d = (rng.uniform(size=(T, B, H)) < p).astype(np.float64)
    d[0, 0, 0], d[0, 0, 1] = 1.0, 0.0
    return (d,)


def make_layer(variant, seed, bias=True):
    rng = np.random.default_rng(seed)
    layer = GRULayer(I, H, variant=variant, bias=bias, rng=rng, dtype=np.float64)
    return layer, rng


def noises(rng):
    """The four regimes of the issue, by name."""
    return {
        "recurrent": LayerNoise(recurrent=dropout_mask(rng)),
        "zoneout": LayerNoise(zoneout=zoneout_masks(rng), zoneout_p=0.5),
        "both": LayerNoise(recurrent=dropout_mask(rng), zoneout=zoneout_masks(rng), zoneout_p=0.5),
        "zoneout-eval": LayerNoise(zoneout=None, zoneout_p=0.3),
    }


def full_pass(layer, x, state0, dh, dstate):
    """Forward and backward under the layer's noise, in the current kernels mode (an active noise
    runs the reference loops whatever the mode); every array by name."""
    h, (hT,), cache = layer.forward(x, state0)
    if layer.noise is not None and layer.noise.active:
        assert isinstance(cache, GRUReferenceCache)
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    dx, (dh0,), dh_total = layer.backward(dh.copy(), dstate, cache, grads)
    out = {"h": h.copy(), "hT": hT.copy(), "dh0": dh0, "dh_total": dh_total,
           **{"d" + k: v for k, v in grads.items()}}
    if dx is not None:
        out["dx"] = dx
    return out


# ------------------------------------------------------------------------ where the masks enter
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("zoneout", ["train", "eval"])
def test_one_step_written_out(variant, zoneout):
    """m multiplies the h_{t-1} of W (all gates; Cho: also inside r * h_{t-1}), never z * h_{t-1};
    zoneout mixes h_{t-1} and the update h~_t with d_t."""
    layer, rng = make_layer(variant, 0)
    x, (h0,) = random_layer_inputs(layer, 1, B, rng)
    m = dropout_mask(rng)
    if zoneout == "train":
        d = zoneout_masks(rng)[0][:1]                 # (1, B, H): the one step's d_0
        noise, d0 = LayerNoise(recurrent=m, zoneout=(d,), zoneout_p=0.5), d[0]
    else:
        noise, d0 = LayerNoise(recurrent=m, zoneout_p=0.3), 0.3
    U, W, b = layer.params["U"], layer.params["W"], layer.params["b"]
    ax = x[0] @ U.T + b
    h_rec = m * h0
    r = sigmoid(ax[:, :H] + h_rec @ W[:H].T)
    z = sigmoid(ax[:, H:2 * H] + h_rec @ W[H:2 * H].T)
    if variant == "torch":
        n = np.tanh(ax[:, 2 * H:] + r * (h_rec @ W[2 * H:].T + layer.params["b_hn"]))
    else:
        n = np.tanh(ax[:, 2 * H:] + (r * h_rec) @ W[2 * H:].T)
    h_new = (1 - z) * n + z * h0                      # z * h_{t-1}: the unmasked h0
    expected = d0 * h0 + (1 - d0) * h_new
    layer.noise = noise
    out, (hT,), _ = layer.forward(x, (h0,))
    np.testing.assert_allclose(out[0], expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(hT, expected, rtol=1e-13, atol=1e-15)
    assert not np.allclose(expected, h_new)           # the regularisers really changed the step


# -------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("regime", ["recurrent", "zoneout", "both", "zoneout-eval"])
@pytest.mark.parametrize("ids, bias", [(False, True), (True, True), (False, False)], ids=["floats", "ids", "no-bias"])
def test_gradients_match_finite_differences(variant, regime, ids, bias):
    layer, rng = make_layer(variant, 3, bias=bias)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    layer.noise = noises(rng)[regime]                 # fixed masks: forward is a function of x, h0, params
    errors = layer_gradient_errors(layer, x, state0, seed=7)
    expected = {"U", "W", "h0"} | (set() if ids else {"x"})
    if bias:
        expected |= {"b", "b_hn"} if variant == "torch" else {"b"}
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_differ_from_the_unregularised_ones(variant):
    """The FD checks above would pass for a backward that ignored masks only if forward did too:
    the regularised gradients really differ from the plain ones."""
    layer, rng = make_layer(variant, 5)
    x, state0 = random_layer_inputs(layer, T, B, rng)
    dh, dstate = rng.standard_normal((T, B, H)), (rng.standard_normal((B, H)),)
    with kernels.using("reference"):
        plain = full_pass(layer, x, state0, dh, dstate)
    for regime, noise in noises(rng).items():
        layer.noise = noise
        got = full_pass(layer, x, state0, dh, dstate)
        assert not np.allclose(got["dW"], plain["dW"]), regime
        assert not np.allclose(got["dh0"], plain["dh0"]), regime


# ------------------------------------------------------------------------------ exact identities
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_inert_masks_give_exactly_the_plain_result(variant, ids):
    """An all-ones recurrent mask and all-zeros zoneout masks (each alone and together) give the
    un-regularised reference bit for bit: forward, dE/dh_t, dx, dh0 and every gradient."""
    layer, rng = make_layer(variant, 9)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    dh, dstate = rng.standard_normal((T, B, H)), (rng.standard_normal((B, H)),)
    with kernels.using("reference"):
        plain = full_pass(layer, x, state0, dh, dstate)
    ones, zeros = np.ones((B, H)), (np.zeros((T, B, H)),)
    for noise in (LayerNoise(recurrent=ones), LayerNoise(zoneout=zeros, zoneout_p=0.2),
                  LayerNoise(recurrent=ones, zoneout=zeros, zoneout_p=0.2)):
        layer.noise = noise
        got = full_pass(layer, x, state0, dh, dstate)
        assert got.keys() == plain.keys()
        for name in plain:
            np.testing.assert_array_equal(got[name], plain[name], err_msg=f"{noise} {name}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_all_ones_zoneout_keeps_h0(variant):
    """d_t = 1 everywhere: every unit keeps its previous value, so h_t = h0 at every step; the
    whole upstream gradient then flows to h0 (dE/dh0 = dstate + sum_t dh_t) and none to the weights."""
    layer, rng = make_layer(variant, 2)
    x, state0 = random_layer_inputs(layer, T, B, rng)
    dh, dstate = rng.standard_normal((T, B, H)), (rng.standard_normal((B, H)),)
    layer.noise = LayerNoise(recurrent=dropout_mask(rng), zoneout=(np.ones((T, B, H)),), zoneout_p=0.5)
    got = full_pass(layer, x, state0, dh, dstate)
    for t in range(T):
        np.testing.assert_array_equal(got["h"][t], state0[0])
    np.testing.assert_allclose(got["dh0"], dstate[0] + dh.sum(axis=0), rtol=1e-13, atol=1e-13)
    for name in layer.params:
        np.testing.assert_array_equal(got["d" + name], 0.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_masks_of_the_wrong_shape_are_named(variant):
    layer, rng = make_layer(variant, 1)
    x, state0 = random_layer_inputs(layer, T, B, rng)
    layer.noise = LayerNoise(recurrent=np.ones((B + 1, H)))
    with pytest.raises(ValueError, match=r"noise.recurrent must have shape \(B, H\) = \(3, 5\), got \(4, 5\)"):
        layer.forward(x, state0)
    layer.noise = LayerNoise(zoneout=(np.ones((T - 1, B, H)),), zoneout_p=0.1)
    with pytest.raises(ValueError, match=r"noise.zoneout\[0\] must have shape \(T, B, H\) = \(4, 3, 5\), got \(3, 3, 5\)"):
        layer.forward(x, state0)
    layer.noise = LayerNoise(zoneout=(np.ones((T, B, H)), np.ones((T, B, H))), zoneout_p=0.1)
    with pytest.raises(ValueError, match="one mask for the GRU's state"):
        layer.forward(x, state0)
