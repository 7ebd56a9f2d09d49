"""The lean training step (``Network.loss_and_grads``) hands the top RNN layer dE/dh_t = dz_t V
from the readout one chunk of time steps at a time (``readout.ChunkedReadoutGrad``), so no
(T, B, H) dE/dh array exists (issue 7's memory goal); at larger sizes (numpy path) that chunk
buffer also becomes dE/da_t in place (``rnn._ONE_BUFFER_GEMM``). It must not change a single bit
of the loss or any gradient, on both compute paths, and it must really lower the step's peak memory.
"""


import numpy as np
import pytest

from bptt import functional
from bptt.layers import rnn
from bptt.layers.readout import ChunkedReadoutGrad
from bptt.layers.rnn import RNNLayer
from bptt.network import Network
from bptt.benchmark.extras import step_footprint_bytes
from lean_helpers import compute_path, problem, assert_same, assert_same_loss


# (T, B, I, H, O): B H^2 <= 16384 runs the RNN's whole-chunk numba kernel on the numba path
# (kernels/rnn.py backward_chunk), larger sizes the numpy loop on both paths.
SIZES = {"kernel-size": (9, 3, 4, 5, 7), "numpy-size": (30, 5, 6, 64, 9)}
# rnn._ONE_BUFFER_GEMM forced either way: every loop of the chunked backward runs at small sizes.
BUFFERS = {"two-buffers": 1 << 62, "one-buffer": 0}


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
@pytest.mark.parametrize("chunk_rows", [None, 4], ids=["one-chunk", "chunks"])
@pytest.mark.parametrize("buffers", list(BUFFERS))
def test_lean_step_is_bit_identical_to_forward_backward(monkeypatch, path, size, nonlinearity, num_layers,
                                                        ids, chunk_rows, buffers):
    T, B, I, H, O = SIZES[size]
    monkeypatch.setattr(rnn, "_ONE_BUFFER_GEMM", BUFFERS[buffers])
    if chunk_rows is not None:                  # several chunks (1 or 2 steps each), uneven last one
        monkeypatch.setattr(functional, "CHUNK_ROWS", chunk_rows)
    options = dict(num_layers=num_layers, nonlinearity=nonlinearity, seed=11)
    lean, reference = Network(I, H, O, **options), Network(I, H, O, **options)
    with compute_path(path):
        for call in range(2):                   # the second call reuses the workspace's arrays
            x, y, mask = problem(call, T, B, I, O, ids)
            loss, grads = lean.loss_and_grads(x, y, mask)
            expected = reference.forward_backward(x, y, mask, input_grad=False)
            assert_same_loss(loss, expected.loss)
            assert grads.keys() == expected.grads.keys()
            for name in grads:
                assert_same(grads[name], expected.grads[name], err_msg=f"call {call}: {name}")
    # The chunked mode really ran: the readout built no (T, B, H) dE/dh, the top layer held a chunk
    # for dE/dh_t (two buffers) or none besides dE/da_t's (one buffer; never with the small kernel).
    top = lean.workspaces[f"layers.{num_layers - 1}"].arrays
    top_inputs = H if num_layers > 1 else 0 if ids else I          # what the top layer's U multiplies
    steps = functional.chunk_steps(T, B, H, H * (H + top_inputs))
    assert "dh" not in lean.workspaces["readout"].arrays
    assert top["da"].shape == (steps, B, H)
    one_buffer = buffers == "one-buffer" and not (path == "numba" and size == "kernel-size")
    assert ("dh" in top) != one_buffer
    if not one_buffer:
        assert top["dh"].shape == (steps, B, H)
    if chunk_rows is not None:
        assert steps < T


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("H", [96, 256], ids=["two-buffers", "one-buffer"])
def test_lean_step_bit_identical_at_a_realistic_size(path, dtype, H):
    """Sizes with several default-sized chunks (B = 64: 16 steps a chunk) and GEMMs big enough
    for OpenBLAS to block and thread them: each chunk's dz V equals its rows of the all-steps GEMM.
    The rnn._ONE_BUFFER_GEMM threshold as shipped: B H^2 = 2^19.2 below it, 2^22 above."""
    T, B, I, O = 40, 64, 65, 65
    lean, reference = Network(I, H, O, seed=2, dtype=dtype), Network(I, H, O, seed=2, dtype=dtype)
    x, y, mask = problem(5, T, B, I, O, ids=True)
    with compute_path(path):
        loss, grads = lean.loss_and_grads(x, y, mask)
        expected = reference.forward_backward(x, y, mask, input_grad=False)
    assert_same_loss(loss, expected.loss)
    for name in grads:
        assert_same(grads[name], expected.grads[name], err_msg=name)
    top = lean.workspaces["layers.0"].arrays
    assert top["da"].shape[0] < T
    assert ("dh" in top) == (B * H * H < rnn._ONE_BUFFER_GEMM)


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_layer_backward_takes_the_readout_grad_a_chunk_at_a_time(monkeypatch, path, ids):
    """RNNLayer.backward with a ChunkedReadoutGrad: the same dx, dE/dh0 and gradients as with the
    (T, B, H) array, dh_total None; the array it would have read is never built."""
    monkeypatch.setattr(functional, "CHUNK_ROWS", 6)    # 2 steps a chunk at B = 3
    T, B, I, H, O = 7, 3, 4, 5, 6
    net = Network(I, H, O, seed=4)
    layer, readout = net.layers[0], net.readout
    x, _, _ = problem(1, T, B, I, O, ids)
    rng = np.random.default_rng(0)
    dz = rng.standard_normal((T, B, O))
    dstate = (rng.standard_normal((B, H)),)
    with compute_path(path):
        _, _, cache = layer.forward(x, layer.zero_state(B))
        h = cache.hs[1:]
        results = []
        for chunked in (False, True):
            grads = {k: np.zeros_like(v) for k, v in [*layer.params.items(), *readout.params.items()]}
            dh = readout.backward(dz, h, grads, chunked=chunked)
            assert isinstance(dh, ChunkedReadoutGrad) == chunked
            assert dh.shape == (T, B, H)
            dx, dh0, total = layer.backward(dh, dstate, cache, grads, overwrite_dh=True)
            assert (total is None) == chunked
            results.append((dx, dh0[0], grads))
    (dx_a, dh0_a, grads_a), (dx_b, dh0_b, grads_b) = results
    assert (dx_a is None) == (dx_b is None) == ids
    if not ids:
        assert_same(dx_b, dx_a)
    assert_same(dh0_b, dh0_a)
    for name in grads_a:
        assert_same(grads_b[name], grads_a[name], err_msg=name)


