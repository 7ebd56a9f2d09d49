"""The lean training step (``Network.loss_and_grads``) hands a top LSTM or (torch-variant) GRU
layer dE/dh_t = dz_t V from the readout one chunk of time steps at a time
(``readout.ChunkedReadoutGrad``), as tests/test_lean_memory.py checks for the RNN: no (T, B, H)
dE/dh array exists. On the numpy path the chunk goes into a buffer the chunk no longer needs
(LSTM: tanh(c_t) once the chunk's factors are formed; GRU: tmp), on the kernel path into a
(steps, B, H) buffer of its own. It must not change a single bit of the loss or any gradient,
on both compute paths, and it must really lower the step's peak memory. (The float32 LSTM
kernel also computes tanh(c_t) inside its backward step now, kernels/lstm.py
backward_step_tanh: no tanh(c_t) chunk buffer, the same bits.)
"""

import tracemalloc

import numpy as np
import pytest

from bptt import functional
from bptt.layers.gru import GRULayer
from bptt.layers.lstm import LSTMLayer
from bptt.layers.readout import ChunkedReadoutGrad
from bptt.network import Network
from bptt.benchmark.extras import step_footprint_bytes
from lean_helpers import compute_path, problem, assert_same, assert_same_loss

CELLS = {"lstm": LSTMLayer, "gru": GRULayer}
# rows per unit of H that chunk_steps is told each chunk saves, by cell and path (the layers' own
# numbers: LSTM 5 H kernel / 6 H numpy; GRU 6 H / 7 H)
SAVED_PER_ROW = {("lstm", "numba"): 5, ("lstm", "numpy"): 6, ("gru", "numba"): 6, ("gru", "numpy"): 7}
GATES = {"lstm": 4, "gru": 3}


def _steps(cell, path, T, B, H, top_inputs):
    return functional.chunk_steps(T, B, SAVED_PER_ROW[cell, path] * H, GATES[cell] * H * (H + top_inputs))


