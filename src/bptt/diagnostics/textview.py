"""The report's text view (``bptt diagnose RUN --text-view``; two runs: ``bptt diagnose RUN_A RUN_B``).

For a character-level model and one passage of its text it shows

- the passage coloured by the saliency ||dE_t/dx_k|| of every earlier character k for one output
  position t (hover or click a character to choose another t: plain JavaScript embedded in the page,
  the numbers in a JSON block beside it; nothing is fetched);
- the whole-text view: every position coloured by the lag at which its saliency falls below 1% of lag 0;
- the units that best track simple features (inside quotes, parentheses, position in line, after a
  newline, indentation), each unit's activation as coloured text;
- the gate-saturation scatter (Karpathy et al. 2015) and the Lyapunov spectrum of the dynamics.

``text_view(net, vocab, passage)`` computes it (numpy), ``render(view, ...)`` makes the HTML fragment.
"""

from __future__ import annotations

import html
import json

import numpy as np

from .lyapunov import lyapunov_spectrum
from .saliency import lags_below, saliency_matrix
from .units import best_units, gate_saturation, text_features, unit_activations

THRESHOLD = 0.01


def choose_passage(text: str, length: int, rng) -> str:
    """``length`` + 1 characters of ``text`` (the last one is only a target), starting at a line start
    after a seeded position when there is one nearby (a passage reads better from a line's beginning)."""
    if len(text) < length + 1:
        raise ValueError(f"the text has {len(text)} characters, fewer than the passage length + 1 = {length + 1}")
    start = int(rng.integers(0, len(text) - length))
    newline = text.find("\n", start, start + 200)
    if newline != -1 and newline + 1 + length + 1 <= len(text):
        start = newline + 1
    return text[start:start + length + 1]


def text_view(net, vocab, passage: str, label: str = "") -> dict:
    """Every number the text view shows, for ``passage`` (P + 1 characters: P inputs, each predicting the next)."""
    ids = vocab.encode(passage)
    x, y = ids[:-1, None], ids[1:, None]                                  # (P, 1)
    P = x.shape[0]
    S = saliency_matrix(net, x, y)[:, :, 0]                               # (P, P): S[t, k]
    lags = lags_below(S[:, :, None], THRESHOLD)[:, 0]                     # (P,)
    probs = net.predict_proba(x)[:, 0]                                    # (P, V)
    p_next = probs[np.arange(P), y[:, 0]]
    acts = unit_activations(net, x)
    features = text_features(passage[:-1])
    best = best_units(acts, features, top=1)
    sat = gate_saturation(net, x)
    state = sum(s.shape[1] for s in net.layers[-1].zero_state(1))
    k = min(state, 8)
    exps = lyapunov_spectrum(net, x, k=k)
    censored = lags >= np.arange(P) + 1                                   # never fell below within the passage
    return {"label": label, "cell": net.cell, "chars": list(passage[:-1]), "next": list(passage[1:]),
            "S": S, "lags": lags, "censored": censored, "p_next": p_next, "activations": acts,
            "best": best, "saturation": sat, "lyapunov": exps,
            "loss": float(-np.mean(np.log(np.maximum(p_next, 1e-300))))}


def summary(view: dict) -> dict:
    """The key numbers of one text view (name -> value) and what each means (name -> sentence)."""
    lags, censored = view["lags"], view["censored"]
    P = len(lags)
    known = lags[~censored]
    sat = [v for layer in view["saturation"] for v in layer.values()]
    numbers = {
        "passage loss (nats per character)": view["loss"],
        f"median lag where saliency < {THRESHOLD:g} of lag 0": float(np.median(lags)),
        "positions whose saliency never fell that low": f"{int(censored.sum())} of {P}",
        "longest such lag seen": int(known.max()) if known.size else "none",
        "largest Lyapunov exponent (per step)": float(view["lyapunov"][0]),
    }
    meanings = {
        "passage loss (nats per character)": "Mean -log p(next character) over the passage.",
        f"median lag where saliency < {THRESHOLD:g} of lag 0":
            "How many characters back a typical prediction still looks (with at least 1% of the weight it gives "
            "the character it just read).",
        "positions whose saliency never fell that low": "Positions still looking at the passage's first character "
                                                        "(their lag is at least their position).",
        "longest such lag seen": "The farthest back any position looked, among those whose saliency did fall.",
        "largest Lyapunov exponent (per step)":
            "lambda_1 < 0: nearby states converge and gradients shrink like exp(lambda_1 lag); > 0: they separate "
            "and gradients can explode.",
    }
    if sat:
        right = float(np.mean([r.mean() for _, r in sat]))
        left = float(np.mean([lo.mean() for lo, _ in sat]))
        numbers["gate steps below 0.1 / above 0.9"] = [left, right]
        meanings["gate steps below 0.1 / above 0.9"] = ("Mean over gates and units of the share of steps a gate is "
                                                        "left- / right-saturated (the scatter's axes).")
    return numbers, meanings


