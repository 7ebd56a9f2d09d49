"""Models that leave bptt: ONNX graphs (checked in onnxruntime) and safetensors files under
PyTorch's parameter names. Both written atomically (io/files.py); onnx and safetensors are
optional extras, imported only here and only when called.

ONNX graph (opset 17) of a ``Network`` with ``readout="all"``:

    inputs    int64 token ids (T, B)  or  float32 features (T, B, I)       T, B dynamic
    h0, c0    optional (L*D, B, H) initial states (``initial_state=True``), torch's row order
    lengths   optional int64 (B,) -> every layer's ``sequence_lens``     (``lengths=True``)
    logits    (T, B, O) = Y^L V^T + c, zero at padded steps (as bptt's forward)
    h_n, c_n  (L*D, B, H) final states, each sequence's own last step

one ONNX RNN / LSTM / GRU node per layer. Layouts (bptt keeps torch's):

    LSTM   bptt/torch gates [i, f, g, o]  ->  ONNX [i, o, f, c];  B = [Wb; Rb] (8H) = [b; 0]
    GRU    bptt/torch gates [r, z, n]     ->  ONNX [z, r, h];     B = [b; 0, 0, b_hn]
           torch variant: linear_before_reset=1  (r * (W_n h + b_hn));  Cho: linear_before_reset=0
    RNN    activations Tanh or Relu;  B = [b; 0]

Token ids without an embedding: U x_t is column id_t of U. The graph gathers it: a row of the
identity (one-hot) when the vocabulary is no wider than the gates, else the gathered columns of
U themselves with W_ih = identity -- both exact in float32.

``lengths`` (checked in tests/test_export_onnx.py): onnxruntime's ``sequence_lens`` gives what bptt's
packed sequences give -- zeros in Y at padded steps, Y_h at each sequence's own last step, the
reverse direction starting there; only the readout's bias at padded steps differs, so the graph
multiplies the logits by the (T, B) mask t < L_b. Lengths must lie in [1, T], as for bptt
(onnxruntime does not check them).

The graph computes the network in evaluation mode: dropout (between layers, training only) is not
part of it.
"""

from __future__ import annotations

import json

import numpy as np

from . import files

OPSET = 17
_ONNX_GATES = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}   # ONNX's block k = bptt's block _[k]
_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _onnx():
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'bptt[onnx]'") from None
    return onnx, helper


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install 'bptt[interop]'") from None
    return st


def exportable(net, what: str = "ONNX", readouts=("all",)) -> None:
    """ValueError naming what ``what`` cannot express in ``net`` (one line), else None."""
    from ..interop.names import GATES

    if net.cell not in GATES:
        raise ValueError(f"{what} export: cell {net.cell!r} has no {what} operator (exportable cells: rnn, lstm, gru)")
    if getattr(net, "layer_norm", False) and what == "ONNX":
        raise ValueError("ONNX export: the layer-normalised LSTM has no ONNX operator (its LSTM op has no layer norm)")
    if getattr(net, "proj_size", None) and what == "ONNX":
        raise ValueError(f"ONNX export: an LSTM with projection (proj_size={net.proj_size}) has no ONNX operator")
    if getattr(net, "layer_norm", False):
        raise ValueError(f"{what} export: the layer-normalised LSTM has no torch counterpart")
    if getattr(net, "zoneout", 0.0) > 0.0 and what == "ONNX":
        raise ValueError(f"{what} export: zoneout={net.zoneout} changes the evaluation-mode recurrence "
                         f"(h_t = p h_(t-1) + (1 - p) h~_t), which no {what} operator has")
    if net.readout_mode not in readouts:
        raise ValueError(f"{what} export: readout {net.readout_mode!r} is not supported (only readout 'all': "
                         f"one output per step)")


