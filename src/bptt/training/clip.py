"""Gradient clipping: the lecture's remedy for exploding gradients.

- ``clip_by_value``: cap every entry to [-limit, limit] (the lecture's "if the gradient
  exceeds 10, use 10"; min-char-rnn's ``np.clip(d, -5, 5)``).
- ``clip_by_global_norm``: Pascanu, Mikolov & Bengio (2013), Algorithm 1: if the norm
  g of all gradients together exceeds a threshold, rescale them all by threshold / g,
  keeping the direction. Same as ``torch.nn.utils.clip_grad_norm_``.
- ``clip_by_param_norm``: the same rule applied to each parameter's gradient on its own
  (``clip_grad_norm_`` called once per parameter).

``make_clipper(mode, threshold)`` turns a name into a function ``grads -> ClipReport``
(what ``bptt.training.train.Trainer`` takes); ``ClipStats`` accumulates the reports so training
logs how often clipping fired and how hard (the smallest scale it applied).

Which loss's gradient the threshold bounds. bptt's loss is summed over time,
``E = (1/B) sum_b sum_t E_t``, so its gradient grows with the number n of loss-bearing steps
(n = T for a text batch: the median norm of a healthy char model at T = 64 is ~36, and "clip 5"
fires on every update). ``make_clipper(mode, c, per_token=True)`` bounds the gradient of the
per-token mean loss ``E / n`` instead -- what char-rnn's and PyTorch's "clip 5" mean, their loss
being a mean. Clipping is linear in the gradient, so this is the same rule on dE/dtheta with the
threshold ``c * n``; the clipper is called ``clip(grads, loss_steps=n)`` (the Trainer passes n:
the update's time steps, or its mask's sum / B) and reports the norm of d(E/n)/dtheta, the number
compared with ``c``. ``bptt train`` clips this way by default (``--clip-loss mean``).

Both work in place and return what they measured, so training can log how often and
how hard clipping fired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation as check


@dataclass
class ClipReport:
    norm: float          # global L2 norm of the gradients before clipping
    clipped: bool        # did clipping change anything
    scale: float = 1.0   # factor applied (global norm); 1.0 when not clipped
    num_clipped: int = 0  # entries changed (by value)


def global_norm(grads: dict) -> float:
    """sqrt(sum over all parameters of sum g^2), accumulated in float64."""
    return float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values())))


def clip_by_global_norm(grads: dict, max_norm: float) -> ClipReport:
    max_norm = check.positive_float("max_norm", max_norm)
    norm = global_norm(grads)
    if not np.isfinite(norm) or norm <= max_norm:
        return ClipReport(norm, False)
    scale = max_norm / (norm + 1e-6)       # torch's clip_grad_norm_ uses the same 1e-6
    for g in grads.values():
        g *= scale
    return ClipReport(norm, True, scale)


def clip_by_value(grads: dict, limit: float) -> ClipReport:
    limit = check.positive_float("limit", limit)
    norm = global_norm(grads)
    changed = 0
    for g in grads.values():
        changed += int(np.count_nonzero(np.abs(g) > limit))
        np.clip(g, -limit, limit, out=g)
    return ClipReport(norm, changed > 0, 1.0, changed)


def clip_by_param_norm(grads: dict, max_norm: float) -> ClipReport:
    """For each parameter separately: if ||g_p|| > max_norm, g_p <- g_p * max_norm / (||g_p|| + 1e-6).
    The report's ``scale`` is the smallest factor applied, ``num_clipped`` the number of parameters clipped."""
    max_norm = check.positive_float("max_norm", max_norm)
    norm = global_norm(grads)
    smallest, changed = 1.0, 0
    for g in grads.values():
        g_norm = float(np.sqrt(np.dot(g.ravel(), g.ravel())))
        if np.isfinite(g_norm) and g_norm > max_norm:
            scale = max_norm / (g_norm + 1e-6)
            g *= scale
            smallest = min(smallest, scale)
            changed += 1
    return ClipReport(norm, changed > 0, smallest, changed)


CLIP_MODES = ("none", "value", "global-norm", "param-norm")


