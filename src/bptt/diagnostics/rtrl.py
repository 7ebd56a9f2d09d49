"""Real-time recurrent learning (Williams & Zipser 1989): the same exact gradient as BPTT,
computed forwards in time.

BPTT walks back from every E_t; RTRL instead carries the *sensitivities* of the state to
every parameter forward with it. With s_t the layer's state (h_t; (h_t, c_t) for the LSTM)
and s_t = F(s_{t-1}, x_t; theta):

    M_t = ds_t/dtheta = D_t M_{t-1} + I_t          (S, P) per example,  M_0 = 0
    D_t = ds_t/ds_{t-1}                            (S, S): the lecture's dh_t/dh_{t-1}
    I_t = the immediate dF/dtheta                  (S, P): s_{t-1} held fixed
    dE/dtheta = sum_t dE_t/dh_t  M_t[h rows]       no backward pass, nothing stored per step

Unrolled, M_t = sum_{k<=t} (prod_{j=k+1..t} D_j) I_k: the lecture's sum over k of
dh_t/dh_k dh_k/dW, computed as it goes. Every D_t and I_t below is written out from the
cell's equations (no layer backward is called), so RTRL is an independent check of BPTT.

Stacked layers: layer l reads x_t = h^{l-1}_t, which depends on every parameter below, so its
M also carries those: M^l_t[p] += dF/dx (U) M^{l-1}_t[p][h rows]. An embedding (x_t = E[id_t])
enters the same way at layer 0.

Cost per step (one example, S state numbers, P parameters): the product D_t M_{t-1} is
O(S^2 P) = O(H^2 P) operations and M takes O(S P) memory -- independent of T. BPTT costs O(P)
per step (the GEMMs of the backward pass) but keeps every step's state: O(T H) memory. See
bench/rtrl_cost.py for the measured ratio.

Covers cells "rnn" (tanh/relu), "lstm" and "gru" (both variants), stacked, token ids or
float inputs, embeddings (tied or not), readout "all", cross-entropy or mse, masks and h0.
Dropout in training mode is refused (call ``net.eval()``): RTRL describes the deterministic net.
"""

from __future__ import annotations

import numpy as np

from ..functional import sigmoid
from ..losses import compute_loss

RTRL_CELLS = ("rnn", "lstm", "gru")


def _diag(v: np.ndarray) -> np.ndarray:
    """(B, H) -> (B, H, H) diagonal matrices."""
    B, H = v.shape
    out = np.zeros((B, H, H), v.dtype)
    idx = np.arange(H)
    out[:, idx, idx] = v
    return out


def _step_rnn(layer, u, h_prev):
    """h = f(a), a = u + W h_prev with u = U x + b (B, H).

    Returns the new state, Ax = ds/du (B, S, GH), Ah = ds/d(W rows' products) (B, S, GH),
    the vectors each row block of W multiplies (B, G, H), D = ds/ds_prev (B, S, S), extras."""
    (h_prev,) = h_prev
    W = layer.params["W"]
    a = u + h_prev @ W.T
    if layer.nonlinearity == "tanh":
        h = np.tanh(a)
        fprime = 1.0 - h * h
    else:
        h = np.maximum(a, 0.0)
        fprime = (a > 0).astype(a.dtype)
    Ax = _diag(fprime)                                       # dh/da = diag(f'(a))
    D = fprime[:, :, None] * W                               # diag(f') W
    return (h,), Ax, Ax, h_prev[:, None, :], D, {}


def _step_lstm(layer, u, state):
    """Gates [i, f, g, o]; s = (h, c), S = 2H (h first)."""
    h_prev, c_prev = state
    H = layer.hidden_size
    W = layer.params["W"]
    a = u + h_prev @ W.T                                     # (B, 4H)
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])
    g = np.tanh(a[:, 2 * H:3 * H])
    c = f * c_prev + i * g
    tc = np.tanh(c)
    h = o * tc
    B = h.shape[0]
    # dc/da: [g i(1-i), c_prev f(1-f), i (1-g^2), 0];  dh/da = o (1 - tanh^2 c) dc/da + [0, 0, 0, tanh(c) o(1-o)]
    dc_da = np.concatenate([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), np.zeros_like(o)], axis=1)
    dh_dc = o * (1 - tc * tc)                                # (B, H)
    dh_da = np.tile(dh_dc, 4) * dc_da
    dh_da[:, 3 * H:] = tc * o * (1 - o)
    Ax = np.zeros((B, 2 * H, 4 * H), a.dtype)
    rows = np.arange(H)
    for k in range(4):                                       # each gate block is diagonal in the unit
        Ax[:, rows, k * H + rows] = dh_da[:, k * H:(k + 1) * H]
        Ax[:, H + rows, k * H + rows] = dc_da[:, k * H:(k + 1) * H]
    # D = [dh/dh_prev, dh/dc_prev; dc/dh_prev, dc/dc_prev]: through a (via W), and c_prev directly (f)
    D = np.zeros((B, 2 * H, 2 * H), a.dtype)
    D[:, :, :H] = Ax @ W                                     # ds/da W
    D[:, rows, H + rows] = dh_dc * f                         # dh/dc_prev = o (1 - tanh^2 c) f
    D[:, H + rows, H + rows] = f                             # dc/dc_prev = f
    return (h, c), Ax, Ax, np.broadcast_to(h_prev[:, None, :], (B, 4, H)), D, {}