def _assert_same(lean, reference, x, y, mask, label=""):
    loss, grads = lean.loss_and_grads(x, y, mask)
    expected = reference.forward_backward(x, y, mask, input_grad=False)
    assert_same_loss(loss, expected.loss, label)
    assert grads.keys() == expected.grads.keys()
    for name in grads:
        assert_same(grads[name], expected.grads[name], err_msg=f"{label} {name}")


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
@pytest.mark.parametrize("chunk_rows", [None, 4], ids=["one-chunk", "chunks"])
def test_lean_step_is_bit_identical_to_forward_backward(monkeypatch, path, cell, dtype, num_layers, ids,
                                                        chunk_rows):
    T, B, I, H, O = 9, 3, 4, 5, 7
    if chunk_rows is not None:                  # several chunks (2 steps each), an uneven last one
        monkeypatch.setattr(functional, "CHUNK_ROWS", chunk_rows)
    options = dict(cell=cell, num_layers=num_layers, seed=11, dtype=dtype)
    lean, reference = Network(I, H, O, **options), Network(I, H, O, **options)
    with compute_path(path):
        for call in range(2):                   # the second call reuses the workspace's arrays
            x, y, mask = problem(call, T, B, I, O, ids, dtype)
            _assert_same(lean, reference, x, y, mask, f"call {call}:")
    # The chunked mode really ran: the readout built no (T, B, H) dE/dh; the top layer held a
    # (steps, B, H) chunk for it on the kernel path and none of its own on the numpy path.
    top = lean.workspaces[f"layers.{num_layers - 1}"].arrays
    top_inputs = H if num_layers > 1 else 0 if ids else I
    steps = _steps(cell, path, T, B, H, top_inputs)
    assert "dh" not in lean.workspaces["readout"].arrays
    assert top["da"].shape == (steps, B, GATES[cell] * H)
    assert ("dh" in top) == (path == "numba")
    if path == "numba":
        assert top["dh"].shape == (steps, B, H)
    # float32 LSTM kernels compute tanh(c_t) inside the step (kernels/lstm.py backward_step_tanh)
    fused_tanh = cell == "lstm" and path == "numba" and dtype == "float32"
    assert ("tanh_c" in top) == (cell == "lstm" and not fused_tanh)
    if chunk_rows is not None:
        assert steps < T
    else:
        assert steps == T


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lean_step_bit_identical_at_a_realistic_size(path, cell, dtype):
    """Several default-sized chunks (B = 64: 16 steps a chunk) and GEMMs big enough for OpenBLAS
    to block and thread them: each chunk's dz V equals its rows of the all-steps GEMM."""
    T, B, I, H, O = 40, 64, 65, 96, 65
    options = dict(cell=cell, seed=2, dtype=dtype)
    lean, reference = Network(I, H, O, **options), Network(I, H, O, **options)
    x, y, mask = problem(5, T, B, I, O, ids=True)
    with compute_path(path):
        _assert_same(lean, reference, x, y, mask)
    top = lean.workspaces["layers.0"].arrays
    assert top["da"].shape[0] < T
    assert "dh" not in lean.workspaces["readout"].arrays


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "separate-dh"])
def test_fused_tanh_lstm_kernel_is_bit_identical(in_place):
    """kernels/lstm.py backward_step_tanh (float32) = tanh_into, then backward_step, bit for bit."""
    pytest.importorskip("numba")
    from bptt.kernels import lstm as lstm_kernels
    T, B, H, n = 6, 3, 37, 4                    # H not a multiple of the vector width: the loop's tail runs
    rng = np.random.default_rng(7)

    def f32(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    gates = rng.uniform(0.0, 1.0, (T, B, 4 * H)).astype(np.float32)
    cs = f32(T + 1, B, H, scale=3.0)            # beyond tanh32's clamp at |c| ~ 7.9 too
    cs[2, 0, :4] = [9.0, -9.0, 0.0, 1e-30]
    dh = f32(T, B, H)
    dh_next, dc = f32(B, H), f32(B, H)
    start = 1
    outputs = []
    for fused in (False, True):
        above = dh.copy()
        total = above if in_place else np.empty_like(dh)
        through, cell_grad = dh_next.copy(), dc.copy()
        da = np.empty((n, B, 4 * H), np.float32)
        for k in range(n - 1, -1, -1):
            t = start + k
            if fused:
                lstm_kernels.backward_step_tanh(t, k, above, total, through, cell_grad, gates, cs, da)
            else:
                tanh_c = lstm_kernels.tanh_into(cs[start + 1:start + n + 1], np.empty((n, B, H), np.float32))
                lstm_kernels.backward_step(t, k, above, total, through, cell_grad, gates, cs, tanh_c, da)
            through = da[k][:, :H] + da[k][:, H:2 * H]           # some dE/dh_{t-1} for the next step
        outputs.append((total[start:start + n].copy(), through, cell_grad, da))
    for a, b in zip(*outputs):
        assert_same(b, a)


def _layer_problem(cell, T, B, I, H, O, ids):
    net = Network(I, H, O, cell=cell, seed=4)
    x, _, _ = problem(1, T, B, I, O, ids)
    rng = np.random.default_rng(0)
    dz = rng.standard_normal((T, B, O))
    dstate = tuple(rng.standard_normal((B, H)) for _ in net.layers[0].state_names)
    return net, x, dz, dstate


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("ids", [False, True], ids=["floats", "ids"])
def test_layer_backward_takes_the_readout_grad_a_chunk_at_a_time(monkeypatch, path, cell, ids):
    """LSTMLayer / GRULayer.backward with a ChunkedReadoutGrad: the same dx, dE/d(state0) and
    gradients as with the (T, B, H) array, from a nonzero final-state gradient; dh_total None."""
    monkeypatch.setattr(functional, "CHUNK_ROWS", 6)    # 2 steps a chunk at B = 3
    T, B, I, H, O = 7, 3, 4, 5, 6
    net, x, dz, dstate = _layer_problem(cell, T, B, I, H, O, ids)
    layer, readout = net.layers[0], net.readout
    assert layer.accepts_chunked_dh
    with compute_path(path):
        _, _, cache = layer.forward(x, layer.zero_state(B))
        h = cache.hs[1:]
        results = []
        for chunked in (False, True):
            grads = {k: np.zeros_like(v) for k, v in [*layer.params.items(), *readout.params.items()]}
            dh = readout.backward(dz, h, grads, chunked=chunked)
            assert isinstance(dh, ChunkedReadoutGrad) == chunked
            dx, dstate0, total = layer.backward(dh, dstate, cache, grads, overwrite_dh=True)
            assert (total is None) == chunked
            results.append((dx, dstate0, grads))
    (dx_a, state_a, grads_a), (dx_b, state_b, grads_b) = results
    assert (dx_a is None) == (dx_b is None) == ids
    if not ids:
        assert_same(dx_b, dx_a)
    assert len(state_a) == len(state_b) == len(layer.state_names)
    for a, b in zip(state_a, state_b):
        assert_same(b, a)
    for name in grads_a:
        assert_same(grads_b[name], grads_a[name], err_msg=name)


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_wrong_chunk_is_caught(monkeypatch, path, cell):
    """The comparisons above notice a chunk handed out for the wrong steps (each chunk filled
    with the rows of the chunk before it in time): the chunked path really reads the chunks."""
    monkeypatch.setattr(functional, "CHUNK_ROWS", 6)
    good = ChunkedReadoutGrad.fill

    def shifted(self, start, stop, out):
        if start == 0:
            return good(self, start, stop, out)
        n = stop - start
        good(self, start - 1, stop - 1, out)
        return out[:n]

    monkeypatch.setattr(ChunkedReadoutGrad, "fill", shifted)
    T, B, I, H, O = 7, 3, 4, 5, 6
    x, y, mask = problem(3, T, B, I, O, ids=True)
    lean, reference = Network(I, H, O, cell=cell, seed=6), Network(I, H, O, cell=cell, seed=6)
    with compute_path(path), pytest.raises(AssertionError):
        _assert_same(lean, reference, x, y, mask)


def test_cho_gru_and_bidirectional_keep_the_array():
    """The Cho GRU (no chunked backward) and bidirectional layers take the (T, B, H) dE/dh array
    in the lean step as before, with the same bits; forward_backward still returns dE/dh_t."""
    T, B, I, H, O = 5, 2, 3, 4, 6
    x, y, mask = problem(2, T, B, I, O, ids=False)
    assert GRULayer(I, H, rng=np.random.default_rng(0)).accepts_chunked_dh
    assert not GRULayer(I, H, variant="cho", rng=np.random.default_rng(0)).accepts_chunked_dh
    for options in (dict(cell="gru", gru_variant="cho"), dict(cell="lstm", bidirectional=True),
                    dict(cell="gru", bidirectional=True)):
        lean, reference = Network(I, H, O, seed=1, **options), Network(I, H, O, seed=1, **options)
        _assert_same(lean, reference, x, y, mask, str(options))
        assert "dh" in lean.workspaces["readout"].arrays             # the (T, B, H) array, as before
    for cell in CELLS:
        result = Network(I, H, O, cell=cell, num_layers=2, seed=1).forward_backward(x, y, mask, input_grad=False)
        assert all(isinstance(d, np.ndarray) and d.shape == (T, B, H) for d in result.dh)


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_lean_step_peak_memory_drops_by_a_dh_array(monkeypatch, path, cell):
    T, B, I, H, O = 256, 16, 16, 128, 16
    x, y, _ = problem(0, T, B, I, O, ids=True)
    steps = _steps(cell, path, T, B, H, 0)
    assert steps < T                                                 # 64 steps a chunk
    itemsize = np.dtype(np.float64).itemsize
    with compute_path(path):
        chunked = step_footprint_bytes(Network(I, H, O, cell=cell, seed=0), x, y)
        monkeypatch.setattr(CELLS[cell], "accepts_chunked_dh", False)   # the (T, B, H) dE/dh array of before
        whole = step_footprint_bytes(Network(I, H, O, cell=cell, seed=0), x, y)
    # Measured: exactly (T - steps) B H floats less on the kernel path (the (T, B, H) dE/dh vs a
    # (steps, B, H) chunk) and T B H less on the numpy path (the chunk reuses a buffer); the slack
    # only absorbs tracemalloc's count of small Python objects.
    saved = (T - steps if path == "numba" else T) * B * H * itemsize
    slack = 2**15
    assert whole - chunked >= saved - slack, (whole, chunked, saved)


def _backward_peak_bytes(net, x, y) -> int:
    """The traced peak while the top layer's backward runs, above what was traced on its entry:
    what that backward allocates beyond the network's kept scratch arrays."""
    layer = net.layers[-1]
    backward, seen = layer.backward, []

    def traced(*args, **kwargs):
        entry, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = backward(*args, **kwargs)
        seen.append(tracemalloc.get_traced_memory()[1] - entry)
        return result

    net.loss_and_grads(x, y)                                          # fills the workspaces
    layer.backward = traced
    tracemalloc.start()
    try:
        net.loss_and_grads(x, y)
    finally:
        tracemalloc.stop()
        del layer.backward
    (peak,) = seen
    return peak


@pytest.mark.parametrize("path", ["numba", "numpy"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_chunked_backward_allocates_no_more_than_the_array_path(monkeypatch, path, cell):
    """The top layer's backward itself: taking dE/dh a chunk at a time allocates nothing the array
    path does not (its chunk is a kept scratch array, or on the numpy path a reused one), so the
    step's saving does not hinge on where its peak happens to fall. Float inputs: with token ids
    scatter_add_columns' (steps B, G H) temporary would set the backward's peak after the loop."""
    T, B, I, H, O = 256, 16, 16, 128, 16
    x, y, _ = problem(0, T, B, I, O, ids=False)
    with compute_path(path):
        chunked = _backward_peak_bytes(Network(I, H, O, cell=cell, seed=0), x, y)
        monkeypatch.setattr(CELLS[cell], "accepts_chunked_dh", False)
        whole = _backward_peak_bytes(Network(I, H, O, cell=cell, seed=0), x, y)
    assert chunked <= whole + 2**12, (chunked, whole)