def make_clipper(mode: str, threshold: float | None = None, *, per_token: bool = False):
    """A function ``grads -> ClipReport`` (or None for ``mode="none"``) for the Trainer.

    ``per_token=True``: the threshold bounds the gradient of the per-token mean loss E / n; the
    function is then ``clip(grads, loss_steps=n)`` and clips dE/dtheta at ``threshold * n``."""
    mode = check.one_of("clip mode", mode, CLIP_MODES)
    if mode == "none":
        return None
    threshold = check.positive_float("clip threshold", threshold)
    fn = {"value": clip_by_value, "global-norm": clip_by_global_norm, "param-norm": clip_by_param_norm}[mode]

    if per_token:
        def clip(grads: dict, loss_steps: float = 1.0) -> ClipReport:
            n = float(loss_steps) if loss_steps > 0 else 1.0     # no loss-bearing step: the gradient is 0 anyway
            report = fn(grads, threshold * n)                    # clip(g, c n) == n * clip(g / n, c)
            report.norm /= n                                     # the norm of d(E/n)/dtheta, compared with c
            return report
    else:
        def clip(grads: dict) -> ClipReport:
            return fn(grads, threshold)

    clip.mode, clip.threshold, clip.per_token = mode, threshold, per_token
    return clip


class ClipStats:
    """Running tally of clip reports: how often clipping fired and how hard."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.fired = 0
        self.min_scale = 1.0          # hardest rescale seen (global/param norm)
        self.max_norm = 0.0           # largest pre-clip global norm seen
        self.entries_clipped = 0      # by-value entries / per-parameter tensors changed

    def add(self, report: ClipReport) -> None:
        self.calls += 1
        self.fired += int(report.clipped)
        self.min_scale = min(self.min_scale, float(report.scale))
        if np.isfinite(report.norm):
            self.max_norm = max(self.max_norm, float(report.norm))
        self.entries_clipped += int(report.num_clipped)

    def summary(self) -> dict:
        """JSON-able: calls, fired, fraction fired, min scale, max norm, entries clipped."""
        return {"clip_calls": self.calls, "clip_fired": self.fired,
                "clip_fraction": self.fired / self.calls if self.calls else 0.0,
                "clip_min_scale": self.min_scale, "grad_norm_max": self.max_norm,
                "clip_entries": self.entries_clipped}


# --------------------------------------------------------------------------- Pascanu's fallback (issue 16)
FALLBACK_NORM = 1e10        # Pascanu et al.'s code (RNN.py): a norm above this is not trusted either
FALLBACK_DECAY = 0.02       # ... and the recurrent W's gradient becomes 0.02 W (a step shrinks W)


def is_recurrent(name: str) -> bool:
    """bptt's recurrent matrices: ``layers.K.W`` and ``layers.K.W_reverse``."""
    return name.rsplit(".", 1)[-1] in ("W", "W_reverse")


def clip_with_fallback(grads: dict, max_norm: float, params: dict, recurrent=is_recurrent) -> ClipReport:
    """Global-norm clipping (Algorithm 1) with the guard of Pascanu, Mikolov & Bengio's code
    (pascanur/trainingRNNs, RNN.py, clipstyle "rescale"): when the norm g is NaN, inf, negative
    or > 1e10 -- float32 cannot be trusted there -- every recurrent gradient dE/dW is replaced
    by 0.02 W (so SGD shrinks W by the factor 1 - 0.02 lr, pulling its spectral radius down)
    and every other gradient by 0. ``recurrent(name)`` picks the recurrent matrices among
    ``params`` (default ``is_recurrent``). The report has scale 0 and ``num_clipped`` = tensors replaced by the fallback."""
    max_norm = check.positive_float("max_norm", max_norm)
    norm = global_norm(grads)
    if np.isfinite(norm) and 0 <= norm <= FALLBACK_NORM:
        return clip_by_global_norm(grads, max_norm)
    for name, g in grads.items():
        if recurrent(name):
            np.multiply(params[name], FALLBACK_DECAY, out=g)
        else:
            g[...] = 0.0
    return ClipReport(norm, True, 0.0, len(grads))


def make_fallback_clipper(threshold: float, params: dict, recurrent=is_recurrent):
    """``clip_with_fallback`` as a Trainer clip function (mode "global-norm+fallback")."""
    threshold = check.positive_float("clip threshold", threshold)

    def clip(grads: dict) -> ClipReport:
        return clip_with_fallback(grads, threshold, params, recurrent)

    clip.mode, clip.threshold = "global-norm+fallback", threshold
    return clip
