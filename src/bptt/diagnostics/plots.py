"""Figures of the gradient flow (matplotlib, headless, imported only when a plot is made).

Every function takes plain arrays (what the other diagnostics return), writes one PNG
atomically (temp file + os.replace) and returns its path. No pyplot state is touched:
each figure is a ``matplotlib.figure.Figure`` on its own Agg canvas, so this is safe in
scripts, tests and servers without a display.

- ``contributions_heatmap``: the T x T table ||term k of dE_t/dW|| (log colour scale);
- ``lag_profiles``: gradient magnitude against the lag tau = t - k, log scale, several
  curves overlaid (e.g. moments of training, or methods);
- ``grad_norm_history``: global gradient norm per step with the clipping threshold and the
  steps where clipping fired;
- ``spectral_radius_history``: rho(W) over training, with the line rho = 1;
- ``jacobian_heatmap``, ``curves``: ||dh_t/dh_k|| and generic semilog curves.
"""

from __future__ import annotations

import os

import numpy as np


def _figure(width=6.0, height=4.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("bptt's plots need matplotlib: pip install 'bptt[plots]'") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    fig.tight_layout()
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _positive(values) -> np.ndarray:
    """Values for a log axis: zeros and NaN become NaN (not drawn) instead of -inf."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(arr > 0, arr, np.nan)


def contributions_heatmap(table, path, title="||term k of dE_t/dW||", xlabel="k (step whose weights are used)",
                          ylabel="t (output step)") -> str:
    table = np.asarray(table, dtype=np.float64)
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    shown = np.log10(_positive(table))
    image = ax.imshow(np.ma.masked_invalid(shown), origin="upper", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="log10 norm")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def jacobian_heatmap(J, path, title="||dh_t/dh_k|| (batch mean)") -> str:
    return contributions_heatmap(J, path, title=title, xlabel="k", ylabel="t")


def lag_profiles(profiles: dict, path, title="gradient magnitude by time lag", normalize=False,
                 ylabel="sum over t of ||term (t - tau) of dE_t/dW||") -> str:
    """``profiles``: label -> (T,) array indexed by lag tau. ``normalize``: divide each curve
    by its lag-0 value (compare shapes, not scales)."""
    fig = _figure()
    ax = fig.add_subplot()
    for label, profile in profiles.items():
        profile = np.asarray(profile, dtype=np.float64)
        if normalize and np.isfinite(profile[0]) and profile[0] > 0:
            profile = profile / profile[0]
        ax.semilogy(np.arange(profile.size), _positive(profile), label=str(label))
    ax.set_xlabel("lag tau = t - k (steps back in time)")
    ax.set_ylabel("relative to lag 0" if normalize else ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(profiles) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def curves(series: dict, path, title="", xlabel="", ylabel="", logy=True, hline=None, hline_label=None) -> str:
    """label -> (x, y) curves on one axis (log y by default), with an optional horizontal line."""
    fig = _figure()
    ax = fig.add_subplot()
    for label, (x, y) in series.items():
        y = _positive(y) if logy else np.asarray(y, dtype=np.float64)
        ax.plot(np.asarray(x), y, label=str(label))
    if logy:
        ax.set_yscale("log")
    if hline is not None:
        ax.axhline(hline, color="black", linestyle="--", linewidth=1, label=hline_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(series) > 1 or hline_label:
        ax.legend(fontsize=8)
    return _save(fig, path)


def grad_norm_history(steps, norms, path, clip_threshold=None, clipped=None,
                      title="gradient norm during training") -> str:
    """Global gradient norm (before clipping) per step; the clipping threshold as a dashed
    line and the steps where clipping fired as red dots."""
    steps = np.asarray(steps)
    norms = np.asarray(norms, dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    ax.semilogy(steps, _positive(norms), linewidth=1, label="||dE/dtheta|| before clipping")
    if clip_threshold is not None:
        ax.axhline(clip_threshold, color="black", linestyle="--", linewidth=1, label=f"clip threshold {clip_threshold:g}")
    if clipped is not None:
        fired = np.asarray(clipped, dtype=bool)
        if fired.any():
            ax.plot(steps[fired], norms[fired], "r.", markersize=4, label=f"clipped ({int(fired.sum())} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient norm")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def spectral_radius_history(steps, radii: dict, path, title="spectral radius of W during training") -> str:
    """``radii``: label (e.g. 'layers.0.W') -> values per recorded step."""
    fig = _figure()
    ax = fig.add_subplot()
    for label, values in radii.items():
        ax.plot(np.asarray(steps), np.asarray(values, dtype=np.float64), marker=".", label=str(label))
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="rho = 1")
    ax.set_xlabel("step")
    ax.set_ylabel("rho(W) = max |eigenvalue|")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
