"""One self-contained HTML report of a network's gradient flow, a teacher can show.

``write_report`` builds a single HTML file whose figures are embedded as base64
``data:image/png`` URIs and whose equations are MathML (typeset by the browser): it
references no other file and nothing on the network (no scripts, stylesheets, fonts or
images outside itself), so it can be mailed, archived or opened offline.

``diagnose`` computes what the report shows for one network on one probe batch -- the
lecture's T x T contribution table for dE_t/dW, its lag profile and effective memory,
||dh_{T-1}/dh_k||_2, the spectrum of W, saturation, gate means -- plus, when a run folder
is given, the histories in its ``metrics.jsonl`` (training and validation loss, gradient
norm, clipping) and ``diagnostics.jsonl`` (``GradientRecorder``: spectral radius and lag
profiles over training); with the checkpoint, the run's configuration (cell, sizes,
optimiser, lr, T, B, text and its SHA-256, steps) and a sample of its text. Every number
has a sentence saying what it means; every figure says which layer and checkpoint step
it shows.
"""

from __future__ import annotations

import base64
import html
import math
import os

import numpy as np

from .decomposition import contribution_norms, effective_memory, lag_profile

CLOSED_FORM_CELLS = ("rnn", "mingru", "minlstm")     # one-step Jacobians known in closed form (diagnostics/jacobians.py)
from .jacobians import jacobian_norms
from .lyapunov import lyapunov_spectrum
from .recorder import read_jsonl
from .spectra import gate_means, saturation, spectrum

STYLE = ("body{font-family:sans-serif;max-width:62em;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;"
         "vertical-align:top}th{font-weight:normal;background:#f6f6f6}td b{font-size:1.05em}"
         ".means{color:#555;font-size:.88em;margin-top:.15em}"
         "figure{margin:1.5em 0}figcaption{color:#444;font-size:.9em}img{max-width:100%}"
         "math[display=block]{margin:.6em 0}pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap}"
         ".eq{margin:.2em 0 1em 0}")


def _data_uri(png_path: str) -> str:
    with open(png_path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _rows(items, meanings) -> str:
    """Table rows: name | value, with the sentence saying what it means under the value."""
    rows = []
    for key, value in items:
        meaning = meanings.get(key)
        under = f"<div class=\"means\">{html.escape(meaning)}</div>" if meaning else ""
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td><b>{html.escape(_show(value))}</b>{under}</td></tr>")
    return "".join(rows)


def render_html(title: str, numbers: dict, figures: list, notes=(), *, meanings=None, config=None,
                equations=None, history=(), sample=None, intro=None, sections=(), script=None,
                style_extra="") -> str:
    """HTML text: ``intro``, the run's ``config`` (name -> value), ``equations`` ((MathML, sentence)
    pairs), the ``history`` figures, a ``sample`` ((text, sentence)), the ``numbers`` table, each
    (caption, png path) of ``figures`` embedded, then ``sections`` ((heading, HTML fragment) pairs, e.g.
    the text view), then ``notes`` (plain-text paragraphs). ``script``: JavaScript embedded at the end of
    the page (the text view's; nothing is fetched), ``style_extra``: CSS added to the page's own.
    ``meanings``: name -> the sentence shown under that config entry or number."""
    meanings = meanings or {}
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}{style_extra}</style></head><body><h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    if config:
        parts.append(f"<h2>The run</h2><table>{_rows(config.items(), meanings)}</table>")
    if equations:
        parts.append("<h2>The equations</h2>")
        parts += [f"<div class=\"eq\">{mathml}<div class=\"means\">{html.escape(text)}</div></div>"
                  for mathml, text in equations]
    if history:
        parts.append("<h2>Training</h2>")
        parts += [_figure_html(caption, path) for caption, path in history]
    if sample is not None:
        text, sentence = sample
        parts.append(f"<h2>A sample</h2><p class=\"means\">{html.escape(sentence)}</p><pre>{html.escape(text)}</pre>")
    parts.append(f"<h2>Key numbers</h2><table>{_rows(numbers.items(), meanings)}</table>")
    if figures:
        parts.append("<h2>Gradient flow</h2>" if history or config else "")
        parts += [_figure_html(caption, path) for caption, path in figures]
    for heading, fragment in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{fragment}")
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    if script:
        parts.append(f"<script>{script}</script>")
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part) + "\n"