def _step_gru(layer, u, state):
    """Gates [r, z, n], torch or Cho variant (layers/gru.py); h = (1 - z) n + z h_prev."""
    (h_prev,) = state
    H = layer.hidden_size
    W = layer.params["W"]
    B = h_prev.shape[0]
    rows = np.arange(H)
    hw_rz = h_prev @ W[:2 * H].T                             # (B, 2H)
    r = sigmoid(u[:, :H] + hw_rz[:, :H])
    z = sigmoid(u[:, H:2 * H] + hw_rz[:, H:])
    cho = layer.variant == "cho"
    if cho:
        v = r * h_prev                                       # W_n multiplies r * h_prev
        hn = v @ W[2 * H:].T
        n = np.tanh(u[:, 2 * H:] + hn)
    else:
        v = h_prev
        hn = h_prev @ W[2 * H:].T + (layer.params["b_hn"] if layer.bias else 0.0)
        n = np.tanh(u[:, 2 * H:] + r * hn)
    h = (1 - z) * n + z * h_prev
    dn = (1 - z) * (1 - n * n)                               # dh/d(pre-activation of n)
    dz = (h_prev - n) * z * (1 - z)                          # dh/d(pre-activation of z)
    Ax = np.zeros((B, H, 3 * H), u.dtype)
    Ax[:, rows, H + rows] = dz
    Ax[:, rows, 2 * H + rows] = dn
    Ah = np.zeros((B, H, 3 * H), u.dtype)
    Ah[:, rows, H + rows] = dz
    extras = {}
    if cho:
        # dh/d(pre r) = dn W_n diag(h_prev r(1-r));  dh/d(W_n v) = dn
        dr = (dn[:, :, None] * W[2 * H:]) * (h_prev * r * (1 - r))[:, None, :]   # (B, H, H)
        Ah[:, rows, 2 * H + rows] = dn
        dv_dh = _diag(r)                                     # dv/dh_prev directly (r fixed)
        D = _diag(z) + (dn[:, :, None] * W[2 * H:]) @ dv_dh
    else:
        dr = _diag(dn * hn * r * (1 - r))                    # dh/d(pre r) = dn hn r(1-r)
        Ah[:, rows, 2 * H + rows] = dn * r                   # dh/d(W_n h_prev + b_hn) = dn r
        if layer.bias:
            extras["b_hn"] = Ah[:, :, 2 * H:]
        D = _diag(z)
    Ax[:, :, :H] = dr
    Ah[:, :, :H] = dr
    D = D + Ah[:, :, :2 * H] @ W[:2 * H]                     # through W_r h_prev and W_z h_prev
    if not cho:
        D = D + Ah[:, :, 2 * H:] @ W[2 * H:]                 # and W_n h_prev (Cho: via v, above)
    hin = np.stack([h_prev, h_prev, v], axis=1)              # (B, 3, H): what each block of W multiplies
    return (h,), Ax, Ah, hin, D, extras


_STEPS = {"rnn": _step_rnn, "lstm": _step_lstm, "gru": _step_gru}


def _check_net(net) -> None:
    if getattr(net, "cell", None) not in RTRL_CELLS:
        raise ValueError(f"rtrl supports cells {RTRL_CELLS}, got cell {getattr(net, 'cell', None)!r}")
    if net.bidirectional:
        raise ValueError("rtrl needs a unidirectional network (it runs forwards in time), got bidirectional=True")
    if net.pooled:
        raise ValueError(f"rtrl needs readout='all' (a loss at every step), got readout={net.readout_mode!r}")
    if net.training and net.dropout > 0 and net.num_layers > 1:
        raise ValueError(f"rtrl computes the deterministic network: call net.eval() first "
                         f"(dropout={net.dropout} is active in training mode)")


