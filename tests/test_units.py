"""Units on text (diagnostics.units): values against torch, features, correlation search, saturation."""

import numpy as np
import pytest

import bptt
from bptt.diagnostics import units

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_unit_values_match_torch(cell):
    V, T, B, H = 6, 5, 2, 4
    net = bptt.Network(V, H, V, cell=cell, num_layers=2, seed=3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (T, B))
    acts = units.unit_activations(net, x)
    module = bptt.to_torch(net)[0]
    X = torch.nn.functional.one_hot(torch.tensor(x), V).double()
    with torch.no_grad():
        out, _ = module(X)
        np.testing.assert_allclose(acts[-1]["h"], out.numpy(), rtol=0, atol=1e-12)   # top layer h, every t
        for t in range(T):                                   # every layer's state at t: torch's final state of x[:t+1]
            _, final = module(X[:t + 1])
            hn = final[0] if cell == "lstm" else final
            for layer in range(2):
                np.testing.assert_allclose(acts[layer]["h"][t], hn[layer].numpy(), atol=1e-12)
                if cell == "lstm":
                    np.testing.assert_allclose(acts[layer]["c"][t], final[1][layer].numpy(), atol=1e-12)
    a = acts[0]
    if cell == "lstm":                                        # the gates reproduce torch's c_t and h_t
        c_prev = np.concatenate([np.zeros((1, B, H)), a["c"][:-1]])
        np.testing.assert_allclose(a["forget"] * c_prev + a["input"] * a["cell"], a["c"], atol=1e-12)
        np.testing.assert_allclose(a["output"] * np.tanh(a["c"]), a["h"], atol=1e-12)
        assert set(a) == {"h", "c", "input", "forget", "cell", "output"}
    if cell == "gru":
        h_prev = np.concatenate([np.zeros((1, B, H)), a["h"][:-1]])
        np.testing.assert_allclose((1 - a["update"]) * a["candidate"] + a["update"] * h_prev, a["h"], atol=1e-12)
    if cell == "rnn":
        assert set(a) == {"h"}


def test_text_features_on_a_known_string():
    text = 'ab "c(d)"\n  e'
    f = units.text_features(text)
    np.testing.assert_array_equal(f["inside_quotes"], [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(f["inside_parentheses"], [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(f["position_in_line"], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2])
    np.testing.assert_array_equal(f["after_newline"], [0] * 10 + [1, 0, 0])
    np.testing.assert_array_equal(f["indentation"], [0] * 10 + [1, 2, 2])


def test_best_units_finds_a_planted_unit():
    rng = np.random.default_rng(0)
    T = 200
    feature = (rng.random(T) > 0.5).astype(float)
    h = rng.normal(size=(T, 1, 6))
    h[:, 0, 4] = -2 * feature + 0.1 * rng.normal(size=T)      # unit 4 tracks it (negatively)
    c = rng.normal(size=(T, 1, 6))
    best = units.best_units([{"h": h}, {"h": rng.normal(size=(T, 1, 6)), "c": c}], {"f": feature}, top=2)
    first = best["f"][0]
    assert (first["layer"], first["kind"], first["unit"]) == (0, "h", 4)
    assert first["r"] < -0.95
    assert abs(best["f"][1]["r"]) < 0.5
    assert units.correlations(np.ones((5, 2)), np.arange(5.0)).tolist() == [0.0, 0.0]   # constant: 0, not NaN


def test_gate_saturation_of_a_planted_forget_gate():
    net = bptt.Network(5, 3, 5, cell="lstm", seed=0)
    b = net.params["layers.0.b"].copy()
    b[3:6] = 20.0                                             # forget gate always ~1: right-saturated
    b[0:3] = -20.0                                            # input gate always ~0: left-saturated
    net.params["layers.0.b"] = b
    x = np.random.default_rng(0).integers(0, 5, (30, 2))
    sat = units.gate_saturation(net, x)
    assert set(sat[0]) == {"input", "forget", "output"}
    left, right = sat[0]["forget"]
    np.testing.assert_array_equal(right, 1.0)
    np.testing.assert_array_equal(left, 0.0)
    np.testing.assert_array_equal(sat[0]["input"][0], 1.0)
    out_left, out_right = sat[0]["output"]
    assert np.all(out_left + out_right <= 1) and np.all(out_left + out_right < 1)   # not saturated
    assert units.gate_saturation(bptt.Network(5, 3, 5, seed=0), x) == [{}]


def test_units_bad_input():
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        units.text_features("")
    with pytest.raises(ValueError, match="top must be a positive integer"):
        units.best_units([{"h": np.zeros((3, 1, 2))}], {"f": np.zeros(3)}, top=0)
    with pytest.raises(ValueError, match="has 4 steps"):
        units.best_units([{"h": np.zeros((3, 1, 2))}], {"f": np.zeros(4)})
