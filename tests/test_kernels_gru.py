"""The GRU's numba kernels (bptt/kernels/gru.py) against its numpy path (the reference):
forward outputs, final state, cache, every gradient, dE/dh_t (all paths), dE/dx and dE/dh0,
with random upstream gradients on every output and on the final state.

float64: the two paths form every product in the same order and the float64 forward keeps
numpy's tanh, so the forward is bit-identical and the rest agrees to rounding (1e-12).
float32: the kernels' tanh is a rational approximation (kernels/common.py, up to ~6 ulp where
numpy's is ~1.4), so each step's gates may differ by a few ulp = a few 6e-8 relative. Measured
max-norm differences: at most 3.4e-7 over every float32 case here, 3.7e-7 for a T = 200 layer;
F32_RTOL = 2e-6 leaves a factor ~6 for other machines' BLAS/rounding, while a wrong formula
(one factor off by 1e-5 relative) fails every case. Plus float64 finite differences through
the kernel path.

The Cho variant has no kernel (numpy path either way), so only "torch" is compared."""

import numpy as np
import pytest

pytest.importorskip("numba")

import bptt  # noqa: E402
from bptt import functional, kernels  # noqa: E402
from bptt.gradcheck import check_network, random_problem  # noqa: E402
from bptt.layers.gru import GRULayer  # noqa: E402
from gated_layer_check import layer_gradient_errors, random_layer_inputs  # noqa: E402

F64_RTOL = 1e-12
F32_RTOL = 2e-6


@pytest.fixture(autouse=True, params=[True, False], ids=["loops", "step-loops"])
def compiled_loops(request):
    """Every test twice: with the time loops compiled (numpy's gemm called from numba,
    kernels.loops_enabled) and with the per-step Python loop around the step kernels."""
    previous = kernels.set_loops(request.param)
    yield request.param
    kernels.set_loops(previous)


