"""Diagnostics: the lecture's decomposition adds up to BPTT, each term is the gradient of
the weights used at that step (torch, per-step copies of W), Jacobian products match
finite differences through ``layer.step`` and torch autograd, spectra/saturation/gates."""

import numpy as np
import pytest

import bptt
from bptt import diagnostics as D
from bptt.diagnostics import spectra
from bptt.gradcheck import random_problem, relative_error

CELLS = ["rnn", "lstm", "gru"]


def _net(cell="rnn", **kw):
    kw.setdefault("seed", 3)
    return bptt.Network(3, 4, 5, cell=cell, **kw)


# ------------------------------------------------------------------ decomposition
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers,param", [(1, "W"), (1, "U"), (1, "b"), (2, "W"), (2, "layers.0.W"),
                                              (2, "layers.0.U")])
def test_contributions_sum_to_the_bptt_gradient_of_E_t(cell, num_layers, param):
    net = _net(cell, num_layers=num_layers)
    x, y, mask, h0 = random_problem(net, 6, 3, seed=1, masked=True)
    full = param if param.startswith("layers.") else f"layers.{num_layers - 1}.{param}"
    for t in (1, 4, 5):
        C = D.step_contributions(net, x, y, t, param, mask=mask, h0=h0)
        assert C.shape == (t + 1,) + net.params[full].shape
        only_t = np.zeros_like(mask)
        only_t[t] = mask[t]                                   # E_t alone is the loss under this mask
        _, grads = net.loss_and_grads(x, y, only_t, h0)
        assert np.abs(grads[full]).max() > 0
        assert relative_error(C.sum(0), grads[full]) < 1e-12


def test_contributions_with_token_ids_and_mse():
    net = bptt.Network(6, 4, 3, seed=0, loss="mse")
    x, y, _, h0 = random_problem(net, 5, 2, token_ids=True)
    C = D.step_contributions(net, x, y, -1, "U", h0=h0)
    mask = np.zeros((5, 2))
    mask[-1] = 1
    _, grads = net.loss_and_grads(x, y, mask, h0)
    assert relative_error(C.sum(0), grads["layers.0.U"]) < 1e-12


def test_each_term_is_the_gradient_of_the_weights_used_at_that_step():
    """Give every step its own copy W_k of W (torch autograd): term k is dE_t/dW_k."""
    torch = pytest.importorskip("torch")
    net = bptt.Network(3, 4, 5, seed=7)
    x, y, _, h0 = random_problem(net, 6, 2, seed=2)
    t = 5
    C = D.step_contributions(net, x, y, t, "W", h0=h0)
    p = {k: torch.tensor(v) for k, v in net.params.items()}
    copies = [p["layers.0.W"].clone().requires_grad_(True) for _ in range(t + 1)]
    h = torch.tensor(h0[0])
    for k in range(t + 1):
        h = torch.tanh(torch.tensor(x[k]) @ p["layers.0.U"].T + h @ copies[k].T + p["layers.0.b"])
    logits = h @ p["V"].T + p["c"]
    E_t = torch.nn.functional.cross_entropy(logits, torch.tensor(y[t]), reduction="mean")
    E_t.backward()
    for k in range(t + 1):
        assert relative_error(C[k], copies[k].grad.numpy()) < 1e-10


def test_contribution_table_lag_profile_and_effective_memory():
    net = _net("rnn", spectral_radius=0.3)
    x, y, _, h0 = random_problem(net, 8, 2, seed=4)
    mask = np.ones((8, 2))
    mask[2] = 0                                             # a step without loss gives a NaN row
    table = D.contribution_norms(net, x, y, "W", mask=mask, h0=h0)
    assert table.shape == (8, 8)
    assert np.all(np.isnan(table[np.triu_indices(8, 1)]))
    assert np.all(np.isnan(table[2]))
    C = D.step_contributions(net, x, y, 6, "W", mask=mask, h0=h0)
    np.testing.assert_allclose(table[6, :7], np.sqrt((C ** 2).sum(axis=(1, 2))), rtol=1e-12)
    profile = D.lag_profile(table)
    rows = [t for t in range(8) if t != 2]
    assert profile[1] == pytest.approx(sum(table[t, t - 1] for t in rows if t >= 1))
    mean = D.lag_profile(table, reduce="mean")
    assert mean[7] == pytest.approx(table[7, 0])
    # small spectral radius: the gradient fades with the lag
    assert mean[5] < 0.1 * mean[0]
    lag = D.effective_memory(mean, 0.1)
    assert lag is not None and mean[lag] < 0.1 * mean[0] and np.all(mean[:lag] >= 0.1 * mean[0])
    assert D.effective_memory(np.array([1.0, 0.9, 0.8]), 0.5) is None


