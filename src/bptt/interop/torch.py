"""Weights to and from ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (+ an ``nn.Linear`` head),
and gradient names.

Name map (layer k, direction suffix s = "" or "_reverse" for bidirectional modules), kept in
interop/names.py in numpy alone (safetensors files use it too):

    weight_ih_l{k}{s}  <->  layers.k.U{s}          (H, I), (4H, I) for LSTM, (3H, I) for GRU
    weight_hh_l{k}{s}  <->  layers.k.W{s}
    weight_hr_l{k}{s}  <->  layers.k.W_hr{s}       (nn.LSTM(proj_size=P): h_t = W_hr (o * tanh c_t))
    head.weight        <->  V,     head.bias <-> c      (the head's bias is independent: readout_bias)
    embedding.weight   <->  embedding                 (an nn.Embedding before layer 0; tied when
                                                       head.weight is embedding.weight)

Biases. torch keeps two per layer, ``bias_ih`` and ``bias_hh``.
- RNN and LSTM: only their sum enters a_t = U x_t + b_ih + W h_{t-1} + b_hh, so bptt keeps
  one, b = b_ih + b_hh. ``to_torch`` puts b in ``bias_ih`` and zeros in ``bias_hh``;
  ``torch_names`` gives both the gradient of b (dE/db_ih = dE/db_hh = dE/db).
- GRU (torch variant): the n-slice of bias_hh sits inside r * (W_n h + b_hn) and cannot be
  merged, so b = bias_ih + [bias_hh_r, bias_hh_z, 0] and b_hn = bias_hh[2H:].
  ``to_torch`` writes bias_ih = b, bias_hh = [0, 0, b_hn]; ``torch_names`` gives
  dE/dbias_ih = db and dE/dbias_hh = [db_r, db_z, db_hn].
  The Cho et al. variant (``gru_variant="cho"``) has no torch counterpart.

torch is imported lazily: the core of bptt needs numpy only.
"""

from __future__ import annotations

import numpy as np

from . import names

_CELL_OF = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
_MODULE_OF = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("bptt's PyTorch interop needs torch: pip install 'bptt[torch]'") from None
    return torch


def _dtype_name(module) -> str:
    dtype = next(module.parameters()).dtype
    torch = _torch()
    if dtype == torch.float64:
        return "float64"
    if dtype == torch.float32:
        return "float32"
    raise ValueError(f"module parameters must be float32 or float64, got {dtype}")


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _cell_of(module) -> str:
    torch = _torch()
    for name, cell in _CELL_OF.items():
        if type(module) is getattr(torch.nn, name):
            return cell
    raise ValueError(f"from_torch supports torch.nn.RNN, torch.nn.LSTM and torch.nn.GRU, got {type(module).__name__}")


