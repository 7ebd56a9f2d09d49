"""GRULayer's readable reference loops (layers/gru.py, gru_cho.py; ``BPTT_KERNELS=reference``)
against its fast paths (kernels/gru_layer.py): the tuned numpy loops (``numpy``) and the numba
kernels (``numba``), on random inputs with random upstream gradients on every h_t and on h_T.

Every array a caller sees is compared: outputs, final state, the cache (gates [r, z, n], hn, h_t),
dE/dh_t (all paths), dE/dx, dE/dh0 and every parameter gradient. float64: the paths compute the
same equations in different orders (the fast ones halve the sigmoid's argument, form
h_t = n + z (h_{t-1} - n), sum the weight gradients chunk by chunk), so they agree to rounding:
F64_RTOL = 1e-12 (max-norm relative; measured at most 5e-16). float32: a few ulp per step, and
the numba path's tanh is a rational approximation (kernels/common.py): F32_RTOL = 5e-6 (measured
at most 2.7e-7 over these cases); a wrong factor anywhere is O(1e-2) or worse at these sizes.

The Cho variant has no fast path: every mode runs the reference, bit for bit the same.
"""

import numpy as np
import pytest

from bptt import functional, kernels
from bptt.kernels.gru_layer import GRUCache
from bptt.layers.gru import GRULayer, GRUReferenceCache
from bptt.layers.noise import LayerNoise
from bptt.layers.readout import ChunkedReadoutGrad

F64_RTOL = 1e-12
F32_RTOL = 5e-6
HAVE_NUMBA = kernels._numba_importable()
FAST_MODES = ["numpy"] + (["numba"] if HAVE_NUMBA else [])


def assert_close(actual, desired, rtol, name):
    """|actual - desired| <= rtol * max|desired| elementwise, same shape and dtype."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (name, actual.shape, desired.shape)
    assert actual.dtype == desired.dtype, (name, actual.dtype, desired.dtype)
    scale = max(float(np.max(np.abs(desired), initial=0.0)), np.finfo(desired.dtype).tiny)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale, err_msg=name)


def problem(T, B, I, H, dtype, *, ids=False, bias=True, variant="torch", seed=0):
    """A layer, inputs, h0, random dE/dh_t (T, B, H) and dE/dh_T (B, H), all in ``dtype``."""
    rng = np.random.default_rng(seed)
    layer = GRULayer(I, H, variant=variant, bias=bias, rng=rng, dtype=dtype)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    dh = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = (rng.standard_normal((B, H)).astype(dtype),)
    return layer, x, (h0,), dh, dstate


def run(layer, mode, x, state0, dh, dstate, *, chunked_from=None, **options):
    """Forward and backward under ``mode``; every visible array by name, and the cache's type.
    ``chunked_from=(dz, V)``: dh is handed as a ChunkedReadoutGrad dz V (``dh`` is then unused)."""
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    with kernels.using(mode):
        h, (hT,), cache = layer.forward(x, state0)
        out = {"h": h.copy(), "hT": hT.copy(), "gates": cache.gates.copy(), "extra": cache.extra.copy(),
               "hs": cache.hs.copy()}
        if chunked_from is not None:
            upstream = ChunkedReadoutGrad(chunked_from[0], chunked_from[1], layer.hidden_size)
        else:
            upstream = dh.copy()
        dx, (dh0,), dh_total = layer.backward(upstream, dstate, cache, grads, **options)
    out.update({"dh0": dh0, **{"d" + k: v for k, v in grads.items()}})
    if dh_total is not None:
        out["dh_total"] = dh_total
    if dx is not None:
        out["dx"] = dx
    return out, type(cache), dh_total, upstream


CASES = [  # T, B, I, H, ids, bias
    (7, 3, 5, 6, False, True), (1, 1, 3, 4, False, True), (9, 2, 4, 8, True, True),
    (5, 2, 3, 5, False, False), (4, 3, 7, 17, True, False),
]


@pytest.mark.parametrize("mode", FAST_MODES)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)], ids=["f64", "f32"])
@pytest.mark.parametrize("T, B, I, H, ids, bias", CASES)
def test_reference_matches_fast_paths(mode, dtype, rtol, T, B, I, H, ids, bias):
    layer, x, state0, dh, dstate = problem(T, B, I, H, dtype, ids=ids, bias=bias, seed=T * B + H)
    ref, ref_cache, _, _ = run(layer, "reference", x, state0, dh, dstate)
    fast, fast_cache, _, _ = run(layer, mode, x, state0, dh, dstate)
    assert ref_cache is GRUReferenceCache and fast_cache is GRUCache      # two different code paths ran
    assert ref.keys() == fast.keys() and ("dx" in ref) == (not ids)
    for name in ref:
        assert_close(fast[name], ref[name], rtol, f"{mode} {name}")


@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)], ids=["f64", "f32"])
@pytest.mark.parametrize("overwrite_dh, input_grad", [(True, True), (True, False), (False, False)])
def test_backward_options_on_the_reference(dtype, rtol, overwrite_dh, input_grad):
    """overwrite_dh=True writes dE/dh_t into the caller's dh and returns it; input_grad=False
    returns no dx. The reference's other numbers are bit for bit its default call's, and agree
    with the fast paths' under the same options."""
    layer, x, state0, dh, dstate = problem(6, 3, 4, 7, dtype, seed=11)
    default, _, _, _ = run(layer, "reference", x, state0, dh, dstate)
    options = dict(overwrite_dh=overwrite_dh, input_grad=input_grad)
    got, _, dh_total, dh_in = run(layer, "reference", x, state0, dh, dstate, **options)
    assert (dh_total is dh_in) == overwrite_dh
    assert ("dx" in got) == input_grad
    for name, value in got.items():
        np.testing.assert_array_equal(value, default[name], err_msg=name)
    for mode in FAST_MODES:
        fast, _, _, _ = run(layer, mode, x, state0, dh, dstate, **options)
        assert fast.keys() == got.keys()
        for name in got:
            assert_close(fast[name], got[name], rtol, f"{mode} {name}")


