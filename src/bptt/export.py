"""Models that leave and enter bptt (see io/export.py and interop/names.py):

    to_onnx(net, path)            an ONNX graph, checked by onnx.checker        (bptt[onnx])
    to_safetensors(net, path)     weights under PyTorch's names + config       (bptt[interop])
    read_safetensors(path)        (tensors, metadata) of a safetensors file    (bptt[interop])
    from_state_dict(tensors, config)   a Network from torch-named arrays       (numpy only)
"""

from .io.export import build_onnx, to_onnx, to_safetensors
from .io.importer import from_state_dict, read_safetensors

__all__ = ["build_onnx", "to_onnx", "to_safetensors", "read_safetensors", "from_state_dict"]