def from_torch(module, head=None, loss: str = "cross_entropy", embedding=None, readout: str = "all"):
    """A bptt ``Network`` computing exactly what ``embedding`` (an nn.Embedding, optional) + ``module``
    (+ ``head``) compute, time-major. The module's dropout probability and train/eval mode carry over.
    Weight tying (``head.weight is embedding.weight``) becomes ``tie_weights=True``."""
    from ..network import Network

    torch = _torch()
    cell = _cell_of(module)
    if embedding is not None:
        if not isinstance(embedding, torch.nn.Embedding):
            raise ValueError(f"embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
        if embedding.embedding_dim != module.input_size:
            raise ValueError(f"embedding.embedding_dim must equal the module's input_size {module.input_size}, "
                             f"got {embedding.embedding_dim}")
        if embedding.padding_idx is not None or embedding.max_norm is not None:
            raise ValueError("from_torch: nn.Embedding with padding_idx or max_norm is not supported "
                             "(bptt's embedding is a plain lookup; use lengths= for padding)")
    proj = getattr(module, "proj_size", 0) or None                # nn.LSTM(proj_size=P): h is W_hr m_t
    width = (proj or module.hidden_size) * (2 if module.bidirectional else 1)
    if head is not None:
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(f"head must be a torch.nn.Linear, got {type(head).__name__}")
        if head.in_features != width:
            raise ValueError(f"head.in_features must equal the module's output width {width}, got {head.in_features}")
    tied = head is not None and embedding is not None and head.weight is embedding.weight
    net = Network(input_size=module.input_size if embedding is None else embedding.num_embeddings,
                  hidden_size=module.hidden_size,
                  output_size=None if head is None else head.out_features,
                  num_layers=module.num_layers, cell=cell,
                  nonlinearity=getattr(module, "nonlinearity", "tanh"),
                  bias=module.bias, dtype=_dtype_name(module), loss=loss,
                  bidirectional=module.bidirectional, dropout=float(module.dropout) if module.num_layers > 1 else 0.0,
                  gru_variant="torch", forget_bias=0.0,
                  embedding_size=None if embedding is None else embedding.embedding_dim, tie_weights=tied,
                  readout=readout, readout_bias=None if head is None else head.bias is not None, proj_size=proj)
    net.train(module.training)
    state = {name: _numpy(p) for name, p in module.named_parameters()}
    if embedding is not None:
        state["embedding.weight"] = _numpy(embedding.weight)
    if head is not None:
        state.update({f"head.{name}": _numpy(p) for name, p in head.named_parameters()})
    names.from_torch_state(net, state)                   # merges the biases (interop/names.py)
    return net


def to_torch(net):
    """(torch.nn.RNN | LSTM | GRU, torch.nn.Linear or None) with ``net``'s weights, and a third element,
    the ``torch.nn.Embedding``, when the network has an embedding (tied: ``head.weight is embedding.weight``).
    Readout "last"/"mean" have no torch module: apply them to the module's output yourself."""
    torch = _torch()
    if net.cell not in _MODULE_OF:
        raise ValueError(f"to_torch supports cells {tuple(_MODULE_OF)}, got {net.cell!r}")
    if net.cell == "gru" and net.gru_variant != "torch":
        raise ValueError(f"to_torch: gru_variant {net.gru_variant!r} has no torch counterpart "
                         "(torch.nn.GRU applies the reset gate after the recurrent matmul: gru_variant='torch')")
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    kwargs = dict(num_layers=net.num_layers, bias=net.bias, bidirectional=net.bidirectional,
                  dropout=net.dropout if net.num_layers > 1 else 0.0)
    if net.cell == "rnn":
        kwargs["nonlinearity"] = net.nonlinearity
    if getattr(net, "layer_norm", False):
        raise ValueError("to_torch: the layer-normalised LSTM has no torch.nn module")
    if getattr(net, "zoneout", 0.0) > 0.0:
        raise ValueError(f"to_torch: zoneout={net.zoneout} changes the recurrence (also at evaluation: "
                         "h_t = p h_(t-1) + (1 - p) h~_t); torch.nn has no module with it")
    if getattr(net, "proj_size", None):
        kwargs["proj_size"] = net.proj_size
    features = net.input_size if net.embedding is None else net.embedding_size     # what layer 0 reads
    module = getattr(torch.nn, _MODULE_OF[net.cell])(features, net.hidden_size, **kwargs).to(dtype)
    module.train(net.training)
    state = names.to_torch_state(net)                    # torch name -> array (interop/names.py)
    named = dict(module.named_parameters())
    head = None
    with torch.no_grad():
        for name, param in named.items():
            param.copy_(torch.from_numpy(state[name]))
        embedding = None
        if net.embedding is not None:
            embedding = torch.nn.Embedding(net.input_size, net.embedding_size).to(dtype)
            embedding.weight.copy_(torch.from_numpy(net.params["embedding"]))
        if net.output_size is not None:
            head = torch.nn.Linear(net.output_width, net.output_size, bias=net.readout_bias).to(dtype)
            if net.tie_weights:
                head.weight = embedding.weight                   # one Parameter, as in torch's weight tying
            else:
                head.weight.copy_(torch.from_numpy(net.params["V"]))
            if net.readout_bias:
                head.bias.copy_(torch.from_numpy(net.params["c"]))
    if embedding is not None:
        return module, head, embedding
    return module, head


def torch_names(net, grads: dict) -> dict:
    """Map a bptt gradient dict onto every torch parameter name (head ones as ``head.*``),
    so it compares one for one with ``.grad`` of ``module`` and ``head`` (interop/names.py)."""
    return names.torch_names(net, grads)
