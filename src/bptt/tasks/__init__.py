"""Long-range benchmark tasks: seeded generators for any length T, each with its published
success criterion and its trivial (memoryless) baseline. numpy only.

    from bptt.tasks import get_task
    task = get_task("adding")                               # Le, Jaitly & Hinton 2015 form
    inputs, targets, mask = task.generate(T=100, batch=32, seed=0)
    net = Network(task.input_size, 64, task.output_size, loss=task.loss)
    metrics = task.score(net.forward(inputs).outputs, targets, mask)   # the paper's units
    task.baseline(100), task.solved(metrics)

Every generator returns bptt's time-major format: inputs (T', B, I) float, targets (T', B)
ids for ``loss="cross_entropy"`` or (T', B, O) floats for ``loss="mse"``, mask (T', B);
T' = T except for copying (T + 20) and adding-hs with ``vary_length``.

Registered tasks (``TASKS``):

| name             | paper                                   | loss          | headline metric     |
|------------------|-----------------------------------------|---------------|---------------------|
| adding           | Le, Jaitly & Hinton 2015                | mse           | mse (baseline 0.167)|
| adding-hs        | Hochreiter & Schmidhuber 1997, Exp. 4   | mse           | accuracy (|e|<0.04) |
| temporal-order   | H&S 1997 Exp. 6a; Pascanu et al. 2013   | cross_entropy | error (< 1%)        |
| copying          | Arjovsky, Shah & Bengio 2016            | cross_entropy | cross_entropy/step  |
| latch            | Bengio, Simard & Frasconi 1994 (L = 1)  | mse           | accuracy            |
| two-sequence     | BSF94 / H&S 1997 (L = 3)                | mse           | accuracy            |
| parity           | running XOR; Grazzi et al. 2024         | cross_entropy | error               |
| selective-copying| Gu & Dao 2023 (Mamba), sec. 3.1         | cross_entropy | accuracy (copied)   |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from . import adding, copying, latch, parity, selective_copying, temporal_order


@dataclass(frozen=True)
class Task:
    name: str
    reference: str
    loss: str                   # bptt loss kind the network trains with
    input_size: int
    output_size: int
    metric: str                 # headline key of ``score``'s dict
    lower_is_better: bool
    generate: Callable          # (T, batch, seed) -> (inputs, targets, mask)
    score: Callable             # (outputs, targets, mask) -> {metric: value} in the paper's units
    trivial_outputs: Callable   # (inputs, targets, mask) -> outputs of the memoryless predictor
    baseline: Callable          # (T) -> analytic score of trivial_outputs
    solved: Callable            # (metrics) -> bool: the success criterion
    options: dict = field(default_factory=dict)

    def sequence_length(self, T: int) -> int:
        """Steps the arrays have for delay/length T."""
        if self.name == "copying":
            return copying.length(T)
        if self.name == "selective-copying":
            return selective_copying.length(T)
        if self.options.get("vary_length"):
            return T + T // 10
        return T


def _adding(name, form, reference, metric, lower, **options):
    opts = dict(form=form, **options)
    return Task(name, reference, "mse", 2, 1, metric, lower,
                partial(adding.generate, **opts), partial(adding.score, form=form),
                partial(adding.trivial_outputs, form=form), partial(adding.baseline, **opts),
                partial(adding.solved, form=form), opts)


def _latch(name, info_steps, reference):
    return Task(name, reference, "mse", 1, 1, "accuracy", False,
                partial(latch.generate, info_steps=info_steps), latch.score, latch.trivial_outputs,
                latch.baseline, latch.solved, {"info_steps": info_steps})


TASKS = {
    "adding": _adding("adding", "le", "Le, Jaitly & Hinton 2015, sec. 4.1", "mse", True),
    "adding-hs": _adding("adding-hs", "hs", "Hochreiter & Schmidhuber 1997, Experiment 4", "accuracy", False),
    "temporal-order": Task("temporal-order", "Hochreiter & Schmidhuber 1997, Exp. 6a; Pascanu, Mikolov & Bengio 2013",
                           "cross_entropy", len(temporal_order.SYMBOLS), temporal_order.NUM_CLASSES, "error", True,
                           temporal_order.generate, temporal_order.score, temporal_order.trivial_outputs,
                           temporal_order.baseline, temporal_order.solved),
    "copying": Task("copying", "Arjovsky, Shah & Bengio 2016, sec. 4.1", "cross_entropy",
                    copying.NUM_SYMBOLS, copying.NUM_SYMBOLS, "cross_entropy", True,
                    copying.generate, copying.score, copying.trivial_outputs, copying.baseline, copying.solved),
    "parity": Task("parity", "running XOR of a bit stream; Grazzi et al. 2024 (diagonal linear RNNs cannot)",
                   "cross_entropy", parity.NUM_SYMBOLS, parity.NUM_SYMBOLS, "error", True, parity.generate,
                   parity.score, parity.trivial_outputs, parity.baseline, parity.solved),
    "selective-copying": Task("selective-copying", "Gu & Dao 2023, sec. 3.1", "cross_entropy",
                              selective_copying.NUM_SYMBOLS, selective_copying.NUM_SYMBOLS, "accuracy", False,
                              selective_copying.generate, selective_copying.score,
                              selective_copying.trivial_outputs, selective_copying.baseline,
                              selective_copying.solved),
    "latch": _latch("latch", 1, "Bengio, Simard & Frasconi 1994 (latch, L = 1)"),
    "two-sequence": _latch("two-sequence", 3, "Bengio, Simard & Frasconi 1994; H&S 1997 (two-sequence, L = 3)"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {name!r}")
    return TASKS[name]


__all__ = ["Task", "TASKS", "get_task", "adding", "copying", "latch", "parity", "selective_copying",
           "temporal_order"]