def _log_rows(S: np.ndarray) -> list:
    """Row t of S divided by its lag-0 value, as log10 rounded to 2 decimals, k = 0..t (JSON-ready)."""
    rows = []
    for t in range(S.shape[0]):
        base = S[t, t]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log10(S[t, :t + 1] / base) if base > 0 else np.full(t + 1, -99.0)
        rows.append([round(float(v), 2) if np.isfinite(v) else -99 for v in r])
    return rows


def _char_html(ch: str) -> str:
    if ch == "\n":
        return "&#x21B5;\n"                                               # visible, then the line break
    return html.escape(ch)


def _coloured(chars, values, titles) -> str:
    """Static spans: values in [-1, 1], red positive, blue negative (alpha = |value|)."""
    spans = []
    for ch, v, title in zip(chars, values, titles):
        colour = f"rgba(214,39,40,{v:.2f})" if v >= 0 else f"rgba(31,119,180,{-v:.2f})"
        spans.append(f"<span style=\"background:{colour}\" title=\"{html.escape(title)}\">{_char_html(ch)}</span>")
    return "".join(spans)


SCRIPT = r"""
(function () {
  function paint(view, t) {
    var data = JSON.parse(document.getElementById(view.dataset.json).textContent);
    var row = data.rows[t], spans = view.querySelectorAll('span.tk');
    for (var k = 0; k < spans.length; k++) {
      var s = spans[k], a = 0;
      if (k <= t) { a = Math.max(0, Math.min(1, (row[k] + 4) / 4)); }   // 1e-4 .. 1 of lag 0 -> 0 .. 1
      s.style.background = k <= t ? 'rgba(214,39,40,' + a.toFixed(2) + ')' : 'transparent';
      s.style.outline = k === t ? '2px solid #000' : 'none';
      s.style.color = k <= t ? '#000' : '#aaa';
    }
    var lag = data.lags[t], more = data.censored[t] ? ' or more (never below within the passage)' : '';
    view.querySelector('.tv-caption').textContent = 'output position ' + t + ': reads ' + JSON.stringify(data.chars[t]) +
      ', predicts ' + JSON.stringify(data.next[t]) + ' with p = ' + data.p[t].toFixed(3) +
      '; saliency falls below 1% of lag 0 at lag ' + lag + more + '.';
    view.dataset.position = t;
  }
  // report.html#t=N opens every view at output position N (a link to one position; also how the browser test checks it)
  var wanted = /[#&]t=(\d+)/.exec(window.location.hash);
  var views = document.querySelectorAll('div.tv-saliency');
  for (var i = 0; i < views.length; i++) {
    (function (view) {
      var spans = view.querySelectorAll('span.tk');
      for (var k = 0; k < spans.length; k++) {
        (function (k) {
          spans[k].addEventListener('mouseover', function () { if (!view.dataset.pinned) paint(view, k); });
          spans[k].addEventListener('click', function () { view.dataset.pinned = '1'; paint(view, k); });
        })(k);
      }
      var start = parseInt(view.dataset.start, 10);
      if (wanted && parseInt(wanted[1], 10) < spans.length) { start = parseInt(wanted[1], 10); }
      paint(view, start);
    })(views[i]);
  }
})();
"""

STYLE = (".passage{font-family:monospace;white-space:pre-wrap;line-height:1.5;border:1px solid #ddd;padding:.6em;"
         "font-size:.92em}.passage span.tk{cursor:pointer}.tv-caption{font-size:.9em;color:#333;margin:.3em 0}")


