"""Weights to and from ``torch.nn.RNN`` (+ an ``nn.Linear`` head), and gradient names.

torch keeps two biases per layer, ``bias_ih_l{k}`` and ``bias_hh_l{k}``; only their sum
enters  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), so bptt keeps one, b = b_ih + b_hh.
Going back, ``to_torch`` puts b in ``bias_ih`` and zeros in ``bias_hh``; ``torch_names``
gives both torch biases the gradient of b (dE/db_ih = dE/db_hh = dE/db).

Name map (layer k):  weight_ih_l{k} <-> layers.k.U,  weight_hh_l{k} <-> layers.k.W,
bias_ih_l{k} + bias_hh_l{k} <-> layers.k.b,  head.weight <-> V,  head.bias <-> c.

torch is imported lazily: the core of bptt needs numpy only.
"""

from __future__ import annotations

import numpy as np


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


def from_torch(module, head=None, loss: str = "cross_entropy"):
    """A bptt ``Network`` computing exactly what ``module`` (+ ``head``) computes, time-major."""
    from ..network import Network

    torch = _torch()
    if not isinstance(module, torch.nn.RNN):
        raise ValueError(f"from_torch supports torch.nn.RNN, got {type(module).__name__}")
    if module.bidirectional:
        raise ValueError("from_torch: bidirectional torch.nn.RNN is not supported yet")
    if getattr(module, "proj_size", 0):
        raise ValueError("from_torch: proj_size is not supported")
    if head is not None:
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(f"head must be a torch.nn.Linear, got {type(head).__name__}")
        if head.in_features != module.hidden_size:
            raise ValueError(f"head.in_features must equal hidden_size {module.hidden_size}, got {head.in_features}")
        if (head.bias is not None) != module.bias:
            raise ValueError("from_torch: the head and the RNN must both have biases or both have none")
    net = Network(input_size=module.input_size, hidden_size=module.hidden_size,
                  output_size=None if head is None else head.out_features,
                  num_layers=module.num_layers, cell="rnn", nonlinearity=module.nonlinearity,
                  bias=module.bias, dtype=_dtype_name(module), loss=loss)
    for k in range(module.num_layers):
        net.params[f"layers.{k}.U"][...] = _numpy(getattr(module, f"weight_ih_l{k}"))
        net.params[f"layers.{k}.W"][...] = _numpy(getattr(module, f"weight_hh_l{k}"))
        if module.bias:
            net.params[f"layers.{k}.b"][...] = (_numpy(getattr(module, f"bias_ih_l{k}"))
                                                + _numpy(getattr(module, f"bias_hh_l{k}")))
    if head is not None:
        net.params["V"][...] = _numpy(head.weight)
        if head.bias is not None:
            net.params["c"][...] = _numpy(head.bias)
    return net


def to_torch(net):
    """(torch.nn.RNN, torch.nn.Linear or None) with ``net``'s weights."""
    torch = _torch()
    if net.cell != "rnn":
        raise ValueError(f"to_torch supports cell 'rnn', got {net.cell!r}")
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    module = torch.nn.RNN(net.input_size, net.hidden_size, num_layers=net.num_layers,
                          nonlinearity=net.nonlinearity, bias=net.bias).to(dtype)
    named = dict(module.named_parameters())
    head = None
    with torch.no_grad():
        for torch_name, bptt_name in _name_pairs(net):
            if torch_name.startswith("head."):
                continue
            if torch_name.startswith("bias_hh"):
                named[torch_name].zero_()                       # the whole bias lives in bias_ih
            else:
                named[torch_name].copy_(torch.from_numpy(net.params[bptt_name]))
        if net.output_size is not None:
            head = torch.nn.Linear(net.hidden_size, net.output_size, bias=net.bias).to(dtype)
            head.weight.copy_(torch.from_numpy(net.params["V"]))
            if net.bias:
                head.bias.copy_(torch.from_numpy(net.params["c"]))
    return module, head


def _name_pairs(net) -> list:
    """(torch name, bptt name) for every torch parameter."""
    pairs = []
    for k in range(net.num_layers):
        pairs += [(f"weight_ih_l{k}", f"layers.{k}.U"), (f"weight_hh_l{k}", f"layers.{k}.W")]
        if net.bias:
            pairs += [(f"bias_ih_l{k}", f"layers.{k}.b"), (f"bias_hh_l{k}", f"layers.{k}.b")]
    if net.output_size is not None:
        pairs.append(("head.weight", "V"))
        if net.bias:
            pairs.append(("head.bias", "c"))
    return pairs


def torch_names(net, grads: dict) -> dict:
    """Map a bptt gradient dict onto every torch parameter name (head ones as ``head.*``),
    so it compares one for one with ``.grad`` of ``module`` and ``head``."""
    return {torch_name: grads[bptt_name] for torch_name, bptt_name in _name_pairs(net)}
