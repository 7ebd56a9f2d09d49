"""minGRU and minLSTM (Feng et al. 2024): finite differences, a torch autograd reference written from
the equations (test-only), the linear scan's two forms and its compiled loop, and the closed-form
Jacobian diag(a_t) against the one measured through the layer's own backward."""

import itertools

import numpy as np
import pytest

from bptt import Network, kernels
from bptt import diagnostics as D
from bptt.gradcheck import check_network, random_lengths, random_problem, relative_error
from bptt.layers.scan import linear_scan, linear_scan_backward

CELLS = ["mingru", "minlstm"]


@pytest.mark.parametrize("path", ["numpy", "numba"])
@pytest.mark.parametrize("cell,bidirectional,layers,ids,lengths",
                         [(c, b, n, i, L) for c, b, n, i, L in itertools.product(CELLS, [False, True], [1, 3],
                                                                                 [False, True], [False, True])
                          if (n == 1) or (i == L)])
def test_finite_differences(path, cell, bidirectional, layers, ids, lengths):
    if path == "numba":
        pytest.importorskip("numba")
    net = Network(5, 4, 3, num_layers=layers, cell=cell, bidirectional=bidirectional, seed=1)
    x, y, mask, h0 = random_problem(net, 6, 4, seed=2, token_ids=ids, masked=True)
    with kernels.using(path):
        errors = check_network(net, x, y, mask, h0, lengths=random_lengths(4, 6, seed=3) if lengths else None)
    assert max(errors.values()) < 1e-6, errors


def test_a_broken_gradient_is_caught(monkeypatch):
    import bptt.layers.minlstm as minlstm
    net = Network(3, 4, 2, cell="minlstm", seed=0)
    x, y, _, h0 = random_problem(net, 5, 2)
    original = minlstm.linear_scan_backward

    def no_recurrent_path(a, h, h0, dh, dh_final=None):            # forgets a_{t+1} g_{t+1}
        return original(np.zeros_like(a), h, h0, dh, dh_final)

    monkeypatch.setattr(minlstm, "linear_scan_backward", no_recurrent_path)
    with kernels.using("numpy"):                                    # the path that calls the scan's backward
        assert max(check_network(net, x, y, None, h0).values()) > 1e-3


def torch_min_cell(torch, cell, U, b, x, h0):
    """The cell from its docstring's equations, in torch autograd: h (T, B, H)."""
    H = h0.shape[1]
    A = x @ U.T + b
    h, outs = h0, []
    for t in range(x.shape[0]):
        if cell == "mingru":
            z = torch.sigmoid(A[t, :, :H])
            h = (1 - z) * h + z * A[t, :, H:]
        else:
            f, i = torch.sigmoid(A[t, :, :H]), torch.sigmoid(A[t, :, H:2 * H])
            h = f / (f + i) * h + i / (f + i) * A[t, :, 2 * H:]
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_torch_autograd_reference(cell, layers):
    torch = pytest.importorskip("torch")
    net = Network(4, 5, 3, num_layers=layers, cell=cell, seed=4)
    x, y, _, h0 = random_problem(net, 7, 3, seed=4)
    upstream = np.random.default_rng(5).standard_normal(h0.shape)
    fwd = net.forward(x, h0)
    loss, dz = net.output_loss(fwd, y)
    bwd = net.backward(fwd, dz, dfinal_state=upstream)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    xt = torch.tensor(x, requires_grad=True)
    inp, finals = xt, []
    for k in range(layers):
        hk = torch_min_cell(torch, cell, params[f"layers.{k}.U"], params[f"layers.{k}.b"], inp,
                            torch.tensor(h0[k]))
        finals.append(hk[-1])
        inp = hk
    logits = inp @ params["V"].T + params["c"]
    T, B = y.shape
    t_loss = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), torch.tensor(y).reshape(-1),
                                               reduction="sum") / B
    (t_loss + (torch.tensor(upstream) * torch.stack(finals)).sum()).backward()
    assert abs(loss - t_loss.item()) <= 1e-12 * abs(loss)
    for k, p in params.items():
        assert relative_error(bwd.grads[k], p.grad.numpy()) <= 1e-9, k
    assert relative_error(bwd.dinputs, xt.grad.numpy()) <= 1e-9


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_scan_forms_and_kernel_agree(dtype):
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 1.0, (37, 3, 5)).astype(dtype)
    b = rng.standard_normal((37, 3, 5)).astype(dtype)
    h0 = rng.standard_normal((3, 5)).astype(dtype)
    with kernels.using("numpy"):
        seq = linear_scan(a, b, h0)
        loop = h0.copy()
        for t in range(37):
            loop = a[t] * loop + b[t]
            np.testing.assert_array_equal(seq[t], loop)            # the scan is the recurrence
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for block in (1, 4, 16, 64):
        np.testing.assert_allclose(linear_scan(a, b, h0, method="blocked", block=block), seq, rtol=tol, atol=tol)
    if kernels.enabled() or pytest.importorskip("numba"):
        with kernels.using("numba"):
            np.testing.assert_array_equal(linear_scan(a, b, h0), seq)   # same two roundings per element
            dh = rng.standard_normal(a.shape).astype(dtype)
            got = linear_scan_backward(a, seq, h0, dh)
        with kernels.using("numpy"):
            want = linear_scan_backward(a, seq, h0, dh)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="method must be"):
        linear_scan(a, b, h0, method="parallel")


@pytest.mark.parametrize("cell", CELLS)
def test_closed_form_jacobian_is_the_measured_one(cell):
    net = Network(3, 4, 2, cell=cell, seed=2)
    x, _, _, h0 = random_problem(net, 6, 2, seed=2)
    closed = D.state_jacobians(net, x, h0, method="closed_form")
    measured = D.state_jacobians(net, x, h0, method="protocol")
    np.testing.assert_allclose(closed, measured, rtol=1e-12, atol=1e-15)
    off_diagonal = closed * (1 - np.eye(4))
    assert np.all(off_diagonal == 0) and np.all(np.diagonal(closed, axis1=2, axis2=3) > 0)


def test_min_cells_have_no_recurrent_matrix_and_save(tmp_path):
    from bptt.io.checkpoint import load_checkpoint, save_checkpoint
    for cell, rows in (("mingru", 2), ("minlstm", 3)):
        net = Network(3, 4, 2, num_layers=2, cell=cell, bidirectional=True)
        assert net.params["layers.0.U"].shape == (rows * 4, 3) and "layers.0.W" not in net.params
        back = load_checkpoint(save_checkpoint(str(tmp_path / f"{cell}.npz"), net)).network()
        x = np.random.default_rng(0).standard_normal((4, 2, 3))
        np.testing.assert_array_equal(back.forward(x).outputs, net.forward(x).outputs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_kernels_give_the_numpy_paths_bits(cell, dtype):
    pytest.importorskip("numba")
    net = Network(5, 6, 4, num_layers=2, cell=cell, dtype=dtype, seed=3)
    x, y, mask, _ = random_problem(net, 9, 3, seed=3, masked=True)
    x = x.astype(dtype)
    h0 = 0.3 * np.ones((2, 3, 6), dtype)
    results = {}
    for path in ("numpy", "numba"):
        with kernels.using(path):
            results[path] = net.forward_backward(x, y, mask, h0)
    a, b = results["numpy"], results["numba"]
    assert a.loss == b.loss
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.dinputs, b.dinputs)
    np.testing.assert_array_equal(a.dh0, b.dh0)
    for k in a.grads:
        np.testing.assert_array_equal(a.grads[k], b.grads[k], err_msg=k)
