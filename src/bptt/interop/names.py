"""bptt parameters <-> PyTorch's parameter names, in numpy alone (no torch import).

Layer k, direction suffix s = "" or "_reverse" (bidirectional):

    weight_ih_l{k}{s}  <->  layers.k.U{s}      (G H, I)    G = 1 rnn, 4 lstm [i, f, g, o], 3 gru [r, z, n]
    weight_hh_l{k}{s}  <->  layers.k.W{s}      (G H, H), or (4H, P) for an LSTM with projection
    weight_hr_l{k}{s}  <->  layers.k.W_hr{s}   (P, H): nn.LSTM(proj_size=P)
    bias_ih_l{k}{s}, bias_hh_l{k}{s}  <->  layers.k.b{s} (+ layers.k.b_hn{s} for the torch GRU)
    head.weight, head.bias  <->  V, c          (an nn.Linear after the recurrent module)
    embedding.weight        <->  embedding     (an nn.Embedding before it)

Biases: only b_ih + b_hh enters a_t of the RNN and LSTM, so bptt keeps their sum; for the torch
GRU the n-slice of bias_hh sits inside r * (W_n h + b_hn), so b = bias_ih + [bias_hh_r, bias_hh_z, 0]
and b_hn = bias_hh[2H:]. Going back, bias_ih = b and bias_hh = 0 (GRU: [0, 0, b_hn]).

``interop/torch.py`` (torch modules) and ``io/export.py`` (safetensors files) both use this map.
"""

from __future__ import annotations

import re

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH_CELLS = tuple(GATES)
# What torch.nn.RNN/LSTM/GRU (+ head, + embedding) can name: anything else is not from torch.
_NAME = re.compile(r"^(weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
EXTRA_NAMES = ("head.weight", "head.bias", "embedding.weight")


def directions(bidirectional: bool) -> tuple:
    return ("", "_reverse") if bidirectional else ("",)


def to_torch_state(net) -> dict:
    """torch name -> a new array, for every parameter the torch modules of ``net`` have
    (module names bare, the Linear's as ``head.*``, the Embedding's as ``embedding.weight``)."""
    if net.cell not in GATES:
        raise ValueError(f"cell {net.cell!r} has no torch counterpart (torch has {TORCH_CELLS})")
    if net.cell == "gru" and net.gru_variant != "torch":
        raise ValueError(f"gru_variant {net.gru_variant!r} has no torch counterpart "
                         "(torch.nn.GRU applies the reset gate after the recurrent matmul: gru_variant='torch')")
    H = net.hidden_size
    state = {}
    for k in range(net.num_layers):
        for s in directions(net.bidirectional):
            state[f"weight_ih_l{k}{s}"] = net.params[f"layers.{k}.U{s}"].copy()
            state[f"weight_hh_l{k}{s}"] = net.params[f"layers.{k}.W{s}"].copy()
            if getattr(net, "proj_size", None):
                state[f"weight_hr_l{k}{s}"] = net.params[f"layers.{k}.W_hr{s}"].copy()
            if not net.bias:
                continue
            b = net.params[f"layers.{k}.b{s}"]
            state[f"bias_ih_l{k}{s}"] = b.copy()
            bias_hh = np.zeros_like(b)                        # the mergeable bias lives in bias_ih
            if net.cell == "gru":
                bias_hh[2 * H:] = net.params[f"layers.{k}.b_hn{s}"]
            state[f"bias_hh_l{k}{s}"] = bias_hh
    if net.embedding is not None:
        state["embedding.weight"] = net.params["embedding"].copy()
    if net.output_size is not None:
        state["head.weight"] = net.params["embedding" if net.tie_weights else "V"].copy()
        if net.readout_bias:
            state["head.bias"] = net.params["c"].copy()
    return state


def from_torch_state(net, state: dict) -> None:
    """Copy torch-named arrays (as ``to_torch_state`` names them) into ``net.params``, merging the
    biases. ``state`` must hold exactly the names ``to_torch_state(net)`` would give."""
    expected = set(to_torch_state(net))
    if net.tie_weights:
        expected.discard("head.weight")                        # one shared matrix: embedding.weight
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected - {"head.weight"})
    if missing or unexpected:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {unexpected}"] if unexpected else [])
        raise ValueError(f"torch state dict does not fit the network: {' and '.join(parts)}")
    H = net.hidden_size
    values = {}
    for k in range(net.num_layers):
        for s in directions(net.bidirectional):
            values[f"layers.{k}.U{s}"] = state[f"weight_ih_l{k}{s}"]
            values[f"layers.{k}.W{s}"] = state[f"weight_hh_l{k}{s}"]
            if getattr(net, "proj_size", None):
                values[f"layers.{k}.W_hr{s}"] = state[f"weight_hr_l{k}{s}"]
            if not net.bias:
                continue
            b_ih = np.array(state[f"bias_ih_l{k}{s}"], dtype=net.dtype)
            b_hh = np.asarray(state[f"bias_hh_l{k}{s}"], dtype=net.dtype)
            if b_ih.shape != b_hh.shape:
                raise ValueError(f"bias_ih_l{k}{s} has shape {b_ih.shape} but bias_hh_l{k}{s} has {b_hh.shape}")
            if net.cell == "gru":
                b_ih[:2 * H] += b_hh[:2 * H]                    # r, z: the two biases merge
                values[f"layers.{k}.b{s}"] = b_ih
                values[f"layers.{k}.b_hn{s}"] = b_hh[2 * H:]   # n: inside r * (...)
            else:
                values[f"layers.{k}.b{s}"] = b_ih + b_hh
    if net.embedding is not None:
        values["embedding"] = state["embedding.weight"]
    if net.output_size is not None:
        if not net.tie_weights:
            values["V"] = state["head.weight"]
        if net.readout_bias:
            values["c"] = state["head.bias"]
    net.load_state_dict(values)                                # shapes, dtypes, finiteness checked