def test_bad_arguments_name_argument_and_value():
    net = _net()
    x, y, _, _ = random_problem(net, 4, 2)
    with pytest.raises(ValueError, match="param must be .*'V'"):
        D.step_contributions(net, x, y, 1, "V")
    with pytest.raises(ValueError, match="t must be in .* got 9"):
        D.step_contributions(net, x, y, 9, "W")
    with pytest.raises(ValueError, match="layer must be in .* got 3"):
        D.jacobian_norms(net, x, layer=3)
    with pytest.raises(ValueError, match="ord must be .* got 1"):
        D.jacobian_norms(net, x, ord=1)
    with pytest.raises(ValueError, match="reduce must be"):
        D.lag_profile(np.zeros((2, 2)), reduce="max")
    with pytest.raises(ValueError, match="fraction must be"):
        D.effective_memory(np.ones(3), 1.5)
    with pytest.raises(ValueError, match="bidirectional"):
        D.jacobian_norms(bptt.Network(3, 4, 5, bidirectional=True), x)


# ------------------------------------------------------------------ Jacobians
def _step_to(layer, xs, state, k, t):
    """Run layer.step from the state after step k up to step t (independent of the diagnostics)."""
    for j in range(k + 1, t + 1):
        _, state = layer.step(xs[j], state)
    return state


def _fd_jacobian_norms(net, x, h0, index, t, k, ord):
    """||ds_t/ds_k|| per example by central differences through layer.step, batch mean."""
    layer = net.layers[index]
    net.eval()
    fwd = net.forward(x, h0)
    xs = fwd.inputs if index == 0 else fwd.hidden[index - 1]
    state = net._split_state(h0, x.shape[1])[index]
    for j in range(k + 1):
        _, state = layer.step(xs[j], state)                 # state after step k
    sizes = [s.shape[1] for s in state]
    flat = np.concatenate(state, axis=1)                     # (B, S)
    B, S = flat.shape
    eps = 1e-6
    norms = []
    for b in range(B):
        J = np.empty((S, S))
        for i in range(S):
            cols = []
            for sign in (1, -1):
                pert = flat.copy()
                pert[b, i] += sign * eps
                parts = tuple(np.split(pert, np.cumsum(sizes)[:-1], axis=1))
                cols.append(np.concatenate(_step_to(layer, xs, parts, k, t), axis=1)[b])
            J[:, i] = (cols[0] - cols[1]) / (2 * eps)
        norms.append(np.linalg.norm(J, 2 if ord == 2 else "fro"))
    return float(np.mean(norms))


@pytest.mark.parametrize("cell", CELLS + ["rnn-relu", "gru-cho"])
def test_jacobian_norms_match_finite_differences(cell):
    kw = {"nonlinearity": "relu"} if cell == "rnn-relu" else {"gru_variant": "cho"} if cell == "gru-cho" else {}
    net = bptt.Network(3, 3, 2, cell=cell.split("-")[0], num_layers=2, seed=5, **kw)
    x, _, _, h0 = random_problem(net, 5, 2, seed=3)
    for ord in (2, "fro"):
        for index in (0, 1):
            J = D.jacobian_norms(net, x, h0, layer=index, ord=ord)
            assert np.all(np.isnan(J[np.triu_indices(5, 1)]))
            for t, k in [(4, 0), (3, 1), (4, 3)]:
                assert J[t, k] == pytest.approx(_fd_jacobian_norms(net, x, h0, index, t, k, ord), rel=1e-6)


def test_closed_form_and_protocol_factors_agree_for_the_rnn():
    net = bptt.Network(3, 4, 2, num_layers=2, seed=1)
    x, _, _, h0 = random_problem(net, 6, 3)
    a = D.state_jacobians(net, x, h0, layer=0, method="closed_form")
    b = D.state_jacobians(net, x, h0, layer=0, method="protocol")
    assert a.shape == (6, 3, 4, 4)
    assert np.abs(a - b).max() < 1e-13
    with pytest.raises(ValueError, match="closed_form"):
        D.state_jacobians(_net("lstm"), x, method="closed_form")


