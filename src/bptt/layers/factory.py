"""Building a network's layers: one cell per direction, wrapped when bidirectional,
and a check that the weights would fit in memory before any is allocated."""

from __future__ import annotations

import os

from .bidirectional import BidirectionalLayer
from .gru import GRULayer
from .lnlstm import LNLSTMLayer
from .lstm import LSTMLayer
from .lstmp import LSTMPLayer
from .mingru import MinGRULayer
from .minlstm import MinLSTMLayer
from .rnn import RNNLayer

CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm")
# Rows of U per hidden unit, and whether the cell has a recurrent matrix W (G H x H).
GATES = {"rnn": 1, "gru": 3, "lstm": 4, "mingru": 2, "minlstm": 3}
RECURRENT_MATRIX = {"rnn": True, "gru": True, "lstm": True, "mingru": False, "minlstm": False}


def refuse_absurd_size(net) -> None:
    """ValueError if the weights alone would not fit in this machine's memory (checked before allocating)."""
    gates = GATES[net.cell]
    width = net.num_directions * (getattr(net, "proj_size", None) or net.hidden_size)
    per_input = net.num_directions * gates * net.hidden_size            # rows of U, W per layer
    recurrent = (getattr(net, "proj_size", None) or net.hidden_size) if RECURRENT_MATRIX[net.cell] else 0
    count = per_input * (net.input_size + recurrent + 2)                # layer 0 (U, W, biases)
    count += (net.num_layers - 1) * per_input * (width + recurrent + 2)
    count += 0 if net.output_size is None else net.output_size * (width + 1)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):       # pragma: no cover - platforms without sysconf
        return
    if count * net.dtype.itemsize > memory:
        raise ValueError(f"a {net.cell} network with input_size={net.input_size}, hidden_size={net.hidden_size}, "
                         f"num_layers={net.num_layers}, output_size={net.output_size} has {count:,} parameters "
                         f"({count * net.dtype.itemsize / 2**30:,.1f} GiB), more than this machine's memory "
                         f"({memory / 2**30:,.1f} GiB)")


def _make_one_direction(cell: str, input_size: int, hidden_size: int, options: dict, rng, dtype):
    if cell == "rnn":
        return RNNLayer(input_size, hidden_size, nonlinearity=options["nonlinearity"],
                        bias=options["bias"], rng=rng, dtype=dtype)
    if cell == "lstm" and options.get("proj_size"):
        return LSTMPLayer(input_size, hidden_size, options["proj_size"], bias=options["bias"],
                          forget_bias=options["forget_bias"], rng=rng, dtype=dtype)
    if cell == "lstm" and options.get("layer_norm"):
        return LNLSTMLayer(input_size, hidden_size, bias=options["bias"], forget_bias=options["forget_bias"],
                           rng=rng, dtype=dtype)
    if cell == "lstm":
        return LSTMLayer(input_size, hidden_size, bias=options["bias"], forget_bias=options["forget_bias"],
                         rng=rng, dtype=dtype)
    if cell == "gru":
        return GRULayer(input_size, hidden_size, variant=options["gru_variant"], bias=options["bias"],
                        rng=rng, dtype=dtype)
    if cell == "mingru":
        return MinGRULayer(input_size, hidden_size, bias=options["bias"], rng=rng, dtype=dtype)
    if cell == "minlstm":
        return MinLSTMLayer(input_size, hidden_size, bias=options["bias"], rng=rng, dtype=dtype)
    raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")


def output_width(layer) -> int:
    """What one direction of a layer outputs per step: its h's size (P for an LSTM with projection)."""
    return getattr(layer, "output_width", layer.hidden_size)


def state_sizes(layer) -> tuple:
    """The size of each of the layer's states, in state_names order (h: P, c: H for LSTMP)."""
    return getattr(layer, "state_sizes", (layer.hidden_size,) * len(layer.state_names))


def make_layer(cell: str, input_size: int, hidden_size: int, options: dict, rng, dtype):
    layer = _make_one_direction(cell, input_size, hidden_size, options, rng, dtype)
    if options.get("bidirectional"):
        reverse = _make_one_direction(cell, input_size, hidden_size, options, rng, dtype)
        return BidirectionalLayer(layer, reverse)
    return layer
