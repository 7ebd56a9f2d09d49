"""What the units do on text (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding
recurrent networks").

- ``unit_activations(net, inputs)``: per layer, every unit's value at every step -- h, and for the
  LSTM c and the gates (input, forget, cell, output), for the GRU the gates (reset, update, candidate).
- ``text_features(text)``: simple per-character features of a passage (inside double quotes, inside
  parentheses, position in the line, just after a newline, indentation).
- ``best_units(activations, features)``: for each feature the units whose activation correlates
  best (|Pearson r|) with it -- found automatically, as Karpathy et al. found their quote cell.
- ``gate_saturation(net, inputs)``: per layer and gate, each unit's fraction of steps with the gate
  below 0.1 (left-saturated) and above 0.9 (right-saturated): the scatter of their Fig. 3.
  A forget gate right-saturated most of the time is a unit that remembers; one left-saturated
  forgets at every step.
"""

from __future__ import annotations

import numpy as np

from . import _steps
from .spectra import GATE_NAMES


def unit_activations(net, inputs, h0=None) -> list[dict]:
    """[layer l] -> {"h": (T, B, H), "c": (T, B, H) (LSTM), gate name: (T, B, H) (LSTM, GRU)}."""
    _steps.refuse_unsupported(net)
    fwd = _steps.eval_forward(net, inputs, h0)
    out = []
    for index, layer in enumerate(net.layers):
        values = {"h": fwd.hidden[index]}
        cache = fwd.caches[index]
        cell = getattr(layer, "cell", None)
        if cell == "lstm":
            values["c"] = cache.cs[1:]
        if cell in GATE_NAMES:
            H = layer.hidden_size
            for k, name in enumerate(GATE_NAMES[cell]):
                values[name] = cache.gates[..., k * H:(k + 1) * H]
        out.append(values)
    return out


FEATURES = ("inside_quotes", "inside_parentheses", "position_in_line", "after_newline", "indentation")


def text_features(text: str) -> dict:
    """name -> (T,) float array for every character of ``text`` (see FEATURES).

    inside_quotes: 1 between a double quote and the next (the quotes themselves count as inside);
    inside_parentheses: the nesting depth of ( ), clipped at 0; position_in_line: characters since
    the last newline; after_newline: 1 right after a newline; indentation: the current line's
    number of leading spaces, from its first character on."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty string, got {text!r:.40}")
    T = len(text)
    features = {name: np.zeros(T) for name in FEATURES}
    quoted, depth, column, indent, leading = False, 0, 0, 0, True
    for t, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
            features["inside_quotes"][t] = 1.0
        else:
            features["inside_quotes"][t] = float(quoted)
        if ch == "(":
            depth += 1
        features["inside_parentheses"][t] = depth
        if ch == ")":
            depth = max(depth - 1, 0)
        features["after_newline"][t] = float(t > 0 and text[t - 1] == "\n")
        features["position_in_line"][t] = column
        if leading and ch == " ":
            indent += 1
        elif ch != "\n":
            leading = False
        features["indentation"][t] = indent
        if ch == "\n":
            column, indent, leading, quoted = 0, 0, True, quoted
        else:
            column += 1
    return features


def correlations(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of each column of values (T, H) with feature (T,); 0 where either is constant."""
    v = values - values.mean(axis=0)
    f = feature - feature.mean()
    denom = np.sqrt((v * v).sum(axis=0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (f @ v) / denom
    return np.where(denom > 0, r, 0.0)


def best_units(activations: list[dict], features: dict, top: int = 3, example: int = 0) -> dict:
    """feature name -> the ``top`` units best correlated with it, best first, each a dict
    {"layer", "kind" (h, c or a gate), "unit", "r"} (|r| ranks; r's sign kept), over example ``example``."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    result = {}
    for fname, feature in features.items():
        feature = np.asarray(feature, float)
        rows = []
        for index, values in enumerate(activations):
            for kind, array in values.items():
                if array.shape[0] != feature.shape[0]:
                    raise ValueError(f"feature {fname!r} has {feature.shape[0]} steps, the activations "
                                     f"{array.shape[0]}")
                r = correlations(array[:, example, :], feature)
                rows += [{"layer": index, "kind": kind, "unit": int(u), "r": float(r[u])} for u in range(r.size)]
        rows.sort(key=lambda row: -abs(row["r"]))
        result[fname] = rows[:top]
    return result


def gate_saturation(net, inputs, h0=None, low: float = 0.1, high: float = 0.9) -> list[dict]:
    """[layer l] -> {gate name: (left (H,), right (H,))}: each unit's fraction of (step, example)
    with the gate below ``low`` and above ``high``. Empty dicts for the RNN (it has no gates)."""
    if not 0 < low < high < 1:
        raise ValueError(f"need 0 < low < high < 1, got low={low!r}, high={high!r}")
    out = []
    for values in unit_activations(net, inputs, h0):
        gates = {}
        for name, array in values.items():
            if name in ("h", "c", "cell", "candidate"):       # tanh-valued: not gates
                continue
            gates[name] = ((array < low).mean(axis=(0, 1)), (array > high).mean(axis=(0, 1)))
        out.append(gates)
    return out
