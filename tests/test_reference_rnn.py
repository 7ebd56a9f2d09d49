"""The RNN layer's readable reference loops (layers/rnn.py) against its fast paths (kernels/rnn_layer.py):
the tuned numpy loops (BPTT_KERNELS=numpy) and numba (small sizes compiled, larger ones numpy).

Random inputs, random upstream gradients dE/dh_t and dE/dh_T, float64 to 1e-12 and float32 loosely
(numba's float32 tanh is a rational approximation); token ids and float inputs; input_grad=False,
overwrite_dh=True and dE/dh as a readout.ChunkedReadoutGrad (the fast backward then runs chunk by
chunk, both of its chunked loops). The layer-level gradients of the reference itself are checked
against finite differences in test_core_gradcheck.py (default path) and test_noise_rnn.py."""

import numpy as np
import pytest

from bptt import functional, kernels
from bptt.kernels.rnn_layer import RNNFastCache
from bptt.layers import rnn
from bptt.layers.noise import LayerNoise
from bptt.layers.readout import ChunkedReadoutGrad
from bptt.layers.rnn import RNNCache, RNNLayer

# (T, B, I, H): B H^2 = 75 runs numba's whole-loop kernel on the numba path; 5 * 64^2 = 20480 > 16384
# (kernels.rnn.SMALL_GEMM) runs the tuned numpy loop on both fast paths.
SIZES = {"kernel-size": (7, 3, 4, 5), "numpy-size": (6, 5, 6, 64)}
O = 6                                       # the readout's width, for the ChunkedReadoutGrad
# How dE/dh reaches backward, and its options: the plain array; input_grad=False with no dstate;
# overwrite_dh=True; a ChunkedReadoutGrad with the two-buffer loop and with the one-buffer loop.
FORMS = {
    "array": dict(),
    "no-input-grad": dict(input_grad=False, dstate=False),
    "overwrite": dict(overwrite_dh=True),
    "chunked": dict(chunked=True, one_buffer=False),
    "chunked-one-buffer": dict(chunked=True, one_buffer=True, overwrite_dh=True),
}
TOL = {"float64": 1e-12, "float32": 2e-4}


def _problem(size, dtype, ids, seed):
    T, B, I, H = SIZES[size]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    dz = rng.standard_normal((T, B, O)).astype(dtype)            # dE/dz_t into a readout V (O, H)
    V = rng.standard_normal((O, H)).astype(dtype)
    dstate = (rng.standard_normal((B, H)).astype(dtype),)        # dE/dh_T from later chunks
    return x, h0, dz, V, dstate


def _run(mode, layer, problem, form):
    """forward then backward on one path; every number it returns, copied."""
    x, h0, dz, V, dstate = problem
    options = FORMS[form]
    T, B = x.shape[:2]
    H = layer.hidden_size
    with kernels.using(mode):
        h, (h_T,), cache = layer.forward(x, (h0,))
        grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
        if options.get("chunked"):
            dh = ChunkedReadoutGrad(dz, V, H)
        else:
            dh = (dz.reshape(T * B, O) @ V).reshape(T, B, H)        # the same rows as the chunked fill
        dx, (dh0,), total = layer.backward(
            dh, dstate if options.get("dstate", True) else None, cache, grads,
            input_grad=options.get("input_grad", True), overwrite_dh=options.get("overwrite_dh", False))
    if options.get("overwrite_dh") and not options.get("chunked"):
        assert total is dh                                            # written into the caller's dh
    assert (total is None) == bool(options.get("chunked"))
    assert (dx is None) == (x.dtype.kind in "iu" or not options.get("input_grad", True))
    return dict(h=h.copy(), h_T=h_T.copy(), dh0=dh0.copy(), cache=type(cache),
                dx=None if dx is None else dx.copy(), total=None if total is None else total.copy(),
                **{"grad " + k: v for k, v in grads.items()})