def render(view: dict, index: int, position: int | None = None, figures=()) -> str:
    """The HTML fragment of one text view (``index`` makes its element ids unique in the page)."""
    chars, P = view["chars"], len(view["chars"])
    position = P - 1 if position is None else position
    data = {"rows": _log_rows(view["S"]), "lags": [int(v) for v in view["lags"]],
            "censored": [bool(v) for v in view["censored"]], "chars": chars, "next": view["next"],
            "p": [round(float(v), 4) for v in view["p_next"]]}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")   # cannot close the script element
    jid = f"tv-data-{index}"
    spans = "".join(f"<span class=\"tk\">{_char_html(ch)}</span>" for ch in chars)
    name = html.escape(view["label"] or view["cell"])
    parts = [f"<h3>{name}: how far back each prediction looks</h3>",
             "<p class=\"means\">Each character k is shaded by ||dE_t/dx_k|| relative to the character the model just "
             "read (lag 0), on a log scale from 1 (dark red) to 10^-4 (white), for the output position t outlined. "
             "Hover over a character to choose another t; click to pin it (or open the page as report.html#t=N). "
             "Characters after t (grey) cannot influence it.</p>",
             f"<script type=\"application/json\" id=\"{jid}\">{payload}</script>",
             f"<div class=\"tv-saliency\" data-json=\"{jid}\" data-start=\"{position}\">"
             f"<div class=\"tv-caption\"></div><div class=\"passage\">{spans}</div></div>"]
    lags = np.asarray(view["lags"], float)
    scale = max(float(lags.max()), 1.0)
    titles = [f"position {t}: lag {int(lag)}{' or more' if c else ''}" for t, (lag, c)
              in enumerate(zip(view["lags"], view["censored"]))]
    parts += [f"<h3>{name}: the whole text by look-back</h3>",
              f"<p class=\"means\">Every position t shaded by the lag at which its saliency falls below "
              f"{THRESHOLD:g} of lag 0 (white: 0, dark red: {int(scale)} characters or more); hover for the number.</p>",
              f"<div class=\"passage\">{_coloured(chars, lags / scale, titles)}</div>"]
    parts.append(f"<h3>{name}: units that track features of the text</h3>")
    for feature, rows in view["best"].items():
        if not rows or rows[0]["r"] == 0.0:                      # correlations() gives 0 for a constant feature
            parts.append(f"<p class=\"means\"><b>{html.escape(feature.replace('_', ' '))}</b>: constant over this "
                         "passage, so no unit can be found to track it (choose another with --seed).</p>")
            continue
        row = rows[0]
        values = view["activations"][row["layer"]][row["kind"]][:, 0, row["unit"]]
        gate = row["kind"] not in ("h", "c", "cell", "candidate")
        shown = 2 * values - 1 if gate else np.clip(values / max(np.abs(values).max(), 1e-12), -1, 1)
        titles = [f"{row['kind']}[{row['unit']}] = {v:.3f}" for v in values]
        parts.append(f"<p class=\"means\"><b>{html.escape(feature.replace('_', ' '))}</b>: layer {row['layer']}, "
                     f"{html.escape(row['kind'])} unit {row['unit']}, correlation r = {row['r']:.2f} "
                     f"(red: high, blue: low{'; a gate, 0.5 is white' if gate else ''}).</p>"
                     f"<div class=\"passage\">{_coloured(chars, shown, titles)}</div>")
    from .report import _figure_html
    parts += [_figure_html(caption, path) for caption, path in figures]
    return "\n".join(parts)


def figures(view: dict, out_dir: str, tag: str) -> list:
    """(caption, png) for the saturation scatter (gated cells) and the Lyapunov spectrum."""
    import os

    from . import plots

    out = []
    name = view["label"] or view["cell"]
    if any(view["saturation"]):
        out.append((f"{name}: gate saturation on the passage (Karpathy et al. 2015, Fig. 3): one dot per unit and "
                    "gate, the share of steps the gate is below 0.1 (left-saturated, x) against above 0.9 "
                    "(right-saturated, y). A forget gate near the top keeps its cell state; near the right it "
                    "resets it every step.",
                    plots.saturation_scatter(view["saturation"], os.path.join(out_dir, f"saturation{tag}.png"),
                                             title=f"gate saturation, {name}")))
    out.append((f"{name}: the {len(view['lyapunov'])} largest Lyapunov exponents of the top layer's state on the "
                "passage (QR method, per step). Below 0 every direction contracts: gradients vanish at that rate.",
                plots.curves({"lambda_i": (np.arange(1, len(view["lyapunov"]) + 1), view["lyapunov"])},
                             os.path.join(out_dir, f"lyapunov{tag}.png"), title=f"Lyapunov spectrum, {name}",
                             xlabel="i", ylabel="lambda_i (per step)", logy=False, hline=0.0, hline_label="0",
                             markers=("lambda_i",))))
    return out
