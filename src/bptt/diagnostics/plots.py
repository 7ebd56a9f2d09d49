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
- ``loss_history``: training and validation loss per token, with the uniform-guess level;
- ``spectral_radius_history``: rho(W) over training, with the line rho = 1;
- ``jacobian_heatmap``, ``curves``: ||dh_t/dh_k|| and generic semilog curves.

Every figure has one legend, outside the axes (it hides no data), labelled reference lines
and whole-number ticks on step and lag axes.
"""

from __future__ import annotations

import os

import numpy as np


EXTRA = "plot"                  # pyproject.toml's optional dependency that brings matplotlib


def require_matplotlib(what: str = "bptt's plots") -> None:
    """ImportError in one line, naming the extra to install, unless matplotlib imports.
    Commands call this before any work, so nothing is computed or written in vain."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} need matplotlib, which is not installed: pip install matplotlib "
                          f"(or, in a bptt checkout, pip install -e \".[{EXTRA}]\")") from None


def _figure(width=6.0, height=4.0):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _legend(ax) -> None:
    """The figure's one legend, outside the axes on the right, so it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _integer_ticks(axis) -> None:
    """Steps and lags are whole numbers: no 2.5 on their axes."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _show_level(ax, value: float) -> None:
    """Widen the y range so a reference line at ``value`` sits inside the axes, not on its edge."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(min(lo, value / 2), max(hi, value * 2))
    else:
        pad = 0.05 * (max(hi, value) - min(lo, value) or 1.0)
        ax.set_ylim(min(lo, value - pad), max(hi, value + pad))


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
                          ylabel="t (output step)", colorbar_label="log10 of the Frobenius norm") -> str:
    table = np.asarray(table, dtype=np.float64)
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    shown = np.log10(_positive(table))
    image = ax.imshow(np.ma.masked_invalid(shown), origin="upper", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _integer_ticks(ax.xaxis)
    _integer_ticks(ax.yaxis)
    return _save(fig, path)


def jacobian_heatmap(J, path, title="||dh_t/dh_k||_2 (batch mean)") -> str:
    return contributions_heatmap(J, path, title=title, xlabel="k", ylabel="t",
                                 colorbar_label="log10 of the spectral norm ||.||_2")


def lag_profiles(profiles: dict, path, title="gradient magnitude by time lag", normalize=False,
                 ylabel="sum over t of ||term (t - tau) of dE_t/dW||", hline=None, hline_label=None) -> str:
    """``profiles``: label -> (T,) array indexed by lag tau. ``normalize``: divide each curve
    by its lag-0 value (compare shapes, not scales). ``hline``: a labelled reference level."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    for label, profile in profiles.items():
        profile = np.asarray(profile, dtype=np.float64)
        if normalize and np.isfinite(profile[0]) and profile[0] > 0:
            profile = profile / profile[0]
        ax.semilogy(np.arange(profile.size), _positive(profile), label=str(label))
    if hline is not None:
        ax.axhline(hline, color="black", linestyle=":", linewidth=1, label=hline_label)
        _show_level(ax, hline)
    ax.set_xlabel("lag tau = t - k (steps back in time)")
    ax.set_ylabel("relative to lag 0" if normalize else ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    _integer_ticks(ax.xaxis)
    _legend(ax)
    return _save(fig, path)


def curves(series: dict, path, title="", xlabel="", ylabel="", logy=True, hline=None, hline_label=None,
           integer_x=True, markers=(), dotted=()) -> str:
    """label -> (x, y) curves on one axis (log y by default), with an optional labelled
    horizontal line; ``markers``: labels drawn as dots joined by a line (sparse series);
    ``dotted``: labels drawn as thick dotted lines (a curve that should lie on another one)."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    for label, (x, y) in series.items():
        y = _positive(y) if logy else np.asarray(y, dtype=np.float64)
        if label in dotted:
            ax.plot(np.asarray(x), y, ":", linewidth=2.5, label=str(label))
        else:
            ax.plot(np.asarray(x), y, "o-" if label in markers else "-", markersize=3, label=str(label))
    if logy:
        ax.set_yscale("log")
    if hline is not None:
        ax.axhline(hline, color="black", linestyle="--", linewidth=1, label=hline_label)
        _show_level(ax, hline)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if integer_x:
        _integer_ticks(ax.xaxis)
    _legend(ax)
    return _save(fig, path)


def grad_norm_history(steps, norms, path, clip_threshold=None, clipped=None,
                      title="gradient norm during training") -> str:
    """Global gradient norm (before clipping) per step; the clipping threshold as a dashed
    line and the steps where clipping fired as red dots."""
    steps = np.asarray(steps)
    norms = np.asarray(norms, dtype=np.float64)
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    ax.semilogy(steps, _positive(norms), linewidth=1, label="||dE/dtheta|| before clipping")
    if clip_threshold is not None:
        ax.axhline(clip_threshold, color="black", linestyle="--", linewidth=1, label=f"clip threshold {clip_threshold:g}")
        _show_level(ax, clip_threshold)
    if clipped is not None:
        fired = np.asarray(clipped, dtype=bool)
        if fired.any():
            ax.plot(steps[fired], norms[fired], "r.", markersize=4,
                    label=f"clipping fired\n({int(fired.sum())} of {fired.size} logged steps)")
    ax.set_xlabel("training step")
    ax.set_ylabel("global gradient norm ||.||_2")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    _integer_ticks(ax.xaxis)
    _legend(ax)
    return _save(fig, path)


def spectral_radius_history(steps, radii: dict, path, title="spectral radius of W during training") -> str:
    """``radii``: label (e.g. 'layers.0.W') -> values per recorded step."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    for label, values in radii.items():
        ax.plot(np.asarray(steps), np.asarray(values, dtype=np.float64), marker=".", label=str(label))
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="rho = 1: the linear part\nneither grows nor shrinks")
    _show_level(ax, 1.0)
    ax.set_xlabel("training update")
    ax.set_ylabel("rho(W) = max |eigenvalue|")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    _integer_ticks(ax.xaxis)
    _legend(ax)
    return _save(fig, path)


