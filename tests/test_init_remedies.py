"""Remedies without changing the architecture: orthogonal, identity (IRNN), spectral radius."""

import numpy as np
import pytest

import bptt
from bptt import diagnostics as D
from bptt.gradcheck import check_network, random_problem


@pytest.mark.parametrize("cell,blocks", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_each_gate_block_gets_the_scheme(cell, blocks):
    H = 5
    for scheme in ("orthogonal", "identity"):
        net = bptt.Network(3, H, 2, cell=cell, num_layers=2, recurrent_init=scheme, seed=1)
        for index in (0, 1):
            W = net.params[f"layers.{index}.W"]
            assert W.shape == (blocks * H, H)
            for k in range(blocks):
                block = W[k * H:(k + 1) * H]
                np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-12)
                if scheme == "identity":
                    np.testing.assert_array_equal(block, np.eye(H))
    net = bptt.Network(3, H, 2, cell=cell, spectral_radius=1.7, seed=2)
    W = net.params["layers.0.W"]
    for k in range(blocks):
        assert np.max(np.abs(np.linalg.eigvals(W[k * H:(k + 1) * H]))) == pytest.approx(1.7)


def test_default_leaves_weights_unchanged_and_only_W_changes():
    a = bptt.Network(3, 4, 2, seed=9)
    b = bptt.Network(3, 4, 2, seed=9, recurrent_init="uniform", spectral_radius=None)
    c = bptt.Network(3, 4, 2, seed=9, recurrent_init="orthogonal")
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
        if name != "layers.0.W":
            np.testing.assert_array_equal(a.params[name], c.params[name])
    assert not np.array_equal(a.params["layers.0.W"], c.params["layers.0.W"])


def test_config_round_trip_and_seeded_repeat():
    net = bptt.Network(3, 4, 2, recurrent_init="orthogonal", spectral_radius=0.9, seed=4, bidirectional=True)
    assert net.config["recurrent_init"] == "orthogonal" and net.config["spectral_radius"] == 0.9
    again = bptt.Network.from_config(net.config)
    for name in net.params:
        np.testing.assert_array_equal(net.params[name], again.params[name])
    assert np.max(np.abs(np.linalg.eigvals(net.params["layers.0.W_reverse"]))) == pytest.approx(0.9)


def test_params_stay_the_arrays_the_layers_use():
    net = bptt.Network(3, 4, 2, recurrent_init="identity", nonlinearity="relu")
    assert net.params["layers.0.W"] is net.layers[0].params["W"]
    x, y, mask, h0 = random_problem(net, 4, 2, masked=True)
    errors = check_network(net, x, y, mask, h0)
    assert max(errors.values()) < 1e-6


def test_spectral_radius_moves_the_jacobian_products():
    """Small radius: ||dh_t/dh_0|| vanishes; large radius with a linear-ish regime: it grows."""
    x = np.random.default_rng(0).standard_normal((20, 4, 2)) * 0.01
    small = bptt.Network(2, 16, 2, recurrent_init="orthogonal", spectral_radius=0.5, seed=0)
    large = bptt.Network(2, 16, 2, recurrent_init="orthogonal", spectral_radius=1.5, seed=0)
    for net in (small, large):
        net.params["layers.0.b"][...] = 0.0                   # stay near the linear regime of tanh
    Js, Jl = D.jacobian_norms(small, x, ord=2), D.jacobian_norms(large, x, ord=2)
    assert Js[19, 0] < 1e-4
    assert Jl[10, 0] > 10


def test_bad_values_name_the_argument():
    with pytest.raises(ValueError, match="recurrent_init must be one of .* got 'xavier'"):
        bptt.Network(3, 4, 2, recurrent_init="xavier")
    with pytest.raises(ValueError, match="spectral_radius must be .* got 0.0"):
        bptt.Network(3, 4, 2, spectral_radius=0.0)
