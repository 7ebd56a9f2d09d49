"""The LSTM's reference loops (layers/lstm.py, ``BPTT_KERNELS=reference``) against its fast paths
(kernels/lstm_layer.py: the tuned numpy loops of ``BPTT_KERNELS=numpy`` and the numba kernels).

The reference is the docstring's equations written out; the fast paths must compute the same
numbers: float64 to rounding (rtol 1e-12), float32 to a few ulp per step. Random inputs, random
upstream gradients on every h_t and on the final (h_T, c_T), float features and token ids, and
each of backward's options: input_grad=False, overwrite_dh=True, dE/dh as a ChunkedReadoutGrad,
dstate None or partly None, several backward chunks."""

import numpy as np
import pytest

from bptt import functional, kernels
from bptt.kernels.lstm_layer import LSTMCache
from bptt.layers.lstm import LSTMLayer, LSTMReferenceCache
from bptt.layers.readout import ChunkedReadoutGrad

try:
    import numba  # noqa: F401
    PATHS = ("reference", "numpy", "numba")
except ImportError:                     # the numba path is checked where numba is installed
    PATHS = ("reference", "numpy")

T, B, I, H, O = 6, 3, 5, 7, 4


def _problem(dtype, ids, seed=0):
    """Inputs, initial state, dE/dz and the readout's V (dE/dh_t = dz_t V) and dE/d(h_T, c_T)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    state0 = tuple((0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(2))
    dz = rng.standard_normal((T, B, O)).astype(dtype)
    V = rng.standard_normal((O, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    return x, state0, dz, V, dstate


def _run(path, dtype, ids, *, bias=True, chunked=False, input_grad=True, overwrite_dh=False, dstate="both",
         seed=0):
    """forward then backward on ``path``; returns every output of both, by name."""
    x, state0, dz, V, (dh_T, dc_T) = _problem(dtype, ids, seed)
    layer = LSTMLayer(I, H, bias=bias, rng=np.random.default_rng(seed + 1), dtype=dtype)
    up = {"both": (dh_T, dc_T), "none": None, "h only": (dh_T, None), "c only": (None, dc_T)}[dstate]
    with kernels.using(path):
        h, (hT, cT), cache = layer.forward(x, state0)
        assert isinstance(cache, LSTMReferenceCache if path == "reference" else LSTMCache)
        h = h.copy()                    # (the outputs are views of the cache's hs)
        if chunked:
            dh = ChunkedReadoutGrad(dz, V, H)
        else:
            dh = np.dot(dz.reshape(T * B, O), V).reshape(T, B, H)
        dh_given = None if chunked else dh.copy()
        grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
        dx, (dh0, dc0), dh_total = layer.backward(dh, up, cache, grads, input_grad=input_grad,
                                                  overwrite_dh=overwrite_dh)
    if chunked:
        assert dh_total is None
    else:
        assert dh_total.shape == (T, B, H)
        if overwrite_dh:
            assert dh_total is dh                                   # written into dh itself
        else:
            np.testing.assert_array_equal(dh, dh_given)             # dh left as it was
    assert (dx is None) == (ids or not input_grad)
    out = {"h": h, "h_T": hT, "c_T": cT, "c": cache.cs[1:], "gates": cache.gates, "dh0": dh0, "dc0": dc0}
    out.update({f"d{name}": g for name, g in grads.items()})
    if dx is not None:
        out["dx"] = dx
    if dh_total is not None:
        out["dh_total"] = dh_total
    return out


def _assert_close(actual, expected, dtype, label):
    assert actual.keys() == expected.keys(), label
    for name in expected:
        a, e = np.asarray(actual[name], np.float64), np.asarray(expected[name], np.float64)
        assert actual[name].dtype == expected[name].dtype == dtype, (label, name)
        scale = float(np.max(np.abs(e)))
        assert scale > 0, (label, name)                            # nothing compared against all zeros
        if dtype == np.float64:
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14 * scale, err_msg=f"{label} {name}")
        else:
            # float32: eps 1.2e-7; the numba path's tanh is a few ulp off (kernels/common.py), carried
            # through T steps and the GEMMs
            assert float(np.max(np.abs(a - e))) <= 5e-6 * scale, (label, name)


@pytest.fixture(params=[None, 6], ids=["one-chunk", "chunks"])
def chunk_rows(request, monkeypatch):
    """The fast backward in one chunk of steps, or in chunks of 2 steps (B = 3), an uneven last one."""
    if request.param is not None:
        monkeypatch.setattr(functional, "CHUNK_ROWS", request.param)
        assert functional.chunk_steps(T, B, 5 * H, 4 * H * (H + I)) < T
    return request.param


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
@pytest.mark.parametrize("options", [dict(), dict(bias=False), dict(input_grad=False), dict(overwrite_dh=True),
                                     dict(chunked=True), dict(chunked=True, overwrite_dh=True),
                                     dict(dstate="none"), dict(dstate="h only"), dict(dstate="c only")],
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_fast_paths_match_the_reference(dtype, ids, options, chunk_rows):
    reference = _run("reference", dtype, ids, **options)
    for path in PATHS[1:]:
        _assert_close(_run(path, dtype, ids, **options), reference, dtype, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_chunked_dh_gives_the_array_results_bit_for_bit(path, ids, chunk_rows):
    """On every path the ChunkedReadoutGrad gives exactly what the (T, B, H) array does."""
    array = _run(path, np.float64, ids)
    chunked = _run(path, np.float64, ids, chunked=True)
    del array["dh_total"]
    assert array.keys() == chunked.keys()
    for name in array:
        np.testing.assert_array_equal(chunked[name], array[name], err_msg=name)


def test_numba_float64_forward_is_bit_identical_to_numpy():
    """kernels/lstm.py forward_cell between numpy's tanh calls: the numpy fast path's bits."""
    pytest.importorskip("numba")
    a, b = _run("numpy", np.float64, False), _run("numba", np.float64, False)
    for name in ("h", "h_T", "c_T", "gates"):
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def test_the_comparison_catches_a_broken_fast_path(monkeypatch):
    """The test above can fail: a numpy fast path that drops the cell state's path back in time
    (dE/dc_{t-1} = 0 at each chunk's start) is caught."""
    from bptt.kernels import lstm_layer
    good = lstm_layer._backward_chunk_numpy

    def forgetful(layer, dh, dh_total, dh_next, dc, *args):
        dh_next = good(layer, dh, dh_total, dh_next, dc, *args)
        dc[...] = 0
        return dh_next

    monkeypatch.setattr(lstm_layer, "_backward_chunk_numpy", forgetful)
    reference = _run("reference", np.float64, False)
    with pytest.raises(AssertionError):
        _assert_close(_run("numpy", np.float64, False), reference, np.float64, "numpy")


def test_the_reference_is_what_reference_mode_and_noise_run():
    """BPTT_KERNELS=reference runs the reference; so does any mode once ``noise`` is active
    (an all-ones recurrent mask here), and an inactive LayerNoise leaves the fast path on."""
    from bptt.layers.noise import LayerNoise
    layer = LSTMLayer(I, H, rng=np.random.default_rng(0))
    x, state0, *_ = _problem(np.float64, False)
    with kernels.using("numpy"):
        assert isinstance(layer.forward(x, state0)[2], LSTMCache)
        layer.noise = LayerNoise()                                  # nothing drawn: inactive
        assert isinstance(layer.forward(x, state0)[2], LSTMCache)
        layer.noise = LayerNoise(recurrent=np.ones((B, H)))
        assert isinstance(layer.forward(x, state0)[2], LSTMReferenceCache)
    del layer.noise
    with kernels.using("reference"):
        assert isinstance(layer.forward(x, state0)[2], LSTMReferenceCache)
