"""Recording gradient flow during training: a callback for ``bptt.training.train.Trainer``.

    recorder = GradientRecorder("runs/x/diagnostics.jsonl", every=50, probe=(inputs, targets, mask))
    Trainer(net, opt, clip=..., callbacks=[recorder]).fit(data, steps=1000)

Every ``every`` optimiser updates it appends one JSON line (and keeps it in
``recorder.lines``):

    {"kind": "gradients", "step", "update", "loss",
     "grad_norm":          global norm before clipping,
     "clipped", "clip_scale": this update's clipping, "clip_events": clipped updates since the last line,
     "grad_norms":         {name: ||dE/dtheta||} of the gradients the optimiser used (after clipping),
     "grad_norms_unclipped": the same before clipping (when the Trainer keeps them),
     "update_ratio":       {name: ||theta_after - theta_before|| / ||theta_before||} of this update,
     "spectral_radius":    {"layers.l.W": rho per gate block},
     "lag_profile":        mean over output steps of ||term (t - tau) of dE_t/dW|| by lag tau,
                           on the fixed ``probe`` batch (absent without a probe),
     "effective_memory":   lag where that profile falls below ``fraction`` of its lag-0 value}

The lines go to their own file (``diagnostics.jsonl`` next to the Trainer's ``metrics.jsonl``)
so that tools reading the training metrics see only their own lines. The lag profile costs
up to T single-step backward passes per output step of the probe (see ``decomposition``):
keep the probe small (a few sequences) or ``every`` large.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .. import validation as check
from ..io.files import append_line
from .decomposition import contribution_norms, effective_memory, lag_profile
from .spectra import spectrum


def _norm(array: np.ndarray) -> float:
    flat = array.ravel()
    return float(np.sqrt(np.dot(flat, flat)))


class GradientRecorder:
    def __init__(self, path=None, every: int = 50, probe=None, layer: int = -1, param: str = "W",
                 fraction: float = 0.01):
        self.path = None if path is None else os.fspath(path)
        self.every = check.positive_int("every", every)
        if probe is not None and not (isinstance(probe, (tuple, list)) and len(probe) in (2, 3)):
            raise ValueError(f"probe must be (inputs, targets) or (inputs, targets, mask), got {type(probe).__name__}")
        self.probe = None if probe is None else tuple(probe) + (None,) * (3 - len(probe))
        self.layer, self.param, self.fraction = layer, param, fraction
        self.lines: list = []
        self._clip_events = 0
        self._before = None               # parameters before the next recorded update

    def __call__(self, record) -> None:
        """Trainer callback: ``record`` is a ``bptt.training.train.StepRecord``."""
        if record.clip is not None and record.clip.clipped:
            self._clip_events += 1
        update = record.update
        if update % self.every == 0:
            self.write(self.measure(record))
        if (update + 1) % self.every == 0:    # the next update is recorded: keep the weights it starts from
            self._before = (update, {name: p.copy() for name, p in record.net.params.items()})

    def measure(self, record) -> dict:
        net = record.net
        line = {"kind": "gradients", "step": record.step, "update": record.update, "loss": float(record.loss),
                "grad_norm": float(record.grad_norm),
                "clipped": bool(record.clip is not None and record.clip.clipped),
                "clip_scale": None if record.clip is None else float(record.clip.scale),
                "clip_events": self._clip_events,
                "grad_norms": {name: _norm(g) for name, g in record.grads.items()}}
        self._clip_events = 0
        if record.grads_unclipped is not None:
            line["grad_norms_unclipped"] = {name: _norm(g) for name, g in record.grads_unclipped.items()}
        if self._before is not None and self._before[0] == record.update - 1:
            before = self._before[1]
            line["update_ratio"] = {name: _norm(net.params[name] - before[name]) / max(_norm(before[name]), 1e-30)
                                    for name in net.params}
        line["spectral_radius"] = {name: info["spectral_radius"] for name, info in spectrum(net).items()}
        if self.probe is not None:
            line.update(self.profile(net))
        return line

    def profile(self, net) -> dict:
        inputs, targets, mask = self.probe
        table = contribution_norms(net, inputs, targets, self.param, mask=mask, layer=self.layer)
        profile = lag_profile(table, reduce="mean")
        return {"lag_profile": [None if not np.isfinite(v) else float(v) for v in profile],
                "effective_memory": effective_memory(profile, self.fraction),
                "effective_memory_fraction": self.fraction}

    def write(self, line: dict) -> None:
        self.lines.append(line)
        if self.path is not None:
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            append_line(self.path, json.dumps(line))       # one whole line per record, no symlink followed


def read_jsonl(path) -> list:
    """Every JSON object in a JSON-lines file (blank lines skipped; a bad line names its number; a torn
    last line is skipped with a warning; FIFOs and oversized files refused): bptt.io.files.read_json_lines."""
    from ..io.files import read_json_lines

    return read_json_lines(path)