@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)], ids=["f64", "f32"])
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_chunked_readout_grad_on_the_reference(monkeypatch, dtype, rtol, ids):
    """A ChunkedReadoutGrad for dh (Network.loss_and_grads): the reference materialises it and
    gives bit for bit the numbers of the (T, B, H) array dz V, returning dh_total None; the fast
    paths, fed the same chunks a few steps at a time, agree."""
    monkeypatch.setattr(functional, "CHUNK_ROWS", 6)            # 2 steps a chunk at B = 3 (fast paths)
    T, B, I, H, O = 7, 3, 4, 5, 6
    layer, x, state0, _, dstate = problem(T, B, I, H, dtype, ids=ids, seed=5)
    rng = np.random.default_rng(9)
    dz = rng.standard_normal((T, B, O)).astype(dtype)
    V = rng.standard_normal((O, H)).astype(dtype)
    dh = np.dot(dz.reshape(T * B, O), V).reshape(T, B, H)       # the array ChunkedReadoutGrad stands for
    array, _, _, _ = run(layer, "reference", x, state0, dh, dstate, overwrite_dh=True)
    chunked, _, dh_total, _ = run(layer, "reference", x, state0, None, dstate, chunked_from=(dz, V),
                                  overwrite_dh=True)
    assert dh_total is None
    assert chunked.keys() == array.keys() - {"dh_total"}
    for name in chunked:
        np.testing.assert_array_equal(chunked[name], array[name], err_msg=name)
    for mode in FAST_MODES:
        fast, _, fast_total, _ = run(layer, mode, x, state0, None, dstate, chunked_from=(dz, V), overwrite_dh=True)
        assert fast_total is None and fast.keys() == chunked.keys()
        for name in chunked:
            assert_close(fast[name], chunked[name], rtol, f"{mode} {name}")


@pytest.mark.parametrize("dstate", [None, (None,)], ids=["None", "(None,)"])
def test_no_final_state_gradient(dstate):
    """dstate None or (None,) means dE/dh_T = 0: the same numbers as zeros, on every path."""
    layer, x, state0, dh, _ = problem(5, 2, 3, 4, np.float64, seed=2)
    zeros = (np.zeros_like(state0[0]),)
    for mode in ["reference"] + FAST_MODES:
        expected, _, _, _ = run(layer, mode, x, state0, dh, zeros)
        got, _, _, _ = run(layer, mode, x, state0, dh, dstate)
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{mode} {name}")


@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_cho_variant_runs_the_reference_in_every_mode(ids):
    """No fast path for Cho: every mode returns a GRUReferenceCache and the same bits."""
    layer, x, state0, dh, dstate = problem(6, 3, 4, 5, np.float64, ids=ids, variant="cho", seed=4)
    ref, ref_cache, _, _ = run(layer, "reference", x, state0, dh, dstate)
    assert ref_cache is GRUReferenceCache
    for mode in FAST_MODES:
        got, cache_type, _, _ = run(layer, mode, x, state0, dh, dstate)
        assert cache_type is GRUReferenceCache
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{mode} {name}")


def test_an_active_noise_runs_the_reference_and_backward_follows_the_cache():
    """With layer.noise active the fast modes run the reference (the kernels know no masks); a
    noise that is not active (all off) leaves the fast path. Backward follows the cache's type,
    not the mode at backward time: a reference cache gives the reference's bits under numba."""
    layer, x, state0, dh, dstate = problem(4, 2, 3, 5, np.float64, seed=8)
    expected, _, _, _ = run(layer, "reference", x, state0, dh, dstate)
    layer.noise = LayerNoise(recurrent=np.ones((2, 5)))         # active, and a no-op mask
    try:
        for mode in FAST_MODES:
            got, cache_type, _, _ = run(layer, mode, x, state0, dh, dstate)
            assert cache_type is GRUReferenceCache
            for name in expected:
                np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{mode} {name}")
        layer.noise = LayerNoise()                               # nothing on: not active
        for mode in FAST_MODES:
            assert run(layer, mode, x, state0, dh, dstate)[1] is GRUCache
    finally:
        layer.noise = None
    with kernels.using("reference"):
        _, _, cache = layer.forward(x, state0)
    for mode in FAST_MODES:
        grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
        with kernels.using(mode):
            _, (dh0,), _ = layer.backward(dh.copy(), dstate, cache, grads)
        np.testing.assert_array_equal(dh0, expected["dh0"])
        np.testing.assert_array_equal(grads["W"], expected["dW"])


def test_reference_step_matches_its_forward():
    """step() (sampling) is the reference forward over one step."""
    layer, x, state0, _, _ = problem(5, 2, 3, 4, np.float64, seed=3)
    with kernels.using("reference"):
        h, (hT,), _ = layer.forward(x, state0)
    state = state0
    for t in range(5):
        h_t, state = layer.step(x[t], state)
        np.testing.assert_array_equal(h_t, h[t])
    np.testing.assert_array_equal(state[0], hT)
