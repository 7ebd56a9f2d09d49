"""The fused readout + softmax cross-entropy kernel of small training steps (kernels/readout_loss.py,
Network._fused_loss_and_grads) against the unfused path: the same loss and gradients, float64 to
rounding, for every cell, with and without biases, embeddings, ids and h0; and it really runs."""

import numpy as np
import pytest

import bptt.network as network
from bptt import Network

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def float64_too(monkeypatch):
    """The fused pass runs for float32 only (float64 keeps the lean step bit-identical to the plain
    one); here it is compared in float64 too, where rounding does not hide a wrong term."""
    monkeypatch.setattr(network, "FUSED_READOUT_DTYPES", (np.float32, np.float64))


def unfused(net, *args, **kwargs):
    saved, network.FUSED_READOUT_WORK = network.FUSED_READOUT_WORK, -1
    try:
        return net.loss_and_grads(*args, **kwargs)
    finally:
        network.FUSED_READOUT_WORK = saved


def close(a: dict, b: dict, rtol: float):
    assert a.keys() == b.keys()
    for name in a:
        scale = np.max(np.abs(b[name])) + 1e-300
        assert np.max(np.abs(a[name] - b[name])) <= rtol * scale, name


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "mingru", "minlstm"])
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"embedding_size": 5}, {"readout_bias": False},
                                     {"num_layers": 2, "nonlinearity": "relu"}])
def test_fused_equals_unfused_float64(cell, options, monkeypatch):
    if "nonlinearity" in options and cell != "rnn":
        options = {"num_layers": 2}
    net = Network(6, 7, 6, cell=cell, seed=3, **options)
    rng = np.random.default_rng(1)
    T, B = 5, 3
    ids = "embedding_size" in options
    x = rng.integers(0, 6, (T, B)) if ids else rng.standard_normal((T, B, 6))
    y = rng.integers(0, 6, (T, B))
    # large logits (a spread the shared-shift numpy path handles per row) must not overflow either
    net.params["V"] *= 40.0
    calls = []
    from bptt.kernels import readout_loss
    original = readout_loss.readout_cross_entropy
    monkeypatch.setattr(readout_loss, "readout_cross_entropy", lambda *a: calls.append(1) or original(*a))
    loss, grads = net.loss_and_grads(x, y)
    assert calls, "the fused kernel did not run"
    reference_loss, reference = unfused(net, x, y)
    assert len(calls) == 1                                  # and the unfused call did not use it
    assert abs(loss - reference_loss) <= 1e-12 * abs(reference_loss)
    close(grads, reference, 1e-11)
    state = net.zero_state(B)
    h0 = tuple(rng.standard_normal(s.shape) for s in state) if isinstance(state, tuple) else rng.standard_normal(state.shape)
    loss, grads = net.loss_and_grads(x, y, h0=h0)
    reference_loss, reference = unfused(net, x, y, h0=h0)
    assert abs(loss - reference_loss) <= 1e-12 * abs(reference_loss)
    close(grads, reference, 1e-11)


def test_float32_agrees_and_the_path_is_only_taken_where_it_applies(monkeypatch):
    net = Network(6, 8, 6, cell="rnn", dtype="float32", seed=0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 2, 6)).astype(np.float32)
    y = rng.integers(0, 6, (4, 2))
    loss, grads = net.loss_and_grads(x, y)
    reference_loss, reference = unfused(net, x, y)
    assert abs(loss - reference_loss) <= 1e-5 * abs(reference_loss)
    close(grads, reference, 1e-5)
    assert net._fused_readout_applies(x, None, None)
    assert not net._fused_readout_applies(x, np.ones((4, 2)), None)                    # a mask: numpy path
    assert not net._fused_readout_applies(x, None, np.array([4, 3]))                  # lengths: packed path
    assert not net._fused_readout_applies(np.zeros((4000, 2, 6), np.float32), None, None)  # too much work
    assert not Network(6, 8, 6, loss="mse", dtype="float32")._fused_readout_applies(x, None, None)
    assert not Network(6, 8, 6, zoneout=0.1, dtype="float32")._fused_readout_applies(x, None, None)
    two = Network(6, 8, 6, num_layers=2, dropout=0.3, dtype="float32")
    assert not two._fused_readout_applies(x, None, None)                              # dropout masks drawn
    assert two.eval()._fused_readout_applies(x, None, None)
    from bptt import kernels
    with kernels.using("numpy"):
        assert not net._fused_readout_applies(x, None, None)
    monkeypatch.setattr(network, "FUSED_READOUT_DTYPES", (np.float32,))             # the default
    assert not Network(6, 8, 6)._fused_readout_applies(x.astype(np.float64), None, None)