def assert_close(actual, desired, rtol, name):
    """Max-norm relative agreement: |actual - desired| <= rtol * max|desired| elementwise (an
    element-wise relative test would be meaningless for entries near zero)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape and actual.dtype == desired.dtype, name
    scale = max(float(np.max(np.abs(desired), initial=0.0)), np.finfo(desired.dtype).tiny)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale, err_msg=name)


def layer_pass(layer, x, state0, dh, dstate, **options):
    """Forward then backward of one layer; every array a caller can see, by name."""
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    h, (hT,), cache = layer.forward(x, state0)
    out = {"h": h.copy(), "hT": hT.copy(), "gates": cache.gates.copy(), "extra": cache.extra.copy(),
           "hs": cache.hs.copy()}
    dx, (dh0,), dh_total = layer.backward(dh.copy(), dstate, cache, grads, **options)
    out.update({"dh0": dh0, "dh_total": dh_total, **{"d" + k: v for k, v in grads.items()}})
    if dx is not None:
        out["dx"] = dx
    return out


def both_paths(run):
    with kernels.using("numpy"):
        reference = run()
    with kernels.using("numba"):
        fused = run()
    assert reference.keys() == fused.keys()
    return reference, fused


def random_layer_problem(T, B, I, H, dtype, ids=False, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    layer = GRULayer(I, H, bias=bias, rng=rng, dtype=dtype)
    x, (h0,) = random_layer_inputs(layer, T, B, rng, ids=ids)
    x = x if ids else x.astype(dtype)
    dh = rng.standard_normal((T, B, H)).astype(dtype)                 # random dE/dh_t from above
    dstate = (rng.standard_normal((B, H)).astype(dtype),)             # random dE/dh_T
    return layer, x, (h0.astype(dtype),), dh, dstate


LAYER_CASES = [  # T, B, I, H, ids, bias
    (7, 3, 5, 6, False, True), (1, 1, 3, 4, False, True), (9, 1, 4, 8, False, True),
    (6, 4, 5, 16, True, True), (5, 2, 3, 5, False, False), (4, 3, 7, 33, True, False),
]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)])
@pytest.mark.parametrize("T, B, I, H, ids, bias", LAYER_CASES)
def test_layer_kernels_match_numpy(dtype, rtol, T, B, I, H, ids, bias):
    layer, x, state0, dh, dstate = random_layer_problem(T, B, I, H, dtype, ids=ids, bias=bias, seed=T * B)
    reference, fused = both_paths(lambda: layer_pass(layer, x, state0, dh, dstate))
    assert ("dx" in fused) == (not ids)
    for name in reference:
        assert_close(fused[name], reference[name], rtol, name)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)])
@pytest.mark.parametrize("overwrite_dh, input_grad", [(True, True), (True, False), (False, False)])
def test_backward_options_on_both_paths(dtype, rtol, overwrite_dh, input_grad):
    """overwrite_dh writes dE/dh_t into the caller's dh (the kernel then reads and writes one
    array); input_grad=False returns no dx. Same numbers as the default call, on both paths."""
    layer, x, state0, dh, dstate = random_layer_problem(6, 3, 4, 7, dtype, seed=11)
    options = dict(overwrite_dh=overwrite_dh, input_grad=input_grad)
    with kernels.using("numba"):
        default = layer_pass(layer, x, state0, dh, dstate)
    for mode in ("numpy", "numba"):
        with kernels.using(mode):
            grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
            _, _, cache = layer.forward(x, state0)
            dh_in = dh.copy()
            dx, (dh0,), dh_total = layer.backward(dh_in, dstate, cache, grads, **options)
        assert (dh_total is dh_in) == overwrite_dh
        assert (dx is None) == (not input_grad)
        got = {"dh0": dh0, "dh_total": dh_total, **{"d" + k: v for k, v in grads.items()}}
        if dx is not None:
            got["dx"] = dx
        for name, value in got.items():
            assert_close(value, default[name], rtol if mode == "numpy" else 0.0, f"{mode} {name}")


def test_caches_are_interchangeable():
    """Either path's forward cache serves either path's backward (the kernels store the
    numpy path's cache contents: gates [r, z, n], hn, h_t)."""
    layer, x, state0, dh, dstate = random_layer_problem(5, 2, 3, 6, np.float64, seed=3)
    results = {}
    for forward_mode in ("numpy", "numba"):
        with kernels.using(forward_mode):
            _, _, cache = layer.forward(x, state0)
        for backward_mode in ("numpy", "numba"):
            grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
            with kernels.using(backward_mode):
                dx, (dh0,), dh_total = layer.backward(dh.copy(), dstate, cache, grads)
            results[forward_mode, backward_mode] = [dx, dh0, dh_total, *(grads[k] for k in sorted(grads))]
    reference = results["numpy", "numpy"]
    for key, values in results.items():
        for a, b in zip(values, reference):
            assert_close(a, b, F64_RTOL, str(key))


@pytest.mark.parametrize("dtype, forward_kernels", [(np.float32, ("forward_step",)),
                                                     (np.float64, ("forward_gates", "forward_state"))])
def test_kernels_really_run(monkeypatch, dtype, forward_kernels, compiled_loops):
    """The numba path calls its kernels once per step (so the comparisons above compare two
    different code paths), and the numpy path never does. float32 runs one forward kernel per
    step, float64 two around np.tanh (kernels/gru.py says why). With the compiled loops, the
    whole forward (float32) and each backward chunk are one call instead."""
    from bptt.kernels import gru as gru_kernels
    names = ("forward_step", "forward_gates", "forward_state", "backward_step", "forward_loop", "backward_loop")
    calls = dict.fromkeys(names, 0)

    def counting(name, kernel):
        def count(*args):
            calls[name] += 1
            return kernel(*args)
        return count

    T = 5
    layer, x, state0, dh, dstate = random_layer_problem(T, 2, 3, 4, dtype)
    with kernels.using("numba"):                   # compile the loops before their callees are patched
        layer_pass(layer, x, state0, dh, dstate)
    for name in names:
        monkeypatch.setattr(gru_kernels, name, counting(name, getattr(gru_kernels, name)))
    with kernels.using("numpy"):
        layer_pass(layer, x, state0, dh, dstate)
    assert calls == dict.fromkeys(names, 0)
    with kernels.using("numba"):
        layer_pass(layer, x, state0, dh, dstate)
        loops = kernels.loops_enabled(dtype)       # asked under numba: BPTT_KERNELS may say otherwise outside
    if compiled_loops and loops:                   # one backward chunk at this size
        expected = {"forward_loop": 1} if dtype == np.float32 else dict.fromkeys(forward_kernels, T)
        expected["backward_loop"] = 1
    else:
        expected = {name: T for name in forward_kernels + ("backward_step",)}
    assert calls == {name: expected.get(name, 0) for name in names}


@pytest.mark.parametrize("ids", [False, True])
def test_float64_forward_is_bit_identical(ids):
    """float64 keeps numpy's tanh between its two forward kernels and forms every other
    operation in the numpy path's order: the forward cache is the same bits on both paths."""
    layer, x, state0, dh, dstate = random_layer_problem(6, 3, 4, 9, np.float64, ids=ids, seed=21)

    def run():
        h, (hT,), cache = layer.forward(x, state0)
        return {"h": h, "hT": hT, "gates": cache.gates, "extra": cache.extra, "hs": cache.hs}

    reference, fused = both_paths(run)
    for name in reference:
        np.testing.assert_array_equal(fused[name], reference[name], err_msg=name)


NETWORK_CASES = [dict(num_layers=2), dict(num_layers=2, bidirectional=True), dict(bias=False),
                 dict(num_layers=1, loss="mse")]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)])
