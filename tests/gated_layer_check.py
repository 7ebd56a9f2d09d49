"""Shared by the gated-cell tests: one layer's BPTT against central differences with
random upstream gradients on every h_t and on every final state array (never all ones)."""

import numpy as np

from bptt.gradcheck import numerical_gradient, relative_error


def layer_gradient_errors(layer, x, state0, seed=0):
    """Worst relative error for every parameter, x (float inputs) and each initial state array.

    Objective: sum_t <G_t, h_t> + sum_s <S_s, s_T> with random G, S, so every path out of
    the layer (outputs and final state, h and c for the LSTM) is exercised."""
    rng = np.random.default_rng(seed)
    h, final, _ = layer.forward(x, state0)
    G = rng.standard_normal(h.shape)
    S = tuple(rng.standard_normal(s.shape) for s in final)

    def objective():
        h, final, _ = layer.forward(x, state0)
        return float(np.sum(G * h)) + sum(float(np.sum(g * s)) for g, s in zip(S, final))

    h, final, cache = layer.forward(x, state0)
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    dx, dstate0, dh_total = layer.backward(G.copy(), S, cache, grads)
    errors = {name: relative_error(grads[name], numerical_gradient(objective, p)) for name, p in layer.params.items()}
    if x.dtype.kind == "f":
        errors["x"] = relative_error(dx, numerical_gradient(objective, x))
    else:
        assert dx is None
    for name, s, ds in zip(layer.state_names, state0, dstate0):
        errors[name + "0"] = relative_error(ds, numerical_gradient(objective, s))
    assert dh_total.shape == h.shape
    return errors


def random_layer_inputs(layer, T, B, rng, ids=False):
    """x (T, B, I) floats or ids (T, B), and a random initial state tuple in the layer's format."""
    x = rng.integers(0, layer.input_size, (T, B)) if ids else rng.standard_normal((T, B, layer.input_size))
    state0 = tuple(0.5 * rng.standard_normal(s.shape) for s in layer.zero_state(B))
    return x, state0
