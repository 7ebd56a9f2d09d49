"""Pascanu, Mikolov & Bengio (2013)'s regulariser against vanishing gradients.

"On the difficulty of training recurrent neural networks", ICML 2013, sec. 3.3, eq. (9):

    Omega = sum_k Omega_k = sum_k ( || dE/dx_{k+1} . dx_{k+1}/dx_k || / || dE/dx_{k+1} ||  -  1 )^2

It asks every backward step through the recurrence to preserve the norm of the error
signal *in the direction it actually has* (not the whole Jacobian), so gradients neither
vanish nor explode on their way back. In bptt's notation the state is h and one step of
the recurrence is  dh_t/dh_{t-1} = diag(f'(a_t)) W,  so with g_t = dE/dh_t (B, H),
available from BPTT as ``BackwardPass.dh``:

    v_t     = (g_t * f'(a_t)) W                       = the part of dE/dh_{t-1} that went through step t
    Omega_t = ( ||v_t|| / ||g_t|| - 1 )^2             per example

Eq. (10): the gradient used is the *immediate* partial derivative d+Omega/dW, where
g_t and the state (hence f'(a_t)) are held constant and only the explicit W in v_t is
differentiated -- as in the authors' code (github.com/pascanur/trainingRNNs, RNN.py,
which also adds it to the gradient of W_rec only). With u_t = g_t * f'(a_t):

    d+Omega_t/dW = u_t^T (dOmega_t/dv_t),   dOmega_t/dv_t = 2 (||v_t||/||g_t|| - 1) v_t / (||g_t|| ||v_t||)

Normalisation: terms with ||g_t|| <= ``bound`` (no error signal to preserve, e.g. after
the last output of a many-to-one task) are left out and Omega is the *mean* over the
remaining (t, example) pairs, as in the authors' code (which makes the strength alpha
independent of T and B; eq. (9) writes a sum). Their code uses squared norms in the
ratio; we follow the paper's eq. (9) with plain norms. Terms with v_t = 0 contribute
Omega_t = 1 and, being non-differentiable there, no gradient.

Use: ``loss, grads, omega = loss_and_grads_with_omega(net, inputs, targets, strength=alpha)``
returns E + alpha Omega and adds alpha d+Omega/dW to every RNN layer's W gradient.
"""

from __future__ import annotations

import numpy as np

from .. import validation as check
from ..functional import activation_grad_from_output
from ..losses import compute_loss


def omega_terms(u: np.ndarray, g: np.ndarray, W: np.ndarray, bound: float = 1e-20):
    """Omega and d+Omega/dW from the held-constant pieces.

    u (N, H) = g_t * f'(a_t) for N (t, example) pairs, g (N, H) = dE/dh_t, W (H, H).
    Returns (omega, dW (H, H), count of pairs used)."""
    u = np.asarray(u, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    m = np.sqrt(np.einsum("nh,nh->n", g, g))             # ||g_t||, (N,)
    keep = m > bound
    count = int(keep.sum())
    dW = np.zeros(W.shape, dtype=np.float64)
    if count == 0:
        return 0.0, dW, 0
    u, m = u[keep], m[keep]
    v = u @ W                                            # (n, H): dE/dh_{t-1} through step t
    n = np.sqrt(np.einsum("nh,nh->n", v, v))            # ||v_t||
    ratio = n / m
    omega = float(np.sum((ratio - 1.0) ** 2)) / count
    safe_n = np.where(n > 0, n, 1.0)
    coef = np.where(n > 0, 2.0 * (ratio - 1.0) / (m * safe_n), 0.0) / count
    dv = coef[:, None] * v                               # dOmega/dv_t, (n, H)
    dW += u.T @ dv                                       # v = u W  =>  dOmega/dW = u^T dOmega/dv
    return omega, dW, count


def layer_omega(net, fwd, bwd, index: int, bound: float = 1e-20):
    """(omega, d+Omega/dW, count) for RNN layer ``index`` from a forward and backward pass."""
    layer = net.layers[index]
    if getattr(layer, "cell", None) != "rnn":
        raise ValueError(f"Pascanu's Omega is defined here for cell 'rnn', got cell {getattr(layer, 'cell', None)!r}")
    h = fwd.hidden[index]                                 # (T, B, H) = h_t
    g = bwd.dh[index]                                     # (T, B, H) = dE/dh_t, all paths
    H = h.shape[2]
    u = (g * activation_grad_from_output(h, layer.nonlinearity)).reshape(-1, H)
    return omega_terms(u, g.reshape(-1, H), layer.params["W"], bound)


def loss_and_grads_with_omega(net, inputs, targets, mask=None, h0=None, strength: float = 1.0,
                              bound: float = 1e-20):
    """(E + strength * Omega, grads, Omega) with strength * d+Omega/dW added to the gradient
    of every layer's W. Omega is averaged over the RNN layers (one layer: just its Omega)."""
    strength = check.positive_float("strength", strength, allow_zero=True)
    if getattr(net, "cell", None) != "rnn":
        raise ValueError(f"Pascanu's Omega is defined here for cell 'rnn', got cell {getattr(net, 'cell', None)!r}")
    if getattr(net, "bidirectional", False):
        raise ValueError("Pascanu's Omega needs a unidirectional network, got bidirectional=True")
    fwd = net.forward(inputs, h0)
    T, B = fwd.inputs.shape[:2]
    loss, doutputs = compute_loss(net.loss, fwd.outputs, net.check_targets(targets, T, B), net.check_mask(mask, T, B))
    bwd = net.backward(fwd, doutputs)
    grads = bwd.grads
    omegas = []
    L = len(net.layers)
    for index in range(L):
        omega, dW, _ = layer_omega(net, fwd, bwd, index, bound)
        omegas.append(omega)
        grads[f"layers.{index}.W"] += (strength / L) * dW.astype(grads[f"layers.{index}.W"].dtype)
    omega = float(np.mean(omegas))
    return loss + strength * omega, grads, omega