def loss_and_grads(net, inputs, targets, mask=None, h0=None):
    """(E, grads) of ``net`` -- the same loss and gradient dict as ``net.loss_and_grads`` -- by RTRL.

    inputs (T, B, I) floats or (T, B) ids; targets as for the network; mask (T, B); h0 in the
    format of ``net.zero_state``. Memory O(B S P) (S = state size, P = parameters), time O(T B S^2 P)."""
    _check_net(net)
    x = net.check_inputs(inputs)
    T, B = x.shape[:2]
    targets = net.check_targets(targets, T, B)
    mask = net.check_mask(mask, T, B)
    states = net._split_state(h0, B)                         # validated, per layer
    states = [tuple(np.array(s, net.dtype) for s in st) for st in states]
    step = _STEPS[net.cell]
    dtype = net.dtype
    ids = x.dtype.kind in "iu"
    # names[l]: the parameters layer l's state depends on (its own and every one below)
    below = ["embedding"] if net.embedding is not None else []
    names = []
    for index, layer in enumerate(net.layers):
        below = below + [f"layers.{index}.{k}" for k in layer.params]
        names.append(list(below))
    size = {name: p.size for name, p in net.params.items()}
    M = []                                                   # M[l][name]: (B, S_l, P_name)
    for index, layer in enumerate(net.layers):
        S = sum(s.shape[1] for s in states[index])
        M.append({name: np.zeros((B, S, size[name]), dtype) for name in names[index]})
    grads = net.zero_grads()
    loss = 0.0
    readout = net.readout
    for t in range(T):
        if net.embedding is not None:
            layer_input = net.embedding[x[t]]                # (B, E)
        else:
            layer_input = x[t]
        for index, layer in enumerate(net.layers):
            H = layer.hidden_size
            U = layer.params["U"]
            b = layer.params["b"] if layer.bias else 0.0
            lookup = index == 0 and ids and net.embedding is None
            u = (U[:, layer_input].T if lookup else layer_input @ U.T) + b      # U x_t + b, (B, GH)
            new_state, Ax, Ah, hin, D, extras = step(layer, u, states[index])
            prev = M[index]
            new = {name: D @ m for name, m in prev.items()}                     # D_t M_{t-1}
            S = D.shape[1]
            # through x_t: what lower layers' parameters (or the embedding) did to this layer's input
            if index > 0 or net.embedding is not None:
                XU = Ax @ U                                                      # ds/dx (B, S, I)
                if index > 0:
                    for name, m in M[index - 1].items():
                        new[name] += XU @ m[:, :U.shape[1]]                      # h rows of the layer below
                else:
                    dE = new["embedding"].reshape(B, S, net.input_size, net.embedding_size)
                    dE[np.arange(B), :, x[t], :] += XU                           # x_t = E[id_t]
            prefix = f"layers.{index}."
            # the immediate terms I_t
            dU = new[prefix + "U"].reshape(B, S, *U.shape)
            if lookup:
                dU[np.arange(B), :, :, x[t]] += Ax                               # one-hot x_t: column id_t
            else:
                dU += Ax[:, :, :, None] * layer_input[:, None, None, :]
            W = layer.params["W"]
            G = hin.shape[1]
            dW = new[prefix + "W"].reshape(B, S, *W.shape)
            dW += (Ah.reshape(B, S, G, H)[..., None] * hin[:, None, :, None, :]).reshape(dW.shape)
            if layer.bias:
                new[prefix + "b"] += Ax
            for name, value in extras.items():
                new[prefix + name] += value
            M[index] = new
            states[index] = new_state
            layer_input = new_state[0]                        # h^l_t: the next layer's x_t
        # the loss at step t and dE_t/dh_t
        top = layer_input                                     # (B, W)
        z = top @ readout.params["V"].T + (readout.params["c"] if "c" in readout.params else 0.0) \
            if readout is not None else top
        loss_t, dz = compute_loss(net.loss, z[None], targets[t:t + 1], None if mask is None else mask[t:t + 1])
        loss += float(loss_t)
        dz = dz[0]                                            # (B, O)
        if readout is not None:
            vname = "embedding" if net.tie_weights else "V"
            grads[vname] += dz.T @ top                        # dE_t/dV = dz_t (x) h_t
            if "c" in readout.params:
                grads["c"] += dz.sum(axis=0)
            dh = dz @ readout.params["V"]                     # dE_t/dh_t
        else:
            dh = dz
        Htop = net.layers[-1].hidden_size
        for name, m in M[-1].items():                         # dE_t/dtheta = dE_t/dh_t M_t[h rows]
            grads[name] += np.einsum("bh,bhp->p", dh, m[:, :Htop]).reshape(grads[name].shape)
    return loss, grads