def _close(actual, desired, tol, what):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, what
    scale = max(float(np.max(np.abs(desired))), 1e-300)
    error = float(np.max(np.abs(actual - desired)))
    assert error <= tol * scale, f"{what}: max error {error:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("mode", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("form", list(FORMS))
def test_reference_and_fast_paths_agree(monkeypatch, mode, dtype, size, ids, nonlinearity, form):
    if mode == "numba":
        pytest.importorskip("numba")
    monkeypatch.setattr(functional, "CHUNK_ROWS", 6)       # several chunks of 1-2 steps in the fast backward
    monkeypatch.setattr(rnn, "_ONE_BUFFER_GEMM", 0 if FORMS[form].get("one_buffer") else 1 << 62)
    T, B, I, H = SIZES[size]
    layer = RNNLayer(I, H, nonlinearity=nonlinearity, rng=np.random.default_rng(1), dtype=dtype)
    problem = _problem(size, dtype, ids, seed=2)
    # The reference always takes dE/dh as a plain array: the fast path's every form is held to it.
    reference = _run("reference", layer, problem, "no-input-grad" if form == "no-input-grad" else "array")
    fast = _run(mode, layer, problem, form)
    assert reference["cache"] is RNNCache and fast["cache"] is RNNFastCache   # each path really ran
    for name, value in reference.items():
        if name == "cache" or value is None or fast[name] is None:
            continue
        _close(fast[name], value, TOL[dtype], name)
    if not FORMS[form].get("chunked"):
        _close(fast["total"], reference["total"], TOL[dtype], "dh_total")


@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
@pytest.mark.parametrize("form", ["array", "overwrite", "chunked"])
def test_reference_takes_every_form_of_dh_with_the_same_bits(ids, form):
    """The reference materialises a ChunkedReadoutGrad (one fill of all T steps: the rows of the
    array's GEMM) and writes dh_total into dh on request: the same numbers bit for bit."""
    layer = RNNLayer(4, 5, rng=np.random.default_rng(3), dtype="float64")
    problem = _problem("kernel-size", "float64", ids, seed=4)
    plain = _run("reference", layer, problem, "array")
    other = _run("reference", layer, problem, form)
    for name, value in plain.items():
        if name in ("cache", "total") or value is None:
            continue
        np.testing.assert_array_equal(other[name], value, err_msg=name)


def test_the_comparison_catches_a_broken_reference(monkeypatch):
    """The comparison can fail: a reference backward that forgets f'(a_t) for relu
    (f' = 1 everywhere) must disagree with the fast path."""
    layer = RNNLayer(4, 5, nonlinearity="relu", rng=np.random.default_rng(1), dtype="float64")
    problem = _problem("kernel-size", "float64", False, seed=2)
    fast = _run("numpy", layer, problem, "array")
    monkeypatch.setattr(rnn, "derivative_from_output", lambda h, nonlinearity: np.ones_like(h))
    broken = _run("reference", layer, problem, "array")
    np.testing.assert_array_equal(broken["h"], fast["h"])            # forward untouched
    with pytest.raises(AssertionError):
        _close(broken["grad W"], fast["grad W"], 1e-12, "grad W")


@pytest.mark.parametrize("mode", ["numpy", "numba", "auto"])
def test_active_noise_runs_the_reference_and_inactive_noise_the_fast_path(mode):
    if mode == "numba":
        pytest.importorskip("numba")
    layer = RNNLayer(3, 4, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    with kernels.using(mode):
        _, _, fast = layer.forward(x, layer.zero_state(2))
        layer.noise = LayerNoise()                                     # nothing switched on
        _, _, still_fast = layer.forward(x, layer.zero_state(2))
        layer.noise = LayerNoise(zoneout_p=0.3)
        _, _, noisy = layer.forward(x, layer.zero_state(2))
    assert type(fast) is RNNFastCache and type(still_fast) is RNNFastCache
    assert type(noisy) is RNNCache and noisy.noise is layer.noise