def test_single_row_equals_the_full_table():
    net = _net("lstm")
    x, _, _, h0 = random_problem(net, 6, 2)
    full = D.jacobian_norms(net, x, h0, ord="fro")
    row = D.jacobian_norms(net, x, h0, ord="fro", t=4)
    np.testing.assert_allclose(row[4, :5], full[4, :5], rtol=1e-12)
    assert np.all(np.isnan(np.delete(row, 4, axis=0)))


def test_lstm_jacobian_of_the_full_state_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    net = bptt.Network(3, 4, 2, cell="lstm", seed=2)
    x, _, _, (h0, c0) = random_problem(net, 5, 2, seed=6)
    J = D.jacobian_norms(net, x, (h0, c0), ord=2)
    cell = torch.nn.LSTMCell(3, 4, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(net.params["layers.0.U"]))
        cell.weight_hh.copy_(torch.tensor(net.params["layers.0.W"]))
        cell.bias_ih.copy_(torch.tensor(net.params["layers.0.b"]))
        cell.bias_hh.zero_()
    xs = torch.tensor(x)
    state = (torch.tensor(h0[0]), torch.tensor(c0[0]))
    states = []
    for j in range(5):
        state = cell(xs[j], state)
        states.append(torch.cat(state, dim=1).detach())

    def run(s_k, k, t):
        h, c = s_k[:, :4], s_k[:, 4:]
        for j in range(k + 1, t + 1):
            h, c = cell(xs[j], (h, c))
        return torch.cat([h, c], dim=1)

    for t, k in [(4, 0), (2, 1)]:
        jac = torch.autograd.functional.jacobian(lambda s: run(s, k, t), states[k])   # (B, S, B, S)
        per_example = [torch.linalg.matrix_norm(jac[b, :, b, :], ord=2).item() for b in range(2)]
        assert J[t, k] == pytest.approx(np.mean(per_example), rel=1e-10)


def test_rnn_jacobian_bounded_by_powers_of_the_largest_singular_value():
    net = bptt.Network(2, 6, 2, seed=0, recurrent_init="orthogonal", spectral_radius=0.5)
    x, _, _, h0 = random_problem(net, 8, 3)
    J = D.jacobian_norms(net, x, h0)
    sigma = spectra.singular_values(net.params["layers.0.W"])[0]
    for t in range(8):
        for k in range(t + 1):
            assert J[t, k] <= sigma ** (t - k) * (1 + 1e-12)


# ------------------------------------------------------------------ spectra, saturation, gates
def test_spectrum_saturation_and_gate_means():
    W = np.diag([3.0, -0.5, 0.1])
    np.testing.assert_allclose(spectra.singular_values(W), [3.0, 0.5, 0.1])
    assert spectra.spectral_radius(W) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="square"):
        spectra.spectral_radius(np.ones((2, 3)))
    net = _net("lstm", recurrent_init="orthogonal")
    summary = spectra.spectrum(net)["layers.0.W"]
    assert summary["blocks"] == ["input", "forget", "cell", "output"]
    np.testing.assert_allclose(summary["max_singular"], 1.0)
    x, _, _, h0 = random_problem(net, 5, 3)
    fwd = net.forward(x, h0)
    gates = spectra.gate_means(net, x, h0)
    np.testing.assert_allclose(gates["forget"], fwd.caches[0].gates[..., 4:8].mean(axis=(1, 2)))
    assert spectra.gate_means(_net("rnn"), x) == {}
    # tanh units driven hard saturate; tiny weights do not
    big = _net("rnn")
    x, _, _, h0 = random_problem(big, 5, 3)
    for name in ("layers.0.U", "layers.0.W"):
        big.params[name] *= 100
    assert spectra.saturation(big, 10 * x, h0) > 0.5
    small = _net("rnn")
    for name in ("layers.0.U", "layers.0.W", "layers.0.b"):
        small.params[name] *= 0.01
    assert spectra.saturation(small, x) == 0.0
    relu = bptt.Network(3, 4, 5, nonlinearity="relu", seed=0)
    fwd = relu.forward(x)
    assert spectra.saturation(relu, x) == pytest.approx(np.mean(fwd.hidden[0] <= 0))
