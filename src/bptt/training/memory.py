"""What a training run needs in memory, counted before anything big is allocated.

``bptt train`` refuses a run that cannot fit with one line giving the figure and this machine's
memory, instead of failing half-way through an allocation or being killed by the kernel. The count
(bytes; ``P`` parameters, itemsize ``s`` = 4 for float32, 8 for float64):

    weights          P * s
    init draws       largest weight matrix * 8      the initialisers draw in float64, then cast
    gradients        P * s
    optimiser slots  k * P * s                     k = 2 (adam), 1 (adagrad, rmsprop, sgd+momentum), 0 (sgd)
    activations      T * B * s * [dirs * L * H * (3 * gates + 4) + 3 * V]
                     forward caches (pre-activations, h, c, tanh c) and backward's dh/da per layer,
                     logits, softmax and dE/dlogits of the readout
    text             bytes_per_char * characters    the file, the decoded string, the token ids and
                                                   the tokeniser's temporaries (TEXT_BYTES_PER_CHAR)

Memory is the machine's physical memory (``SC_PHYS_PAGES``): what is free at the moment changes
from minute to minute, what is installed does not. A text larger than ``MAX_TEXT_BYTES`` (or than
memory / TEXT_BYTES_PER_CHAR) is refused before it is read.
"""

from __future__ import annotations

import os

from ..io.files import MAX_TEXT_BYTES

from ..layers.factory import GATES     # rows of U per hidden unit, for every cell (one table)
SLOTS = {"adam": 2, "adagrad": 1, "rmsprop": 1, "sgd": 0}
# Peak bytes per character of text while it is read and turned into token ids: the file's bytes
# (1), the decoded str (1-4), the compact ids (1-2) and the tokeniser's chunked temporaries (char
# level, bptt.textcodes); word level still builds Python lists of tokens (~3 pointers per char).
TEXT_BYTES_PER_CHAR = {"char": 8, "word": 32}


def machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):          # pragma: no cover - platforms without sysconf
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def parameter_counts(cell: str, input_size: int, hidden: int, layers: int, output_size: int,
                     bidirectional: bool = False) -> tuple[int, int]:
    """(all parameters, the largest single matrix) of a network of these sizes."""
    gates, dirs = GATES.get(cell, 4), 2 if bidirectional else 1   # an unknown cell: counted as the largest
    # (minGRU/minLSTM have no W: counting one H x H block per gate over-estimates, which a guard may)
    rows = gates * hidden                                   # rows of U, W per direction
    count = dirs * rows * (input_size + hidden + 1)         # layer 0: U, W, b
    count += (layers - 1) * dirs * rows * (dirs * hidden + hidden + 1)
    count += output_size * (dirs * hidden + 1)              # V, c
    if cell == "gru":
        count += layers * dirs * hidden                     # the candidate's own recurrent bias (b_hn)
    largest = max(rows * max(input_size, hidden, dirs * hidden if layers > 1 else 0), output_size * dirs * hidden)
    return count, largest


def run_needs(*, cell: str, vocab: int, hidden: int, layers: int, seq_len: int, batch: int, dtype: str,
              optimizer: str, momentum: float = 0.0, chars: int = 0, level: str = "char",
              bidirectional: bool = False) -> dict:
    """Bytes by item (see the module doc); ``sum(run_needs(...).values())`` is the total."""
    itemsize = 8 if dtype == "float64" else 4
    count, largest = parameter_counts(cell, vocab, hidden, layers, vocab, bidirectional)
    slots = SLOTS[optimizer] + (1 if optimizer in ("sgd", "rmsprop") and momentum else 0)
    dirs = 2 if bidirectional else 1
    per_step = dirs * layers * hidden * (3 * GATES[cell] + 4) + 3 * vocab
    return {"weights": count * itemsize, "init draws": largest * 8, "gradients": count * itemsize,
            "optimizer slots": slots * count * itemsize, "activations": seq_len * batch * per_step * itemsize,
            "text": chars * TEXT_BYTES_PER_CHAR.get(level, TEXT_BYTES_PER_CHAR["word"])}


def refuse_if_too_big(needs: dict, what: str, memory: int | None = None) -> None:
    """ValueError with the figure, its largest parts and this machine's memory when the run cannot fit."""
    memory = machine_memory() if memory is None else memory
    total = sum(needs.values())
    if memory is None or total <= memory:
        return
    parts = ", ".join(f"{name} {gib(n)}" for name, n in sorted(needs.items(), key=lambda kv: -kv[1])
                      if n >= total / 100)                    # the parts that matter
    raise ValueError(f"{what} needs about {gib(total)} of memory ({parts}), more than this machine's "
                     f"{gib(memory)}; use a smaller --hidden, --layers, --batch or --seq-len, or a shorter text")


def text_byte_limit(level: str = "char", memory: int | None = None) -> int:
    """The largest text file ``bptt train``/``evaluate`` reads: MAX_TEXT_BYTES, or less on a machine
    whose memory could not hold TEXT_BYTES_PER_CHAR bytes per character of it."""
    memory = machine_memory() if memory is None else memory
    if memory is None:
        return MAX_TEXT_BYTES
    return int(min(MAX_TEXT_BYTES, memory // TEXT_BYTES_PER_CHAR.get(level, TEXT_BYTES_PER_CHAR["word"])))