def _figure_html(caption: str, path: str) -> str:
    return (f"<figure><img alt=\"{html.escape(caption)}\" src=\"{_data_uri(path)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(path, title: str, numbers: dict, figures: list, notes=(), **sections) -> str:
    """Write ``render_html(...)`` atomically to ``path``; returns the path."""
    from ..io.files import write_text

    path = os.fspath(path)
    write_text(path, render_html(title, numbers, figures, notes, **sections))
    return path


# ---------------------------------------------------------------- MathML, written by hand (no network, no fonts)

def _mi(name: str) -> str:
    return f"<mi>{name}</mi>" if len(name) == 1 or name.startswith("&") else f"<mi mathvariant=\"normal\">{name}</mi>"


def _sub(base: str, index: str) -> str:
    return f"<msub>{base}<mrow>{index}</mrow></msub>"


def _math(*parts: str) -> str:
    return f"<math display=\"block\"><mrow>{''.join(parts)}</mrow></math>"


_T = "<mi>t</mi>"
_T1 = "<mi>t</mi><mo>&#x2212;</mo><mn>1</mn>"
_EQ, _PLUS, _LP, _RP = "<mo>=</mo>", "<mo>+</mo>", "<mo>(</mo>", "<mo>)</mo>"
_ODOT = "<mo>&#x2299;</mo>"


def _d(top: str, bottom: str) -> str:
    """The partial derivative d top / d bottom."""
    return f"<mfrac><mrow><mo>&#x2202;</mo>{top}</mrow><mrow><mo>&#x2202;</mo>{bottom}</mrow></mfrac>"


def equations(cell: str, nonlinearity: str = "tanh", T: int | None = None) -> list:
    """(MathML, sentence) pairs: the cell's recurrence, the readout and loss, and the BPTT
    decomposition and Jacobian product the figures show."""
    h, x = (lambda i: _sub(_mi("h"), i)), (lambda i: _sub(_mi("x"), i))
    act = "tanh" if nonlinearity == "tanh" else "relu"
    out = []
    if cell == "lstm":
        c = lambda i: _sub(_mi("c"), i)                                   # noqa: E731
        gate = lambda g: _sub(_mi(g), _T)                                 # noqa: E731
        out.append((_math(c(_T), _EQ, gate("f"), _ODOT, c(_T1), _PLUS, gate("i"), _ODOT, gate("g"), "<mo>,</mo><mspace width=\"1em\"/>",
                          h(_T), _EQ, gate("o"), _ODOT, _mi("tanh"), _LP, c(_T), _RP),
                    "The LSTM cell: gates i, f, o = sigmoid and g = tanh of U x_t + W h_{t-1} + b, in PyTorch's order; "
                    "the cell state c_t is carried through the forget gate f, the path the gradient can travel without vanishing."))
    elif cell == "gru":
        gate = lambda g: _sub(_mi(g), _T)                                 # noqa: E731
        out.append((_math(h(_T), _EQ, _LP, "<mn>1</mn><mo>&#x2212;</mo>", gate("z"), _RP, _ODOT, gate("n"), _PLUS,
                          gate("z"), _ODOT, h(_T1)),
                    "The GRU cell: the update gate z_t keeps part of h_{t-1} unchanged; n_t is the candidate state "
                    "from the reset-gated recurrence."))
    else:
        out.append((_math(h(_T), _EQ, _mi(act), _LP, _mi("U"), x(_T), _PLUS, _mi("W"), h(_T1), _PLUS, _mi("b"), _RP),
                    f"The lecture's RNN: the new hidden state h_t is {act} of the input x_t seen through U plus the "
                    "previous state seen through W. The same U, W, b are used at every step."))
    out.append((_math(_sub("<mover><mi>y</mi><mo>^</mo></mover>", _T), _EQ, _mi("softmax"), _LP, _mi("V"), h(_T), _PLUS,
                      _mi("c"), _RP, "<mo>,</mo><mspace width=\"1em\"/>", _mi("E"), _EQ,
                      "<munder><mo>&#x2211;</mo><mi>t</mi></munder>", _sub(_mi("E"), _T), _EQ,
                      "<mo>&#x2212;</mo><munder><mo>&#x2211;</mo><mi>t</mi></munder>", _sub(_mi("y"), _T),
                      "<mo>&#x22C5;</mo>", _mi("log"), _sub("<mover><mi>y</mi><mo>^</mo></mover>", _T)),
                "The prediction y-hat_t is a softmax of V h_t + c; the loss E adds the cross-entropy E_t of every step."))
    k1 = "<mi>k</mi><mo>=</mo><mn>0</mn>"
    j = "<mi>j</mi><mo>=</mo><mi>k</mi><mo>+</mo><mn>1</mn>"
    out.append((_math(_d(_sub(_mi("E"), _T), _mi("W")), _EQ, f"<munderover><mo>&#x2211;</mo><mrow>{k1}</mrow>{_T}</munderover>",
                      _d(_sub(_mi("E"), _T), h(_T)), _LP, f"<munderover><mo>&#x220F;</mo><mrow>{j}</mrow>{_T}</munderover>",
                      _d(h("<mi>j</mi>"), h("<mi>j</mi><mo>&#x2212;</mo><mn>1</mn>")), _RP,
                      _d(f"<msubsup><mi>h</mi><mi>k</mi><mo>+</mo></msubsup>", _mi("W"))),
                "Backpropagation through time: the gradient of E_t is a sum of one term per earlier step k. "
                "Term k is what the weights used at step k contribute; the heat map and the lag profile below "
                "show the size of every term. The lag of term k is t - k."))
    if cell == "rnn":
        out.append((_math(_d(h("<mi>j</mi>"), h("<mi>j</mi><mo>&#x2212;</mo><mn>1</mn>")), _EQ, _mi("diag"), _LP,
                          f"<msup><mi>f</mi><mo>&#x2032;</mo></msup>", _LP, _sub(_mi("a"), "<mi>j</mi>"), _RP, _RP, _mi("W")),
                    "Each factor of the product is the activation's derivative (at most 1 for tanh) times W: "
                    "a long product shrinks (vanishes) when these factors have norm below 1 and grows (explodes) above 1."))
    end = "<mi>T</mi><mo>&#x2212;</mo><mn>1</mn>" if T is None else f"<mn>{T - 1}</mn>"
    norm = f"<msub><mrow><mo>&#x2016;</mo>{_d(_sub(_mi('h'), end), _sub(_mi('h'), '<mi>k</mi>'))}<mo>&#x2016;</mo></mrow><mn>2</mn></msub>"
    out.append((_math(norm, _EQ, _sub(_mi("&#x03C3;"), _mi("max")), _LP,
                      f"<munderover><mo>&#x220F;</mo><mrow>{j}</mrow><mrow>{end}</mrow></munderover>",
                      _d(h("<mi>j</mi>"), h("<mi>j</mi><mo>&#x2212;</mo><mn>1</mn>")), _RP),
                "The Jacobian figure shows this spectral norm (largest singular value) of the whole product, "
                "averaged over the probe sequences: how strongly the last state still depends on the state k steps before."))
    return out



def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    return str(value)



def _histories(run_dir):
    """(metrics lines, diagnostics lines) from a run folder; missing files give []."""
    found = []
    for name in ("metrics.jsonl", "diagnostics.jsonl"):
        path = None if run_dir is None else os.path.join(run_dir, name)
        found.append(read_jsonl(path) if path and os.path.exists(path) else [])
    return found


def run_configuration(net, checkpoint=None, vocab=None, text=None, text_source=None) -> tuple:
    """(config name -> value, name -> sentence) of the run behind ``net``: from the network
    alone, plus what the checkpoint recorded (training flags, optimiser, step, text SHA-256)."""
    import hashlib

    c = net.config
    config = {"cell": c["cell"] + (f" ({c['nonlinearity']})" if c["cell"] == "rnn" else ""),
              "layers x hidden units": f"{c['num_layers']} x {c['hidden_size']}",
              "input / output size": f"{c['input_size']} / {c['output_size']}"}
    meanings = {"cell": "The recurrent cell (and, for the RNN, its activation f).",
                "layers x hidden units": "Stacked layers, and the size H of each hidden state h_t.",
                "input / output size": "What each step reads (vocabulary size for text) and predicts."}
    if vocab is not None:
        config["vocabulary"] = f"{len(vocab)} {'characters' if vocab.level == 'char' else 'word-level tokens'}"
        meanings["vocabulary"] = ("The distinct tokens the model knows; a uniform guess costs ln V nats per token."
                                  if vocab.level == "char" else
                                  "Words, punctuation and <eol> (one per line break); whitespace is not a token.")
    extra = {} if checkpoint is None else checkpoint.meta.get("extra", {})
    args = extra.get("train_args", {})
    optimizer = None if checkpoint is None else (checkpoint.meta.get("trainer") or {}).get("optimizer")
    if args.get("optimizer") or optimizer:
        name = args.get("optimizer") or optimizer.get("kind")
        lr = args.get("lr", (optimizer or {}).get("hyper", {}).get("lr"))
        config["optimiser, learning rate"] = f"{name}, {lr:g}" if isinstance(lr, (int, float)) else str(name)
        meanings["optimiser, learning rate"] = "The update rule applied to the clipped gradient, and its step size."
    if "seq_len" in args:
        config["T (steps per update), B (streams)"] = f"{args['seq_len']}, {args['batch']}"
        meanings["T (steps per update), B (streams)"] = (
            "Each update backpropagates through T steps of B parallel streams of the text; the hidden state is "
            "carried from one update to the next.")
    if args.get("clip_mode"):
        config["clipping"] = (args["clip_mode"] if args["clip_mode"] == "none"
                              else f"{args['clip_mode']} at {args.get('clip'):g}")
        meanings["clipping"] = "How a large gradient is cut down before the update (the threshold is dashed below)."
    if text is not None or extra.get("text_sha256"):
        shown = text_source or extra.get("text_source") or "?"
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else extra["text_sha256"]
        config["text"] = f"{shown} ({len(text):,} characters)" if text is not None else shown
        config["text SHA-256"] = sha
        meanings["text"] = "The text the run trained on; the probe windows and the sample below come from the model."
        same = extra.get("text_sha256") in (None, sha)
        meanings["text SHA-256"] = ("Identifies the exact text: the same hash means the same bytes"
                                    + ("." if same else f"; the run recorded {extra.get('text_sha256')}, "
                                                        "so this is NOT the text it trained on."))
    if checkpoint is not None:
        config["steps"] = checkpoint.step
        meanings["steps"] = "Optimiser updates the weights in this report have had (the checkpoint's step)."
        metrics = checkpoint.meta.get("metrics") or {}
        if metrics.get("val_loss") is not None:
            config["validation loss"] = f"{metrics['val_loss']:.4f} nats per token"
            meanings["validation loss"] = (f"Cross-entropy on the held-out end of the text (perplexity "
                                           f"{math.exp(metrics['val_loss']):.3g}); lower is better.")
    config["dtype"] = c["dtype"]
    meanings["dtype"] = "The floating-point type of the weights and the arithmetic."
    return config, meanings


def diagnose(net, probe, out_dir, run_dir=None, layer: int = -1, param: str | None = None, fraction: float = 0.01,
             clip_threshold=None, title="bptt diagnose", checkpoint=None, vocab=None, text=None,
             text_source=None, sample_length: int | None = None, text_view: dict | None = None) -> dict:
    """Compute, plot and report into ``out_dir``; returns the key numbers (also in the report).

    probe = (inputs, targets, mask or None): the batch the decomposition runs on. ``param``: the
    parameter whose dE/dparam is decomposed by time lag (default W, or U for minGRU/minLSTM). Cost: one
    backward pass per output step of the probe (T(T+1)/2 single-step backwards) plus T
    products of state Jacobians. ``checkpoint`` (a loaded checkpoint), ``vocab``, ``text``
    and ``text_source`` add the run's configuration and, for a text model, a sample.
    ``text_view`` ({"passage": str, "position": int or None}; a character-level ``vocab``) adds the text
    view of diagnostics/textview.py: saliency on the passage, units, gate saturation, Lyapunov spectrum.

    Everything is written into a staging folder inside ``out_dir`` and moved into place only
    when all of it succeeded: a failure leaves ``out_dir`` as it was."""
    import shutil
    import tempfile

    from . import plots

    plots.require_matplotlib("the report's figures")
    if param is None:                                   # the recurrent matrix; minGRU/minLSTM have none: U
        param = "U" if net.cell in ("mingru", "minlstm") else "W"
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(dir=out_dir, prefix=".tmp-diagnose-")
    try:
        numbers = _diagnose_into(staging, net, probe, run_dir, layer, param, fraction, clip_threshold, title,
                                 checkpoint, vocab, text, text_source, sample_length, text_view)
        _move_into(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return numbers


def _move_into(staging: str, out_dir: str) -> None:
    """Every file of ``staging`` into ``out_dir``, report.html last (it names the figures)."""
    for name in sorted(os.listdir(staging)):
        if name != "report.html":
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    os.replace(os.path.join(staging, "report.html"), os.path.join(out_dir, "report.html"))


def _diagnose_into(out_dir, net, probe, run_dir, layer, param, fraction, clip_threshold, title, checkpoint,
                   vocab, text, text_source, sample_length, text_view=None) -> dict:
    from . import plots

    inputs, targets, mask = probe
    T, B = np.asarray(inputs).shape[:2]
    layer_index = layer % len(net.layers)
    step = None if checkpoint is None else checkpoint.step
    where = f"layer {layer_index}" + ("" if step is None else f", checkpoint step {step}")
    table = contribution_norms(net, inputs, targets, param, mask=mask, layer=layer)
    profile = lag_profile(table, reduce="mean")
    memory = effective_memory(profile, fraction)
    J = jacobian_norms(net, inputs, layer=layer, ord=2, t=T - 1, method="protocol")   # measured: through backward
    reach = J[T - 1, :][::-1]                                             # by lag T-1-k
    closed_reach = None
    if net.cell in CLOSED_FORM_CELLS:
        # The same products from the closed-form one-step Jacobians (rnn: diag(f') W; minGRU/minLSTM:
        # diag(a_t)), drawn beside the measured curve: where they part, the backward is wrong.
        closed_reach = jacobian_norms(net, inputs, layer=layer, ord=2, t=T - 1, method="closed_form")[T - 1, :][::-1]
    summary = spectrum(net)
    name = f"layers.{layer_index}.W"
    memory_key = f"effective memory (lag where the profile < {fraction:g} of lag 0)"
    jac_key = f"||dh_{T - 1}/dh_0||_2 (spectral norm, batch mean)"
    numbers = {"cell": net.cell, "layers": len(net.layers), "hidden": net.hidden_size,
               "probe (T, B)": f"({T}, {B})",
               f"spectral radius of {name} (per gate block)": summary[name]["spectral_radius"] if name in summary
               else "none: minGRU/minLSTM have no recurrent matrix (dh_t/dh_{t-1} = diag(a_t))",
               f"largest singular value of {name}": summary[name]["max_singular"] if name in summary else "none",
               "saturated units (derivative < 0.1 of max)": saturation(net, inputs, layer=layer),
               memory_key: "beyond the sequence" if memory is None else int(memory),
               jac_key: float(J[T - 1, 0]),
               **({} if closed_reach is None else {
                   "closed form vs measured ||dh_T/dh_k||, largest relative difference":
                       float(np.nanmax(np.abs(closed_reach - reach) / np.maximum(np.abs(reach), 1e-300)))}),
               "largest Lyapunov exponent (per step)": float(lyapunov_spectrum(net, inputs, k=1, layer=layer)[0]),
               "lag-0 term of dE_t/dW (mean over t)": float(profile[0])}
    blocks = ", ".join(summary[name]["blocks"]) if name in summary else "none"
    meanings = {
        "cell": "The recurrent cell the numbers below describe.",
        "layers": "Stacked recurrent layers; the figures show the one named in their titles.",
        "hidden": "Units per hidden state h_t.",
        "probe (T, B)": f"The gradients below are measured on B = {B} windows of T = {T} steps "
                        + ("of the run's text." if vocab is not None else "of seeded random inputs."),
        f"spectral radius of {name} (per gate block)":
            f"The largest |eigenvalue| of each block of W ({blocks}). Above 1 the linear part of the recurrence "
            "can grow a signal step after step, below 1 it shrinks it.",
        f"largest singular value of {name}":
            "The most W can stretch any vector. Below 1/max f' (1 for tanh) the gradient must vanish over long lags."
            if net.cell == "rnn" else
            "The most each block of W can stretch any vector; the gates scale these blocks, so for a gated cell this "
            "bounds the recurrence only loosely.",
        "saturated units (derivative < 0.1 of max)":
            "Share of units whose activation sits on its flat part over the probe: they pass almost no gradient.",
        memory_key: "How many steps back the gradient still has that share of its immediate (lag-0) strength: "
                    "how far back this network can learn from.",
        jac_key: f"How strongly the last state h_{T - 1} still depends on the first, h_0: near 0 means the "
                 "gradient from the end of a window no longer reaches its start.",
        "largest Lyapunov exponent (per step)":
            "lambda_1 of the layer's dynamics on the probe (QR method, diagnostics.lyapunov_spectrum): below 0 nearby "
            "states converge and the gradient through time shrinks like exp(lambda_1 x lag), so it predicts the lag "
            "profile's slope; above 0 they separate and gradients can explode.",
        "lag-0 term of dE_t/dW (mean over t)": "The size of the immediate term k = t, the scale the lag profile "
                                               "is compared with.",
        "closed form vs measured ||dh_T/dh_k||, largest relative difference":
            "The Jacobian figure's two curves: the products of the closed-form one-step Jacobians ("
            + ("diag(f') W" if net.cell == "rnn" else "diag(a_t): this cell's recurrence is h_t = a_t h_(t-1) + b_t")
            + ") against the same products measured through the layer's backward. They agree to rounding when the "
              "hand-derived backward is right.",
    }
    for gate, values in gate_means(net, inputs, layer=layer).items():
        numbers[f"mean {gate} gate"] = float(np.mean(values))
        meanings[f"mean {gate} gate"] = (
            f"Average value of the {gate} block (tanh, in [-1, 1]) over the probe: the candidate written into the "
            "state, not a gate that opens." if gate in ("cell", "candidate") else
            f"Average opening (sigmoid: 0 = closed, 1 = open) of the {gate} gate over the probe"
            + ("; a forget gate near 1 keeps the cell state, and its gradient, alive." if gate == "forget" else "."))
    metrics, recorded = _histories(run_dir)

    fig = lambda name: os.path.join(out_dir, name)                       # noqa: E731
    figures = [(f"{where}: ||term k of dE_t/d{param}|| (Frobenius norm) for every output step t and step k -- the "
                f"lecture's sum, term by term, on the probe; the diagonal is lag 0, the lower-left corner the "
                f"longest lags. Blank cells above the diagonal do not exist (k > t); a blank first row means term 0 "
                f"is zero (W multiplies the initial state h_-1 = 0).",
                plots.contributions_heatmap(table, fig("contributions.png"),
                                            title=f"||term k of dE_t/d{param}||, {where}"))]
    moments = {f"update {line['update']}": line["lag_profile"] for line in recorded if line.get("lag_profile")}
    if len(moments) > 4:                                                  # first, two in between, last
        keys = list(moments)
        moments = {k: moments[k] for k in (keys[0], keys[len(keys) // 3], keys[2 * len(keys) // 3], keys[-1])}
    curves = {f"{k} (recorded probe)": np.array([np.nan if v is None else v for v in p]) for k, p in moments.items()}
    curves[f"step {step} (this probe)" if step is not None else "this network (this probe)"] = profile
    figures.append((f"{where}: gradient magnitude against the lag tau = t - k (mean over output steps t), log scale"
                    + (", at several moments of training (the recorded curves use the recorder's own probe)"
                       if len(curves) > 1 else "")
                    + f". The dotted line is {fraction:g} x the lag-0 value: where the curve crosses it is the "
                      "effective memory.",
                    plots.lag_profiles(curves, fig("lag_profile.png"), title=f"gradient by time lag, {where}",
                                       ylabel="mean over t of ||term (t - tau)||",
                                       hline=fraction * profile[0] if np.isfinite(profile[0]) and profile[0] > 0
                                       else None, hline_label=f"{fraction:g} x lag 0")))
    figures.append((f"{where}: the spectral norm ||dh_{T - 1}/dh_k||_2 (largest singular value of the product of "
                    f"Jacobians, mean over the {B} probe sequences) against the lag T - 1 - k. The dashed line is "
                    "norm 1: below it the dependence has shrunk, above it grown."
                    + ("" if closed_reach is None else
                       " The dotted curve is the closed form (products of "
                       + ("diag(f') W" if net.cell == "rnn" else "diag(a_t)") + "), the solid one measured through "
                       "the layer's backward: they lie on each other."),
                    plots.curves({f"||dh_{T - 1}/dh_k||_2, measured (backward)": (np.arange(T), reach),
                                  **({} if closed_reach is None else
                                     {"closed form": (np.arange(T), closed_reach)})}, fig("jacobian.png"),
                                 title=f"||dh_{T - 1}/dh_k||_2 (spectral norm), {where}", xlabel="lag T - 1 - k",
                                 ylabel=f"||dh_{T - 1}/dh_k||_2 (spectral norm)", hline=1.0,
                                 hline_label="norm 1", dotted=("closed form",))))
    history = []
    logged = [m for m in metrics if "loss_per_token" in m and "step" in m]
    if logged:
        val = [m for m in metrics if m.get("val_loss") is not None and "step" in m]
        unit = "character" if vocab is not None and vocab.level == "char" else "token"
        history.append((f"all layers, steps {logged[0]['step']} to {logged[-1]['step']}: the training loss of each "
                        f"logged step's batch and the validation loss on held-out text at every evaluation, in nats per "
                        f"{unit}. The dashed line is the loss of guessing uniformly among the "
                        f"{net.output_size} tokens; a model that learned anything is below it.",
                        plots.loss_history(([m["step"] for m in logged], [m["loss_per_token"] for m in logged]),
                                           fig("loss.png"),
                                           val=([m["step"] for m in val], [m["val_loss"] for m in val]),
                                           uniform=math.log(net.output_size) if net.output_size else None,
                                           unit=unit)))
        numbers["final training loss (nats per token)"] = float(logged[-1]["loss_per_token"])
        meanings["final training loss (nats per token)"] = "The last logged batch's mean cross-entropy."
        if val:
            numbers["final validation loss (nats per token)"] = float(val[-1]["val_loss"])
            meanings["final validation loss (nats per token)"] = (
                f"Mean cross-entropy on text the model never trained on; e to this power "
                f"({math.exp(val[-1]['val_loss']):.3g}) is the perplexity: as unsure as a uniform choice among that "
                "many tokens.")
    steps = [m["step"] for m in metrics if "grad_norm" in m]
    if steps:
        norms = [m["grad_norm"] for m in metrics if "grad_norm" in m]
        clipped = [bool(m.get("clipped")) for m in metrics if "grad_norm" in m]
        history.append((f"all layers, steps {steps[0]} to {steps[-1]}: the global gradient norm before clipping at "
                        "each logged step" + (", the clipping threshold (dashed) and the logged steps where clipping "
                                              "fired (red)" if clip_threshold is not None else "") + ".",
                        plots.grad_norm_history(steps, norms, fig("grad_norm.png"), clip_threshold, clipped)))
        numbers["logged steps"] = len(steps)
        numbers["logged steps with clipping"] = int(sum(clipped))
        numbers["gradient norm: median / max"] = [float(np.median(norms)), float(np.max(norms))]
        meanings["logged steps"] = "Lines in metrics.jsonl with a gradient norm (one per --log-every steps)."
        meanings["logged steps with clipping"] = ("Of those, the steps whose gradient was cut down; clipping on "
                                                  "nearly every step means the threshold is below the typical norm.")
        meanings["gradient norm: median / max"] = "The typical and the largest global gradient norm before clipping."
    radii = [line for line in recorded if "spectral_radius" in line]
    if radii:
        series = {k: [max(line["spectral_radius"][k]) for line in radii] for k in radii[0]["spectral_radius"]}
        history.append((f"every layer, updates {radii[0]['update']} to {radii[-1]['update']}: the spectral radius of "
                        "each layer's W (largest over its gate blocks) as training changed it.",
                        plots.spectral_radius_history([line["update"] for line in radii], series,
                                                      fig("spectral_radius.png"))))
    sample = None
    if vocab is not None and net.loss == "cross_entropy" and not getattr(net, "bidirectional", False):
        from ..sample import sample_text
        length = sample_length or (400 if vocab.level == "char" else 80)
        sample = (sample_text(net, vocab, length, seed=0),
                  f"{length} {'characters' if vocab.level == 'char' else 'tokens'} drawn from the model at "
                  + ("its checkpoint" if step is None else f"checkpoint step {step}")
                  + ", temperature 1, seed 0 (bptt sample RUN --seed 0 gives the same).")
    notes = ["Term k of dE_t/dW is dE_t/dh_t (prod_{j=k+1..t} dh_j/dh_{j-1}) d+h_k/dW: what the "
             "weights used at step k contribute; the terms add up to the BPTT gradient.",
             "No recorded lag profiles: record them during training with bptt train --record-every N "
             "(diagnostics.jsonl) to see the profile change over training."
             if run_dir is not None and not recorded else ""]
    config, config_meanings = run_configuration(net, checkpoint, vocab, text, text_source)
    meanings.update(config_meanings)
    intro = (f"The gradient flow of {where if step is not None else 'this network'}: how far back in time the "
             "gradient of the loss reaches, and why. Each number has a sentence under it saying what it means; each "
             "figure's caption names the layer and the checkpoint step it shows.")
    sections, script, style = (), None, ""
    if text_view is not None:
        from . import textview
        view = textview.text_view(net, vocab, text_view["passage"], label=net.cell)
        extra, extra_meanings = textview.summary(view)
        numbers.update({f"text view: {k}": v for k, v in extra.items()})
        meanings.update({f"text view: {k}": v for k, v in extra_meanings.items()})
        fragment = textview.render(view, 0, text_view.get("position"), textview.figures(view, out_dir, ""))
        sections, script, style = [("The text view", fragment)], textview.SCRIPT, textview.STYLE
    write_report(os.path.join(out_dir, "report.html"), title, numbers, figures, [n for n in notes if n],
                 meanings=meanings, config=config, history=history, sample=sample, intro=intro,
                 equations=equations(net.cell, getattr(net, "nonlinearity", "tanh"), T),
                 sections=sections, script=script, style_extra=style)
    return numbers


def compare_text_views(runs: list, passage: str, out_dir, title="bptt diagnose: two runs on one text",
                       position: int | None = None) -> dict:
    """One report comparing the text views of several runs on the same ``passage``.

    runs: (net, vocab, label, checkpoint or None) per run (character-level vocabularies that can encode the
    passage). Writes report.html and the figures into ``out_dir`` (staged: a failure leaves it as it was);
    returns label -> key numbers."""
    import shutil
    import tempfile

    from . import plots, textview

    plots.require_matplotlib("the report's figures")
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(dir=out_dir, prefix=".tmp-diagnose-")
    try:
        table, meanings, sections, result = {}, {}, [], {}
        for index, (net, vocab, label, checkpoint) in enumerate(runs):
            view = textview.text_view(net, vocab, passage, label=label)
            numbers, means = textview.summary(view)
            result[label] = numbers
            meanings.update({f"{label}: {k}": v for k, v in means.items()})
            table.update({f"{label}: {k}": v for k, v in numbers.items()})
            fragment = textview.render(view, index, position, textview.figures(view, staging, f"-{index}"))
            config, _ = run_configuration(net, checkpoint, vocab)
            rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_show(v))}</td></tr>"
                           for k, v in config.items())
            sections.append((f"Run {index + 1}: {label}", f"<table>{rows}</table>{fragment}"))
        intro = (f"{len(runs)} runs read the same passage of {len(passage) - 1} characters. For each: how far back "
                 "every prediction looks (saliency by time lag), the units that track features of the text, the gate "
                 "saturation and the Lyapunov exponents of its dynamics.")
        write_report(os.path.join(staging, "report.html"), title, table, [], intro=intro, meanings=meanings,
                     sections=sections, script=textview.SCRIPT, style_extra=textview.STYLE)
        _move_into(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