def loss_history(train: tuple, path, val: tuple | None = None, uniform: float | None = None, unit: str = "token",
                 title="loss during training") -> str:
    """train = (steps, loss per token) at every logged step; val = (steps, validation loss) at
    every evaluation; ``uniform``: ln(vocabulary size), the loss of a uniform guess."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    ax.plot(np.asarray(train[0]), np.asarray(train[1], dtype=np.float64), linewidth=1,
            label="training (this step's batch)")
    if val is not None and len(val[0]):
        ax.plot(np.asarray(val[0]), np.asarray(val[1], dtype=np.float64), "o-", markersize=3,
                label="validation (held-out text)")
    if uniform is not None:
        ax.axhline(uniform, color="black", linestyle="--", linewidth=1,
                   label=f"uniform guess: ln V = {uniform:.2f}")
        _show_level(ax, uniform)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"cross-entropy, nats per {unit}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    _integer_ticks(ax.xaxis)
    _legend(ax)
    return _save(fig, path)


def saturation_scatter(saturation: list, path, title="gate saturation") -> str:
    """Karpathy et al. (2015), Fig. 3: one dot per (unit, gate), x = share of steps the gate is < 0.1,
    y = share > 0.9; one panel per layer. ``saturation``: diagnostics.units.gate_saturation's list."""
    layers = [(index, gates) for index, gates in enumerate(saturation) if gates]
    fig = _figure(3.6 * max(len(layers), 1) + 1.6, 3.6)
    for panel, (index, gates) in enumerate(layers):
        ax = fig.add_subplot(1, len(layers), panel + 1)
        for name, (left, right) in gates.items():
            ax.scatter(left, right, s=14, alpha=0.7, label=f"{name} gate")
        ax.plot([0, 1], [1, 0], color="black", linewidth=0.8, linestyle=":", label="always saturated")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("share of steps < 0.1 (left-saturated)", fontsize=8)
        ax.set_ylabel("share of steps > 0.9 (right-saturated)", fontsize=8)
        ax.set_title(f"{title}, layer {index}", fontsize=9)
        ax.grid(True, alpha=0.3)
        if panel == len(layers) - 1:
            _legend(ax)
    return _save(fig, path)