def test_full_api_still_returns_dh_and_gated_cells_keep_the_array():
    """forward_backward / backward return dE/dh_t for every layer as before; the lean step keeps
    today's (T, B, H) path for cells whose backward does not accept the chunked form."""
    T, B, I, H, O = 5, 2, 3, 4, 6
    x, y, mask = problem(2, T, B, I, O, ids=False)
    net = Network(I, H, O, num_layers=2, seed=1)
    result = net.forward_backward(x, y, mask, input_grad=False)
    assert all(isinstance(d, np.ndarray) and d.shape == (T, B, H) for d in result.dh)
    for options in (dict(cell="gru", gru_variant="cho"), dict(bidirectional=True)):   # LSTM, torch GRU: chunked
        lean, reference = Network(I, H, O, seed=1, **options), Network(I, H, O, seed=1, **options)
        loss, grads = lean.loss_and_grads(x, y, mask)
        expected = reference.forward_backward(x, y, mask, input_grad=False)
        assert_same_loss(loss, expected.loss)
        for name in grads:
            assert_same(grads[name], expected.grads[name], err_msg=f"{options}: {name}")
        assert "dh" in lean.workspaces["readout"].arrays             # the (T, B, H) array, as before


def test_lean_step_peak_memory_drops_by_a_dh_array(monkeypatch, request):
    from bptt import kernels
    if not kernels.fast_paths():     # the saving is the fast paths'; the reference loop materialises dE/dh
        previous = kernels.use("numpy")
        request.addfinalizer(lambda: kernels.use(previous))
    T, B, I, H, O = 256, 16, 16, 128, 16
    x, y, _ = problem(0, T, B, I, O, ids=True)
    steps = functional.chunk_steps(T, B, H, H * H)
    assert steps < T                                                 # 64 steps a chunk
    itemsize = np.dtype(np.float64).itemsize
    peaks = {}
    for buffers, threshold in BUFFERS.items():
        monkeypatch.setattr(rnn, "_ONE_BUFFER_GEMM", threshold)
        peaks[buffers] = step_footprint_bytes(Network(I, H, O, seed=0), x, y)
    monkeypatch.setattr(RNNLayer, "accepts_chunked_dh", False)       # the (T, B, H) dE/dh array of before
    whole = step_footprint_bytes(Network(I, H, O, seed=0), x, y)
    # Measured: exactly (T - steps) B H floats less with two buffers (the scratch (T, B, H) dE/dh vs a
    # (steps, B, H) chunk) and T B H less with one; the slack only absorbs tracemalloc's count of
    # small Python objects.
    slack = 2**15
    assert whole - peaks["two-buffers"] >= (T - steps) * B * H * itemsize - slack, (whole, peaks)
    assert whole - peaks["one-buffer"] >= T * B * H * itemsize - slack, (whole, peaks)
