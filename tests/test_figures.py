"""The figures get what a reader asks for: one legend per figure, outside the axes (so it hides no
data), labelled reference lines, whole-number ticks on step and lag axes, the norm named on the
Jacobian axis, and no "median of 1 seeds". Each figure is caught as it is saved and inspected."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import bptt  # noqa: E402
from bptt.diagnostics import plots  # noqa: E402


@pytest.fixture
def saved(monkeypatch):
    """{file name: Figure} of every figure saved while the test runs."""
    figures = {}
    real_save = plots._save

    def keep(fig, path):
        out = real_save(fig, path)
        fig.canvas.draw()                                  # lay out, so bounding boxes are final
        figures[str(path).rsplit("/", 1)[-1]] = fig
        return out

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _legends(fig):
    return [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)


def _check_legend_outside(fig):
    legends = _legends(fig)
    assert len(legends) == 1
    if not hasattr(fig.canvas, "get_renderer"):           # pyplot's close() detached the Agg canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        inside = ax.get_window_extent(renderer)
        assert box.x0 >= inside.x1 - 1 or box.x1 <= inside.x0 + 1 or box.y0 >= inside.y1 - 1, "legend over the data"
    return [t.get_text() for t in legends[0].get_texts()]


def _integer_ticks(ax, axis="x"):
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())    # the heat map's y axis runs downwards
    ticks = [t for t in (ax.get_xticks() if axis == "x" else ax.get_yticks()) if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_diagnose_figures(tmp_path, saved):
    from bptt.diagnostics.report import diagnose
    from bptt.training.optim import Adam
    from bptt.training.train import Trainer

    from bptt.diagnostics import GradientRecorder

    net = bptt.Network(2, 6, 1, loss="mse", seed=0)
    rng = np.random.default_rng(0)
    probe = (rng.standard_normal((7, 2, 2)), rng.standard_normal((7, 2, 1)), None)
    recorder = GradientRecorder(tmp_path / "diagnostics.jsonl", every=2, probe=probe[:2])
    trainer = Trainer(net, Adam(net.params, lr=1e-2), clip=lambda g: bptt.clip_by_global_norm(g, 0.5),
                      callbacks=[recorder], metrics_path=str(tmp_path / "metrics.jsonl"))
    trainer.fit(lambda step: (rng.standard_normal((7, 4, 2)), rng.standard_normal((7, 4, 1))), steps=5)
    diagnose(net, probe, tmp_path / "out", run_dir=str(tmp_path), clip_threshold=0.5)
    assert set(saved) >= {"contributions.png", "lag_profile.png", "jacobian.png", "grad_norm.png",
                          "spectral_radius.png"}

    heat = saved["contributions.png"].axes[0]
    _integer_ticks(heat, "x")
    _integer_ticks(heat, "y")
    assert "layer 0" in heat.get_title()

    lag = saved["lag_profile.png"]
    labels = _check_legend_outside(lag)
    assert "0.01 x lag 0" in labels and "this probe" in " ".join(labels)
    _integer_ticks(lag.axes[0])

    jac = saved["jacobian.png"]
    assert "spectral norm" in jac.axes[0].get_ylabel()
    assert "norm 1" in _check_legend_outside(jac)
    _integer_ticks(jac.axes[0])

    grad = saved["grad_norm.png"]
    assert any(label.startswith("clip threshold 0.5") for label in _check_legend_outside(grad))
    _integer_ticks(grad.axes[0])

    rho = saved["spectral_radius.png"]
    assert any(label.startswith("rho = 1") for label in _check_legend_outside(rho))
    lo, hi = rho.axes[0].get_ylim()
    assert lo < 1.0 < hi                                   # the reference line inside the axes, not on the edge


def test_loss_figure(tmp_path, saved):
    plots.loss_history(([2, 4, 6], [3.0, 2.5, 2.2]), tmp_path / "loss.png", val=([4], [2.6]), uniform=np.log(30.0),
                       unit="character")
    fig = saved["loss.png"]
    labels = _check_legend_outside(fig)
    assert labels[0].startswith("training") and labels[1].startswith("validation")
    assert labels[2] == "uniform guess: ln V = 3.40"
    assert fig.axes[0].get_ylim()[1] > np.log(30.0)
    _integer_ticks(fig.axes[0])


def test_experiment_figures_name_their_seeds(tmp_path, monkeypatch):
    import matplotlib.figure

    from bptt.experiments import task_report
    from bptt.experiments.vanishing import run_vanishing, write_figure as vanishing_figure

    caught = []
    real = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        fig.canvas.draw()
        caught.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    curve = {"step": [0, 10, 20], "mse": [0.5, 0.3, 0.2]}
    result = {"task": "adding", "metric": "mse", "seq_lens": [10, 20], "cells": ["rnn", "lstm"],
              "baseline": {"10": {"mse": 0.167}, "20": {"mse": 0.167}},
              "runs": [{"cell": c, "T": T, "seed": 4, "curve": curve} for c in ("rnn", "lstm") for T in (10, 20)]}
    task_report.write_figure(result, str(tmp_path / "curves.png"))
    fig = caught[-1]
    labels = _check_legend_outside(fig)
    assert labels[:2] == ["rnn (seed 4)", "lstm (seed 4)"] and not any("median of 1" in x for x in labels)
    assert labels[2].startswith("trivial baseline")
    for ax in fig.axes:
        _integer_ticks(ax)
    result["runs"] += [dict(r, seed=5) for r in result["runs"]]
    task_report.write_figure(result, str(tmp_path / "curves2.png"))
    assert _check_legend_outside(caught[-1])[0].startswith("rnn (median of 2 seeds")

    vanishing = run_vanishing(None, quick=True, seeds=[0], methods=["tanh", "lstm"], progress=None)
    vanishing_figure(vanishing, str(tmp_path / "vanishing.png"))
    fig = caught[-1]
    labels = _check_legend_outside(fig)
    assert labels[:2] == ["tanh", "lstm"] and any("effective memory" in x for x in labels)
    assert all("(seed 0)" in ax.get_title() for ax in fig.axes)
    for ax in fig.axes:
        _integer_ticks(ax)
