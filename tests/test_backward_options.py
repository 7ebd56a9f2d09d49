"""Backward-pass options that save work or memory must not change a single number:
``input_grad=False`` (skip dE/dx of the first layer) and ``overwrite_dh=True`` (a layer
writes dE/dh_t into the caller's dh array). Compared bit for bit with the default path,
which the finite-difference and torch-parity tests check; one float64 FD check as well."""

import numpy as np
import pytest

from bptt.gradcheck import numerical_gradient, relative_error
from bptt.network import Network

CASES = [dict(cell="rnn"), dict(cell="rnn", nonlinearity="relu"), dict(cell="lstm"),
         dict(cell="gru"), dict(cell="gru", gru_variant="cho"),
         dict(cell="rnn", bidirectional=True), dict(cell="lstm", num_layers=2, dropout=0.3),
         dict(cell="gru", num_layers=2, bidirectional=True)]


def _problem(seed, T=6, B=3, I=4, O=5, ids=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I))
    y = rng.integers(0, O, (T, B))
    mask = rng.uniform(0.5, 1.5, (T, B))
    return x, y, mask


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("ids", [False, True])
def test_input_grad_false_changes_nothing_but_dinputs(options, ids):
    x, y, mask = _problem(3, ids=ids)
    full_net, lean_net = Network(4, 3, 5, seed=7, **options), Network(4, 3, 5, seed=7, **options)
    full = full_net.forward_backward(x, y, mask)
    lean = lean_net.forward_backward(x, y, mask, input_grad=False)
    assert lean.dinputs is None
    assert (full.dinputs is None) == ids                  # the default still returns dE/dx for features
    assert lean.loss == full.loss
    for name in full.grads:
        np.testing.assert_array_equal(lean.grads[name], full.grads[name], err_msg=name)
    for layer, (a, b) in enumerate(zip(lean.dh, full.dh)):
        np.testing.assert_array_equal(a, b, err_msg=f"dh of layer {layer}")
    states_full = full.dh0 if isinstance(full.dh0, tuple) else (full.dh0,)
    states_lean = lean.dh0 if isinstance(lean.dh0, tuple) else (lean.dh0,)
    for a, b in zip(states_lean, states_full):
        np.testing.assert_array_equal(a, b)
    loss, grads = Network(4, 3, 5, seed=7, **options).loss_and_grads(x, y, mask)   # uses input_grad=False
    assert loss == full.loss
    for name in full.grads:
        np.testing.assert_array_equal(grads[name], full.grads[name], err_msg=name)


@pytest.mark.parametrize("options", CASES[:5], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_layer_overwrite_dh_writes_the_same_numbers_into_dh(options):
    net = Network(4, 3, 5, seed=2, **options)
    layer = net.layers[0]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3, 4))
    h, _, cache = layer.forward(x, layer.zero_state(3))
    dh = rng.standard_normal(h.shape)                     # random upstream gradient
    dstate = tuple(rng.standard_normal((3, 3)) for _ in layer.state_names)
    kept = dh.copy()
    grads_a = {k: np.zeros_like(v) for k, v in layer.params.items()}
    grads_b = {k: np.zeros_like(v) for k, v in layer.params.items()}
    dx_a, ds_a, total_a = layer.backward(dh, dstate, cache, grads_a)
    np.testing.assert_array_equal(dh, kept)               # the default never touches the caller's dh
    dx_b, ds_b, total_b = layer.backward(dh, dstate, cache, grads_b, overwrite_dh=True, input_grad=False)
    assert total_b is dh                                  # written in place ...
    np.testing.assert_array_equal(total_b, total_a)       # ... with the same numbers
    assert dx_b is None and dx_a.shape == x.shape
    for a, b in zip(ds_a, ds_b):
        np.testing.assert_array_equal(a, b)
    for name in grads_a:
        np.testing.assert_array_equal(grads_a[name], grads_b[name], err_msg=name)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_network_backward_leaves_the_callers_doutputs_alone(bidirectional):
    # Without a readout, dE/dh of the top layer *is* the caller's doutputs: it must not be overwritten.
    for T, B in ((1, 1), (5, 2)):
        net = Network(4, 3, None, loss="mse", bidirectional=bidirectional, num_layers=2, seed=1)
        rng = np.random.default_rng(0)
        fwd = net.forward(rng.standard_normal((T, B, 4)))
        dout = rng.standard_normal(fwd.outputs.shape)
        kept = dout.copy()
        bwd = net.backward(fwd, dout, input_grad=False)
        np.testing.assert_array_equal(dout, kept)
        assert bwd.dh[-1] is not dout and bwd.dinputs is None