@pytest.mark.parametrize("options", NETWORK_CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("token_ids", [False, True])
def test_network_kernels_match_numpy(dtype, rtol, options, token_ids):
    """Network.forward/backward with random dE/doutputs and a random dE/d(final state)."""
    net = bptt.Network(5, 6, 4, cell="gru", dtype=np.dtype(dtype).name, seed=2, **options)
    inputs, _, _, h0 = random_problem(net, 8, 3, seed=4, token_ids=token_ids)
    rng = np.random.default_rng(5)
    inputs = inputs if token_ids else inputs.astype(dtype)
    h0 = h0.astype(dtype)
    fwd0 = net.forward(inputs, h0)
    doutputs = rng.standard_normal(fwd0.outputs.shape).astype(dtype)
    dfinal = rng.standard_normal(fwd0.final_state.shape).astype(dtype)

    def run():
        fwd = net.forward(inputs, h0)
        bwd = net.backward(fwd, doutputs.copy(), dfinal_state=dfinal)
        out = {"outputs": fwd.outputs, "final_state": fwd.final_state, "dh0": bwd.dh0,
               **{f"dh{i}": d for i, d in enumerate(bwd.dh)}, **{"d" + k: g for k, g in bwd.grads.items()}}
        if bwd.dinputs is not None:
            out["dinputs"] = bwd.dinputs
        return out

    reference, fused = both_paths(run)
    assert ("dinputs" in fused) == (not token_ids)
    for name in reference:
        assert_close(fused[name], reference[name], rtol, name)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, F64_RTOL), (np.float32, F32_RTOL)])
def test_training_step_in_chunks_matches_numpy(monkeypatch, dtype, rtol):
    """loss_and_grads (workspace arrays, overwrite_dh) with the backward split into several
    chunks, an uneven last one included."""
    monkeypatch.setattr(functional, "CHUNK_ROWS", 8)                 # 2 steps per chunk at B = 4
    T, B, V = 11, 4, 7
    net = bptt.Network(V, 9, V, num_layers=2, cell="gru", dtype=np.dtype(dtype).name, seed=6)
    assert functional.chunk_steps(T, B, 6 * 9, 3 * 9 * (9 + V)) < T
    rng = np.random.default_rng(8)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))

    def run():
        loss, grads = net.loss_and_grads(x, y)
        return {"loss": np.asarray(loss), **{k: g.copy() for k, g in grads.items()}}

    reference, fused = both_paths(run)
    for name in reference:
        assert_close(fused[name], reference[name], rtol, name)


# ------------------------------------------------------- finite differences through the kernels
@pytest.mark.parametrize("T, B, ids, bias", [(4, 3, False, True), (1, 1, False, True), (5, 1, True, False)])
def test_layer_gradients_through_kernels_match_finite_differences(T, B, ids, bias):
    rng = np.random.default_rng(T + B)
    layer = GRULayer(3, 4, bias=bias, rng=rng, dtype=np.float64)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    with kernels.using("numba"):
        errors = layer_gradient_errors(layer, x, state0, seed=T)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("options", [dict(num_layers=2), dict(num_layers=2, bidirectional=True)],
                         ids=["2-layers", "bidirectional"])
def test_network_gradients_through_kernels_match_finite_differences(options):
    net = bptt.Network(4, 3, 3, cell="gru", seed=1, **options)
    inputs, targets, mask, h0 = random_problem(net, seq_len=4, batch=2, seed=9, masked=True)
    with kernels.using("numba"):
        errors = check_network(net, inputs, targets, mask, h0)
    assert "inputs" in errors and "h0" in errors
    assert max(errors.values()) < 1e-6, errors
