"""GRU, both variants (torch: reset after the recurrent matmul; Cho et al. 2014: before it):
every hand-derived gradient against float64 central differences, plus invariants."""

import itertools

import numpy as np
import pytest

import bptt
from bptt.functional import sigmoid
from bptt.gradcheck import check_network, random_problem
from bptt.layers.gru import GRULayer
from gated_layer_check import layer_gradient_errors, random_layer_inputs

TOL = 1e-6
VARIANTS = ("torch", "cho")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("T,B,ids,bias", [(4, 3, False, True), (1, 1, False, True), (1, 3, True, True),
                                          (5, 1, True, False), (3, 2, False, False)])
def test_layer_backward_random_upstream(variant, T, B, ids, bias, rng):
    layer = GRULayer(3, 4, variant=variant, bias=bias, rng=rng, dtype=np.float64)
    x, state0 = random_layer_inputs(layer, T, B, rng, ids=ids)
    errors = layer_gradient_errors(layer, x, state0, seed=T)
    expected = {"U", "W", "h0"} | (set() if ids else {"x"})
    if bias:
        expected |= {"b", "b_hn"} if variant == "torch" else {"b"}
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("variant,layers,ids,masked", list(itertools.product(
    VARIANTS, (1, 2, 3), (False, True), (False, True))))
def test_network_gradients_match_finite_differences(variant, layers, ids, masked):
    net = bptt.Network(5, 4, 3, num_layers=layers, cell="gru", gru_variant=variant, seed=layers)
    inputs, targets, mask, h0 = random_problem(net, seq_len=4, batch=2, seed=7, token_ids=ids, masked=masked)
    errors = check_network(net, inputs, targets, mask, h0)
    names = "U W b b_hn".split() if variant == "torch" else "U W b".split()
    expected = {f"layers.{l}.{p}" for l in range(layers) for p in names} | {"V", "c", "h0"}
    if not ids:
        expected.add("inputs")
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seq_len,batch", [(1, 1), (5, 1)])
def test_network_edge_lengths_and_mse(variant, seq_len, batch):
    net = bptt.Network(3, 4, 2, num_layers=2, cell="gru", gru_variant=variant, loss="mse", seed=3)
    inputs, targets, mask, h0 = random_problem(net, seq_len, batch, seed=1, masked=True)
    assert max(check_network(net, inputs, targets, mask, h0).values()) < TOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_the_equations_written_out(variant):
    """One step from the docstring's equations, gate slices [r, z, n]."""
    rng = np.random.default_rng(0)
    H = 4
    layer = GRULayer(3, H, variant=variant, rng=rng, dtype=np.float64)
    x, (h0,) = random_layer_inputs(layer, 1, 2, rng)
    U, W, b = layer.params["U"], layer.params["W"], layer.params["b"]
    ax = x[0] @ U.T + b
    r = sigmoid(ax[:, :H] + h0 @ W[:H].T)
    z = sigmoid(ax[:, H:2 * H] + h0 @ W[H:2 * H].T)
    if variant == "torch":
        n = np.tanh(ax[:, 2 * H:] + r * (h0 @ W[2 * H:].T + layer.params["b_hn"]))
    else:
        n = np.tanh(ax[:, 2 * H:] + (r * h0) @ W[2 * H:].T)
    h = (1 - z) * n + z * h0
    out, (hT,), _ = layer.forward(x, (h0,))
    np.testing.assert_allclose(out[0], h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(hT, h, rtol=1e-13, atol=1e-15)


def test_variants_differ_and_agree_when_reset_is_inert():
    """With W_n = 0 the reset gate cannot act in either variant (and b_hn = 0): the two agree;
    with W_n != 0 they differ -- the variants are really distinct computations."""
    rng = np.random.default_rng(1)
    nets = {v: bptt.Network(3, 4, 2, cell="gru", gru_variant=v, seed=2) for v in VARIANTS}
    for name in ("layers.0.U", "layers.0.W", "layers.0.b", "V", "c"):
        nets["cho"].params[name][...] = nets["torch"].params[name]
    x = rng.standard_normal((5, 2, 3))
    h0 = rng.standard_normal((1, 2, 4))
    assert not np.allclose(nets["torch"].forward(x, h0).outputs, nets["cho"].forward(x, h0).outputs)
    for net in nets.values():
        net.params["layers.0.W"][8:] = 0.0
    nets["torch"].params["layers.0.b_hn"][...] = 0.0
    np.testing.assert_allclose(nets["torch"].forward(x, h0).outputs, nets["cho"].forward(x, h0).outputs,
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_loop_equals_forward(variant, rng):
    layer = GRULayer(4, 3, variant=variant, rng=rng, dtype=np.float64)
    for ids in (False, True):
        x, state = random_layer_inputs(layer, 5, 2, rng, ids=ids)
        h, (hT,), _ = layer.forward(x, state)
        for t in range(5):
            h_t, state = layer.step(x[t], state)
            np.testing.assert_allclose(h_t, h[t], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(state[0], hT, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_stays_float32(variant):
    net = bptt.Network(4, 5, 3, num_layers=2, cell="gru", gru_variant=variant, dtype="float32", seed=0)
    inputs, targets, _, _ = random_problem(net, 4, 2, seed=0)
    result = net.forward_backward(inputs.astype(np.float32), targets)
    assert result.outputs.dtype == np.float32 and result.dh0.dtype == np.float32
    assert all(g.dtype == np.float32 for g in result.grads.values())


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="gru_variant must be one of .* got 'chung'"):
        bptt.Network(3, 4, 2, cell="gru", gru_variant="chung")
    with pytest.raises(ValueError, match="variant must be one of"):
        GRULayer(3, 4, variant="x", rng=np.random.default_rng(0))
