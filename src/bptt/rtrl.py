"""``bptt.rtrl``: real-time recurrent learning, the same exact gradient as BPTT computed forwards
in time (the implementation and its equations: bptt/diagnostics/rtrl.py).

    from bptt import rtrl
    loss, grads = rtrl.loss_and_grads(net, inputs, targets, mask=None, h0=None)   # == net.loss_and_grads
"""

from .diagnostics.rtrl import RTRL_CELLS, loss_and_grads

__all__ = ["loss_and_grads", "RTRL_CELLS"]
