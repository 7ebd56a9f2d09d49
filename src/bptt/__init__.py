"""bptt: recurrent networks trained by backpropagation through time -- exact, fast on a
CPU, and showing its gradients. The core needs numpy only."""

from .training.clip import clip_by_global_norm, clip_by_value, global_norm
from .gradcheck import check_network, relative_error
from .losses import softmax_cross_entropy, squared_error
from .network import Network
from .training.optim import SGD
from .threads import set_threads

__version__ = "0.1.0"


def from_torch(module, head=None, loss: str = "cross_entropy"):
    """A bptt Network equal to a torch recurrent module (+ Linear head). Needs torch."""
    from .interop.torch import from_torch as _from_torch
    return _from_torch(module, head, loss)


def to_torch(net):
    """(torch module, torch.nn.Linear head or None) with ``net``'s weights. Needs torch."""
    from .interop.torch import to_torch as _to_torch
    return _to_torch(net)


def torch_names(net, grads):
    """bptt gradients keyed by the torch module's parameter names (head ones as ``head.*``)."""
    from .interop.torch import torch_names as _torch_names
    return _torch_names(net, grads)


__all__ = ["Network", "SGD", "check_network", "relative_error", "clip_by_global_norm", "clip_by_value",
           "global_norm", "softmax_cross_entropy", "squared_error", "from_torch", "to_torch", "torch_names",
           "set_threads", "__version__"]