def torch_names(net, grads: dict) -> dict:
    """Map a bptt gradient dict onto every torch parameter name (head ones as ``head.*``),
    so it compares one for one with ``.grad`` of the module and the head."""
    mapped = {}
    for k in range(net.num_layers):
        for s in directions(net.bidirectional):
            mapped[f"weight_ih_l{k}{s}"] = grads[f"layers.{k}.U{s}"]
            mapped[f"weight_hh_l{k}{s}"] = grads[f"layers.{k}.W{s}"]
            if getattr(net, "proj_size", None):
                mapped[f"weight_hr_l{k}{s}"] = grads[f"layers.{k}.W_hr{s}"]
            if not net.bias:
                continue
            db = grads[f"layers.{k}.b{s}"]
            mapped[f"bias_ih_l{k}{s}"] = db                       # dE/db_ih = dE/db
            if net.cell == "gru":
                H = net.hidden_size                              # dE/db_hh = [db_r, db_z, db_hn]
                mapped[f"bias_hh_l{k}{s}"] = np.concatenate([db[:2 * H], grads[f"layers.{k}.b_hn{s}"]])
            else:
                mapped[f"bias_hh_l{k}{s}"] = db                   # dE/db_hh = dE/db
    if net.embedding is not None:
        mapped["embedding.weight"] = grads["embedding"]
    if net.output_size is not None:
        mapped["head.weight"] = grads["embedding" if net.tie_weights else "V"]   # tied: one shared .grad
        if net.readout_bias:
            mapped["head.bias"] = grads["c"]
    return mapped