def test_lean_gradients_match_finite_differences():
    """loss_and_grads (input_grad=False, dE/dh_t written in place) against central differences, float64."""
    net = Network(4, 3, 5, num_layers=2, cell="lstm", seed=11)
    x, y, mask = _problem(8)
    _, grads = net.loss_and_grads(x, y, mask)
    for name, param in net.params.items():
        numeric = numerical_gradient(lambda: net.loss_only(x, y, mask), param, 1e-6)
        assert relative_error(grads[name], numeric) < 1e-6, name


def test_truncated_training_pieces_skip_dinputs():
    from bptt.training.truncation import FullBPTT

    net = Network(4, 3, 5, seed=4)
    x, y, _ = _problem(2)
    seen = []
    loss, _ = FullBPTT().run(net, x, y, None, None, seen.append)
    piece = seen[0]
    assert piece.backward.dinputs is None
    _, grads = net.loss_and_grads(x, y)
    assert loss == pytest.approx(net.loss_only(x, y), rel=1e-15)
    for name in grads:
        np.testing.assert_array_equal(piece.grads[name], grads[name], err_msg=name)


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_loss_and_grads_reuses_scratch_arrays_without_changing_results(options):
    from bptt import workspace

    lean, reference = Network(4, 3, 5, seed=9, **options), Network(4, 3, 5, seed=9, **options)
    returned = []
    for call, (T, B, ids) in enumerate([(6, 3, False), (6, 3, False), (4, 2, True), (6, 3, False), (1, 1, False)]):
        x, y, mask = _problem(call, T=T, B=B, ids=ids)
        loss, grads = lean.loss_and_grads(x, y, mask)
        expected = reference.forward_backward(x, y, mask)
        assert loss == expected.loss
        for name in grads:
            np.testing.assert_array_equal(grads[name], expected.grads[name], err_msg=f"call {call}: {name}")
        returned.append((grads, {k: v.copy() for k, v in grads.items()}))
    for grads, snapshot in returned:                       # later calls never wrote into earlier results
        for name in grads:
            np.testing.assert_array_equal(grads[name], snapshot[name])
    scratch = [a for w in lean.workspaces.values() for a in w.arrays.values()]
    assert scratch                                         # the workspace was used ...
    assert all(getattr(part, "workspace", None) is None for _, part in lean._scratch_owners())
    fwd = lean.forward(_problem(0)[0])                     # ... and only inside loss_and_grads
    reference.forward(_problem(0)[0])                      # (keeps the two dropout generators in step)
    for array in [fwd.outputs, *fwd.hidden]:
        assert not any(np.shares_memory(array, a) for a in scratch)
    with workspace.LOCK:                                   # another thread stepping: fresh arrays, same numbers
        before = {name: dict(w.arrays) for name, w in lean.workspaces.items()}
        x, y, mask = _problem(0)
        loss, grads = lean.loss_and_grads(x, y, mask)
        assert all(lean.workspaces[n].arrays[k] is a for n, arrays in before.items() for k, a in arrays.items())
    assert loss == reference.forward_backward(x, y, mask).loss


def test_cross_entropy_in_place_gives_the_same_gradient():
    from bptt.losses import softmax_cross_entropy

    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 3, 7)) * 4
    targets = rng.integers(0, 7, (5, 3))
    for mask in (None, rng.uniform(0, 2, (5, 3))):
        loss, grad = softmax_cross_entropy(logits, targets, mask)
        z = logits.copy()
        loss_in_place, grad_in_place = softmax_cross_entropy(z, targets, mask, overwrite_logits=True)
        assert np.shares_memory(grad_in_place, z) and not np.shares_memory(grad, logits)
        assert loss_in_place == loss
        np.testing.assert_array_equal(grad_in_place, grad)
