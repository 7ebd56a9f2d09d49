"""bptt: recurrent networks trained by backpropagation through time -- exact, fast on a
CPU, and showing its gradients. The core needs numpy only."""

from . import _startup  # noqa: F401  (first: Ctrl-C while the command line starts exits 130 quietly)
from .training.clip import clip_by_global_norm, clip_by_value, global_norm
from .gradcheck import check_network, relative_error
from .losses import softmax_cross_entropy, squared_error
from .network import Network
from .training.optim import SGD
from .threads import set_threads

__version__ = "0.1.0"


def from_torch(module, head=None, loss: str = "cross_entropy", embedding=None, readout: str = "all"):
    """A bptt Network equal to a torch recurrent module (+ Linear head, + nn.Embedding). Needs torch."""
    from .interop.torch import from_torch as _from_torch
    return _from_torch(module, head, loss, embedding=embedding, readout=readout)


def to_torch(net):
    """(torch module, torch.nn.Linear head or None) with ``net``'s weights. Needs torch."""
    from .interop.torch import to_torch as _to_torch
    return _to_torch(net)


def torch_names(net, grads):
    """bptt gradients keyed by the torch module's parameter names (head ones as ``head.*``)."""
    from .interop.torch import torch_names as _torch_names
    return _torch_names(net, grads)


def from_state_dict(tensors, config):
    """A bptt Network from a torch state dict (torch's names, numpy arrays; sizes read from the shapes).
    Numpy only: see bptt.export (to_onnx, to_safetensors, read_safetensors)."""
    from .io.importer import from_state_dict as _from_state_dict
    return _from_state_dict(tensors, config)


from . import export  # noqa: E402  (numpy only; onnx and safetensors are imported when called)
from . import rtrl  # noqa: E402  (real-time recurrent learning: the same gradient, forwards in time)

__all__ = ["Network", "SGD", "check_network", "relative_error", "clip_by_global_norm", "clip_by_value",
           "global_norm", "softmax_cross_entropy", "squared_error", "from_torch", "to_torch", "torch_names",
           "from_state_dict", "export", "rtrl", "set_threads", "__version__"]