def infer_config(shapes: dict, cell: str, where: str = "state dict") -> dict:
    """Network keyword arguments (input_size, hidden_size, output_size, num_layers, bidirectional,
    bias, embedding_size, tie_weights, readout_bias) that fit torch-named ``shapes`` (name -> shape)
    of a ``cell`` module; ValueError naming ``where`` and the first name or shape that fits none."""
    if cell not in GATES:
        raise ValueError(f"{where}: --cell must be one of {TORCH_CELLS}, got {cell!r}")
    G = GATES[cell]
    layers = {}
    for name in shapes:
        if name in EXTRA_NAMES:
            continue
        match = _NAME.match(name)
        if match is None:
            raise ValueError(f"{where}: {name!r} is not a name torch.nn.{cell.upper()} (+ head.weight/bias, "
                             f"embedding.weight) would produce")
        layers.setdefault(int(match.group(2)), set()).add(name)
    if not layers:
        raise ValueError(f"{where}: no recurrent weights (weight_ih_l0, ...) found")
    num_layers = max(layers) + 1
    if sorted(layers) != list(range(num_layers)):
        raise ValueError(f"{where}: layers {sorted(layers)} are not 0..{num_layers - 1}")
    if "weight_ih_l0" not in shapes or len(shapes["weight_ih_l0"]) != 2:
        raise ValueError(f"{where}: weight_ih_l0 must be a 2-d array (G*H, I)")
    rows, input_size = shapes["weight_ih_l0"]
    if rows % G:
        raise ValueError(f"{where}: weight_ih_l0 has {rows} rows, not a multiple of {G} ({cell} has {G} gates)")
    H = rows // G
    bidirectional = "weight_ih_l0_reverse" in shapes
    bias = "bias_ih_l0" in shapes
    D = 2 if bidirectional else 1
    proj = tuple(shapes["weight_hr_l0"])[0] if cell == "lstm" and "weight_hr_l0" in shapes else None
    R = proj or H                                             # what h holds: P with a projection
    for k in range(num_layers):
        want = {}
        for s in directions(bidirectional):
            want[f"weight_ih_l{k}{s}"] = (G * H, input_size if k == 0 else D * R)
            want[f"weight_hh_l{k}{s}"] = (G * H, R)
            if proj:
                want[f"weight_hr_l{k}{s}"] = (proj, H)
            if bias:
                want[f"bias_ih_l{k}{s}"] = want[f"bias_hh_l{k}{s}"] = (G * H,)
        got = layers[k]
        if got != set(want):
            missing, extra = sorted(set(want) - got), sorted(got - set(want))
            raise ValueError(f"{where}: layer {k} of a {cell} with hidden size {H} needs {sorted(want)}"
                             + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
        for name, shape in want.items():
            if tuple(shapes[name]) != shape:
                raise ValueError(f"{where}: {name} has shape {tuple(shapes[name])}, a {cell} with hidden size {H} "
                                 f"and input size {input_size} needs {shape}")
    config = {"hidden_size": H, "num_layers": num_layers, "cell": cell, "bidirectional": bidirectional,
              "bias": bias, "input_size": input_size, "output_size": None, "embedding_size": None,
              "tie_weights": False, "proj_size": proj}
    if "embedding.weight" in shapes:
        emb = tuple(shapes["embedding.weight"])
        if len(emb) != 2 or emb[1] != input_size:
            raise ValueError(f"{where}: embedding.weight has shape {emb}, it must be (vocabulary, {input_size})")
        config["input_size"], config["embedding_size"] = emb
    if "head.bias" in shapes and "head.weight" not in shapes and "embedding.weight" not in shapes:
        raise ValueError(f"{where}: head.bias without head.weight")
    if "head.weight" in shapes or "head.bias" in shapes:
        head = tuple(shapes["head.weight"]) if "head.weight" in shapes else None
        if head is None:                                      # tied: the head's weight is the embedding
            config["tie_weights"] = True
            config["output_size"] = config["input_size"]
        else:
            if len(head) != 2 or head[1] != D * R:
                raise ValueError(f"{where}: head.weight has shape {head}, it must be (outputs, {D * R})")
            config["output_size"] = head[0]
        config["readout_bias"] = "head.bias" in shapes
        if "head.bias" in shapes and tuple(shapes["head.bias"]) != (config["output_size"],):
            raise ValueError(f"{where}: head.bias has shape {tuple(shapes['head.bias'])}, "
                             f"it must be ({config['output_size']},)")
    return config
