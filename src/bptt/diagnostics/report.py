"""One self-contained HTML report of a network's gradient flow.

``write_report`` builds a single HTML file whose figures are embedded as base64
``data:image/png`` URIs: it references no other file (no scripts, stylesheets or images
outside itself), so it can be mailed, archived or opened offline.

``diagnose`` computes what the report shows for one network on one probe batch -- the
lecture's T x T contribution table for dE_t/dW, its lag profile and effective memory,
||dh_{T-1}/dh_k||, the spectrum of W, saturation, gate means -- plus, when a run folder
is given, the histories in its ``metrics.jsonl`` (gradient norm, clipping) and
``diagnostics.jsonl`` (``GradientRecorder``: spectral radius and lag profiles over
training), writes the figures and the report, and returns the key numbers.
"""

from __future__ import annotations

import base64
import html
import os

import numpy as np

from .decomposition import contribution_norms, effective_memory, lag_profile
from .jacobians import jacobian_norms
from .recorder import read_jsonl
from .spectra import gate_means, saturation, spectrum

STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
         "figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%}")


def _data_uri(png_path: str) -> str:
    with open(png_path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def render_html(title: str, numbers: dict, figures: list, notes=()) -> str:
    """HTML text: a table of ``numbers`` (name -> value), then each (caption, png path) figure
    embedded, then ``notes`` (plain-text paragraphs)."""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_show(v))}</td></tr>"
                   for k, v in numbers.items())
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<h2>Key numbers</h2><table>{rows}</table>"]
    for caption, path in figures:
        parts.append(f"<figure><img alt=\"{html.escape(caption)}\" src=\"{_data_uri(path)}\">"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(path, title: str, numbers: dict, figures: list, notes=()) -> str:
    """Write ``render_html(...)`` atomically to ``path``; returns the path."""
    path = os.fspath(path)
    text = render_html(title, numbers, figures, notes)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


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


def diagnose(net, probe, out_dir, run_dir=None, layer: int = -1, param: str = "W", fraction: float = 0.01,
             clip_threshold=None, title="bptt diagnose") -> dict:
    """Compute, plot and report; returns the key numbers (also in the report).

    probe = (inputs, targets, mask or None): the batch the decomposition runs on. Cost: one
    backward pass per output step of the probe (T(T+1)/2 single-step backwards) plus T
    products of state Jacobians."""
    from . import plots

    inputs, targets, mask = probe
    os.makedirs(out_dir, exist_ok=True)
    fig = lambda name: os.path.join(out_dir, name)                       # noqa: E731
    T = np.asarray(inputs).shape[0]
    table = contribution_norms(net, inputs, targets, param, mask=mask, layer=layer)
    profile = lag_profile(table, reduce="mean")
    memory = effective_memory(profile, fraction)
    J = jacobian_norms(net, inputs, layer=layer, ord=2, t=T - 1)
    reach = J[T - 1, :][::-1]                                             # by lag T-1-k
    summary = spectrum(net)
    name = f"layers.{layer % len(net.layers)}.W"
    numbers = {"cell": net.cell, "layers": len(net.layers), "hidden": net.hidden_size,
               "probe (T, B)": f"({T}, {np.asarray(inputs).shape[1]})",
               f"spectral radius of {name} (per gate block)": summary[name]["spectral_radius"],
               f"largest singular value of {name}": summary[name]["max_singular"],
               "saturated units (derivative < 0.1 of max)": saturation(net, inputs, layer=layer),
               f"effective memory (lag where the profile < {fraction:g} of lag 0)":
                   "beyond the sequence" if memory is None else int(memory),
               f"||dh_{T - 1}/dh_0|| (spectral, batch mean)": float(J[T - 1, 0]),
               "lag-0 term of dE_t/dW (mean over t)": float(profile[0])}
    for gate, values in gate_means(net, inputs, layer=layer).items():
        numbers[f"mean {gate} gate"] = float(np.mean(values))
    figures = [(f"||term k of dE_t/d{param}|| for every output step t and step k (the lecture's sum, "
                f"term by term); lower-left = long lags", plots.contributions_heatmap(table, fig("contributions.png")))]

    metrics, recorded = _histories(run_dir)
    moments = {f"update {line['update']}": line["lag_profile"] for line in recorded if line.get("lag_profile")}
    if len(moments) > 4:                                                  # first, two in between, last
        keys = list(moments)
        moments = {k: moments[k] for k in (keys[0], keys[len(keys) // 3], keys[2 * len(keys) // 3], keys[-1])}
    curves = {k: np.array([np.nan if v is None else v for v in p]) for k, p in moments.items()}
    curves["this checkpoint (diagnose probe)"] = profile
    figures.append(("gradient magnitude against the lag tau = t - k (mean over t), log scale"
                    + (", at several moments of training" if len(curves) > 1 else ""),
                    plots.lag_profiles(curves, fig("lag_profile.png"), ylabel="mean over t of ||term (t - tau)||")))
    figures.append((f"||dh_{T - 1}/dh_k|| against the lag: the product of Jacobians",
                    plots.curves({"spectral norm": (np.arange(T), reach)}, fig("jacobian.png"),
                                 title=f"||dh_{T - 1}/dh_k|| (batch mean)", xlabel="lag T - 1 - k",
                                 ylabel="norm")))
    steps = [m["step"] for m in metrics if "grad_norm" in m]
    if steps:
        norms = [m["grad_norm"] for m in metrics if "grad_norm" in m]
        clipped = [bool(m.get("clipped")) for m in metrics if "grad_norm" in m]
        figures.append(("global gradient norm before clipping, per logged step, with the clipping threshold",
                        plots.grad_norm_history(steps, norms, fig("grad_norm.png"), clip_threshold, clipped)))
        numbers["logged steps"] = len(steps)
        numbers["logged steps with clipping"] = int(sum(clipped))
        numbers["gradient norm: median / max"] = [float(np.median(norms)), float(np.max(norms))]
    radii = [line for line in recorded if "spectral_radius" in line]
    if radii:
        series = {k: [max(line["spectral_radius"][k]) for line in radii] for k in radii[0]["spectral_radius"]}
        figures.append(("spectral radius of W over training (largest over gate blocks)",
                        plots.spectral_radius_history([line["update"] for line in radii], series,
                                                      fig("spectral_radius.png"))))
    notes = ["Term k of dE_t/dW is dE_t/dy_t dy_t/dh_t (prod_{j=k+1..t} dh_j/dh_{j-1}) d+h_k/dW: what the "
             "weights used at step k contribute; the terms add up to the BPTT gradient.",
             "No training history found: record one with bptt.diagnostics.GradientRecorder (diagnostics.jsonl)."
             if run_dir is not None and not recorded else ""]
    write_report(os.path.join(out_dir, "report.html"), title, numbers, figures, [n for n in notes if n])
    return numbers
