"""The fast paths of the performance work compute the same gradients as the plain math.

- the RNN backward runs its weight-gradient GEMMs over chunks of time steps
  (``functional.CHUNK_ROWS``); forcing tiny chunks must change nothing, and finite differences
  must still agree;
- LSTM/GRU use one tanh for every gate (sigmoid through halved pre-activations): the gates
  they cache equal ``functional.sigmoid`` / ``np.tanh`` of the pre-activations bit for bit.
"""

import numpy as np
import pytest

from bptt import Network, kernels
from bptt.functional import sigmoid
from bptt.gradcheck import check_network, random_problem
from bptt import functional


@pytest.mark.parametrize("token_ids", [False, True])
@pytest.mark.parametrize("cell, nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_chunked_backward_equals_one_chunk(monkeypatch, token_ids, cell, nonlinearity):
    net = Network(4, 5, 3, num_layers=2, cell=cell, nonlinearity=nonlinearity, seed=3)
    inputs, targets, mask, h0 = random_problem(net, 7, 3, seed=1, token_ids=token_ids, masked=True)
    whole = net.forward_backward(inputs, targets, mask, h0)
    for rows in (1, 4, 6):                      # 1, 2 and 2 steps per chunk (B = 3), uneven last chunk
        monkeypatch.setattr(functional, "CHUNK_ROWS", rows)
        assert functional.chunk_steps(7, 3, 5, 5 * (5 + 5)) < 7      # the chunked path really runs (rnn)
        assert functional.chunk_steps(7, 3, 5 * 5, 4 * 5 * (5 + 5)) < 7                       # (lstm)
        assert functional.chunk_steps(7, 3, 7 * 5, 3 * 5 * (5 + 5)) < 7                       # (gru)
        chunked = net.forward_backward(inputs, targets, mask, h0)
        for name in whole.grads:
            np.testing.assert_allclose(chunked.grads[name], whole.grads[name], rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(chunked.dh0, whole.dh0, rtol=1e-12, atol=1e-14)
        for a, b in zip(chunked.dh, whole.dh):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        if not token_ids:
            np.testing.assert_allclose(chunked.dinputs, whole.dinputs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_chunked_backward_matches_finite_differences(monkeypatch, cell):
    monkeypatch.setattr(functional, "CHUNK_ROWS", 2)   # one step per chunk with B = 2
    net = Network(3, 4, 3, num_layers=1, cell=cell, seed=5)
    inputs, targets, mask, h0 = random_problem(net, 5, 2, seed=2)
    assert functional.chunk_steps(5, 2, 4, 4 * (4 + 3)) == 1
    errors = check_network(net, inputs, targets, mask, h0, seed=2)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell, blocks", [("lstm", "ssts"), ("gru", "ss")])
def test_one_tanh_gates_equal_sigmoid_and_tanh_exactly(cell, blocks):
    # The numpy path's trick (the numba kernels compute their gates their own way: test_kernels*.py).
    with kernels.using("numpy"):
        _check_one_tanh_gates(cell, blocks)


def _check_one_tanh_gates(cell, blocks):
    net = Network(3, 4, 2, cell=cell, seed=7)
    layer = net.layers[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 3))
    h0 = layer.zero_state(2)
    _, _, cache = layer.forward(x, h0)
    # step 0 from a zero state: the pre-activation is U x_0 + b exactly (W h_0 = 0)
    pre = x[0] @ layer.params["U"].T + layer.params["b"]
    H = 4
    for k, kind in enumerate(blocks):
        expected = sigmoid(pre[:, k * H:(k + 1) * H]) if kind == "s" else np.tanh(pre[:, k * H:(k + 1) * H])
        np.testing.assert_array_equal(cache.gates[0][:, k * H:(k + 1) * H], expected)