def _reorder(a: np.ndarray, cell: str, H: int) -> np.ndarray:
    """Gate blocks (rows of H) from bptt's order to ONNX's."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in _ONNX_GATES[cell]], axis=0)


def _metadata(net, vocab, input_kind: str) -> dict:
    from .. import __version__

    meta = {"bptt_version": __version__, "bptt_config": json.dumps(net.config), "inputs": input_kind,
            "input_layout": "time-major (T, B)" if input_kind == "ids" else "time-major (T, B, I)"}
    if vocab is not None:
        meta["vocabulary"] = json.dumps(vocab.to_json())
    return meta


def build_onnx(net, *, vocab=None, inputs: str = "auto", initial_state: bool = False, lengths: bool = False):
    """The ``onnx.ModelProto`` of ``net`` (see the module docstring), checked by onnx.checker."""
    onnx, helper = _onnx()
    from onnx import TensorProto, numpy_helper

    exportable(net)
    if inputs not in ("auto", "ids", "features"):
        raise ValueError(f"inputs must be 'auto', 'ids' or 'features', got {inputs!r}")
    if inputs == "auto":
        inputs = "ids" if net.embedding is not None or vocab is not None else "features"
    if inputs == "features" and net.embedding is not None:
        raise ValueError("inputs='features' is impossible for a network with an embedding: it reads token ids")
    cell, H, L, D = net.cell, net.hidden_size, net.num_layers, net.num_directions
    G = len(_ONNX_GATES[cell])
    f32 = np.float32
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def param(name):
        return net.params[name].astype(f32)

    graph_inputs, state_names = [], ["h"] + (["c"] if cell == "lstm" else [])
    if inputs == "ids":
        graph_inputs.append(helper.make_tensor_value_info("inputs", TensorProto.INT64, ["T", "B"]))
    else:
        graph_inputs.append(helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["T", "B", net.input_size]))
    if initial_state:
        for s in state_names:
            graph_inputs.append(helper.make_tensor_value_info(f"{s}0", TensorProto.FLOAT, [L * D, "B", H]))
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        nodes.append(helper.make_node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32))

    # Layer 0's input X and, for token ids without an embedding, the U that reads it.
    first_U = None
    if net.embedding is not None:
        nodes.append(helper.make_node("Gather", [const("embedding", param("embedding")), "inputs"], ["x"], axis=0))
    elif inputs == "ids":
        V = net.input_size
        if V <= D * G * H:                      # one-hot rows: X (T, B, V), W_ih = U
            nodes.append(helper.make_node("Gather", [const("one_hot", np.eye(V, dtype=f32)), "inputs"], ["x"], axis=0))
        else:                                   # U's columns: X (T, B, D G H), W_ih = identity block of each direction
            table = np.concatenate([_reorder(param(f"layers.0.U{s}"), cell, H).T for s in _dirs(net)], axis=1)
            nodes.append(helper.make_node("Gather", [const("U_columns", table), "inputs"], ["x"], axis=0))
            first_U = np.zeros((D, G * H, D * G * H), f32)
            for d in range(D):
                first_U[d, :, d * G * H:(d + 1) * G * H] = np.eye(G * H, dtype=f32)
    else:
        nodes.append(helper.make_node("Identity", ["inputs"], ["x"]))

    layer_input, finals = "x", {s: [] for s in state_names}
    for k in range(L):
        W = np.stack([_reorder(param(f"layers.{k}.U{s}"), cell, H) for s in _dirs(net)])   # (D, G H, I)
        if k == 0 and first_U is not None:
            W = first_U
        R = np.stack([_reorder(param(f"layers.{k}.W{s}"), cell, H) for s in _dirs(net)])   # (D, G H, H)
        node_inputs = [layer_input, const(f"W_{k}", W), const(f"R_{k}", R)]
        if net.bias:
            rows = []
            for s in _dirs(net):
                Wb = _reorder(param(f"layers.{k}.b{s}"), cell, H)
                Rb = np.zeros(G * H, f32)
                if cell == "gru" and net.gru_variant == "torch":
                    Rb[2 * H:] = param(f"layers.{k}.b_hn{s}")         # ONNX's Rbh: inside r * (...)
                rows.append(np.concatenate([Wb, Rb]))
            node_inputs.append(const(f"B_{k}", np.stack(rows)))          # (D, 2 G H)
        else:
            node_inputs.append("")
        node_inputs.append("sequence_lens" if lengths else "")
        if initial_state:
            for s in state_names:
                nodes.append(helper.make_node("Slice", [f"{s}0", const(f"{s}0_start_{k}", np.array([k * D])),
                                                        const(f"{s}0_end_{k}", np.array([(k + 1) * D])),
                                                        const(f"{s}0_axis_{k}", np.array([0]))], [f"{s}0_{k}"]))
                node_inputs.append(f"{s}0_{k}")
        else:
            node_inputs += [""] * len(state_names)
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if cell == "rnn":
            attrs["activations"] = [net.nonlinearity.capitalize()] * D
        if cell == "gru":
            attrs["linear_before_reset"] = 1 if net.gru_variant == "torch" else 0
        outputs = [f"Y_{k}"] + [f"{s}_n_{k}" for s in state_names]
        while node_inputs and node_inputs[-1] == "":
            node_inputs.pop()                                          # trailing optional inputs left out
        nodes.append(helper.make_node(_OP[cell], node_inputs, outputs, name=f"layer_{k}", **attrs))
        for s in state_names:
            finals[s].append(f"{s}_n_{k}")
        # Y (T, D, B, H) -> (T, B, D H): the next layer's input, torch's [forward, reverse] order
        nodes.append(helper.make_node("Transpose", [f"Y_{k}"], [f"Yt_{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Yt_{k}", const(f"shape_{k}", np.array([0, 0, D * H]))],
                                      [f"h_{k}"]))
        layer_input = f"h_{k}"

    top = layer_input
    if net.readout is not None:
        V = param("embedding" if net.tie_weights else "V")              # (O, D H)
        nodes.append(helper.make_node("MatMul", [top, const("V_T", V.T)], ["z" if net.readout_bias else "z_full"]))
        if net.readout_bias:
            nodes.append(helper.make_node("Add", ["z", const("c", param("c"))], ["z_full"]))
        top = "z_full"
    width = net.output_size if net.output_size is not None else D * H
    if lengths:                                 # bptt's outputs are zero at padded steps (t >= L_b)
        nodes += [helper.make_node("Shape", ["inputs"], ["T"], start=0, end=1),
                  helper.make_node("Squeeze", ["T", const("axis0", np.array([0]))], ["T_scalar"]),
                  helper.make_node("Range", [const("zero", np.array(0)), "T_scalar", const("one", np.array(1))],
                                   ["steps"]),
                  helper.make_node("Unsqueeze", ["steps", const("axis1", np.array([1]))], ["steps_col"]),
                  helper.make_node("Less", ["steps_col", "lengths"], ["valid"]),           # (T, B)
                  helper.make_node("Cast", ["valid"], ["valid_f"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["valid_f", const("axis2", np.array([2]))], ["mask"]),
                  helper.make_node("Mul", [top, "mask"], ["logits"])]
    else:
        nodes.append(helper.make_node("Identity", [top], ["logits"]))
    graph_outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", "B", width])]
    for s in state_names:
        nodes.append(helper.make_node("Concat", finals[s], [f"{s}_n"], axis=0))     # (L D, B, H)
        graph_outputs.append(helper.make_tensor_value_info(f"{s}_n", TensorProto.FLOAT, [L * D, "B", H]))

    graph = helper.make_graph(nodes, "bptt", graph_inputs, graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bptt",
                              doc_string=f"bptt {cell} {L}x{H}{' bidirectional' if D == 2 else ''}")
    model.ir_version = 8                        # opset 17's IR; read by onnxruntime >= 1.11
    helper.set_model_props(model, _metadata(net, vocab, inputs))
    onnx.checker.check_model(model, full_check=True)
    return model


def _dirs(net) -> tuple:
    return ("", "_reverse") if net.bidirectional else ("",)


def to_onnx(net, path, *, vocab=None, inputs: str = "auto", initial_state: bool = False,
            lengths: bool = False) -> str:
    """Write ``net`` as an ONNX model to ``path`` atomically; returns the path.

    ``inputs``: "ids" (int64 (T, B)), "features" (float32 (T, B, I)) or "auto" (ids when the network
    has an embedding or a ``vocab`` is given). ``initial_state=True`` adds the graph inputs h0 (c0);
    ``lengths=True`` adds ``lengths`` (B,). Cells without an ONNX operator (mingru, minlstm) and
    readouts "last"/"mean" are refused (ValueError naming them)."""
    import os

    model = build_onnx(net, vocab=vocab, inputs=inputs, initial_state=initial_state, lengths=lengths)
    return write_bytes(os.fspath(path), model.SerializeToString())


def write_bytes(path: str, data: bytes) -> str:
    """``data`` to ``path`` atomically (io/files.py: temporary file + rename)."""
    with files.atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


# ------------------------------------------------------------------ safetensors
def to_safetensors(net, path, *, vocab=None) -> str:
    """Write ``net``'s weights under PyTorch's names (``weight_ih_l0``, ..., ``head.weight``,
    ``head.bias``, ``embedding.weight``; interop/names.py) to ``path`` atomically, with the config
    (and vocabulary) as JSON in the file's metadata. ``nn.LSTM(...).load_state_dict`` accepts the
    module's names once the ``head.``/``embedding.`` ones are split off. Returns the path."""
    import os

    from ..interop.names import to_torch_state

    st = _safetensors()
    exportable(net, "safetensors", readouts=("all", "last", "mean"))     # torch has no readout: config only
    tensors = {name: np.ascontiguousarray(a) for name, a in to_torch_state(net).items()}
    meta = {"format": "pt", "bptt_config": json.dumps(net.config)}
    if vocab is not None:
        meta["vocabulary"] = json.dumps(vocab.to_json())
    return write_bytes(os.fspath(path), st.save(tensors, metadata=meta))
