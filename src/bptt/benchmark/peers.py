"""The contestants: one training step (forward + loss + every gradient) of the same model,
built by bptt, by PyTorch and by JAX from the same weights and data.

Model (per cell kind): a one-layer recurrent net over float inputs x (T, B, I), a linear
readout z_t = V h_t + c and softmax cross-entropy summed over time, averaged over the batch
-- bptt's loss convention, which every peer reproduces exactly so all do the same work.

Each builder returns a ``Contestant``: ``step()`` runs one full training step and returns the
loss as a Python float (for torch/JAX that forces the lazy/async work to finish), and
``flops`` is the floating-point work of the GEMMs a training step *must* do (see
``step_flops``). torch and JAX are imported lazily; a missing one raises ImportError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

GATES = {"rnn": 1, "gru": 3, "lstm": 4}      # how many H-wide blocks U and W have


@dataclass
class Problem:
    """One benchmark size: cell kind, input = output size, hidden size, batch, time steps."""

    cell: str
    input_size: int
    hidden_size: int
    batch: int
    seq_len: int
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.cell} I=O={self.input_size} H={self.hidden_size} B={self.batch} T={self.seq_len}"

    def data(self):
        """float32 inputs (T, B, I) and int64 targets (T, B), the same for every peer."""
        rng = np.random.default_rng(self.seed)
        T, B, I = self.seq_len, self.batch, self.input_size
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        y = rng.integers(0, I, size=(T, B)).astype(np.int64)
        return x, y


@dataclass
class Contestant:
    name: str
    step: Callable[[], float]
    flops: float
    version: str


def step_flops(problem: Problem) -> float:
    """GEMM flops one training step needs (2 m n k each), the input gradient dE/dx excluded
    because no peer is asked for it:

        forward   x U^T, h W^T (all t), h V^T              -> G(I H + H H) + H O
        backward  dV, dh from the readout                  -> 2 H O
                  dE/dh_{t-1} = da W, dW, dU               -> G(2 H H + I H)
    times 2 T B, with G gate blocks (1 rnn, 3 gru, 4 lstm)."""
    T, B, I, H = problem.seq_len, problem.batch, problem.input_size, problem.hidden_size
    O, G = I, GATES[problem.cell]
    per_row = G * (I * H + H * H) + H * O + 2 * H * O + G * (2 * H * H + I * H)
    return 2.0 * T * B * per_row


# -------------------------------------------------------------------- bptt
def bptt_contestant(problem: Problem) -> Contestant:
    from .. import __version__
    from ..network import Network

    net = Network(problem.input_size, problem.hidden_size, problem.input_size, cell=problem.cell,
                  seed=problem.seed, dtype="float32")
    x, y = problem.data()

    def step() -> float:
        loss, _ = net.loss_and_grads(x, y)
        return loss

    step.net = net                                    # the harness reads the weights from here
    return Contestant("bptt", step, step_flops(problem), f"bptt {__version__} numpy {np.__version__}")


def _weights(net) -> dict:
    """bptt's parameters as plain arrays: the other peers start from the same numbers."""
    return {name: np.array(value) for name, value in net.params.items()}


# ------------------------------------------------------------------- torch
def torch_contestant(problem: Problem, weights: dict) -> Contestant:
    import torch

    T, B, I, H = problem.seq_len, problem.batch, problem.input_size, problem.hidden_size
    kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[problem.cell]
    rnn = kind(I, H)                                   # time-major, float32
    head = torch.nn.Linear(H, I)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(weights["layers.0.U"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(weights["layers.0.W"]))
        if "layers.0.b" in weights:
            rnn.bias_ih_l0.copy_(torch.from_numpy(weights["layers.0.b"]))
            rnn.bias_hh_l0.zero_()
            if "layers.0.b_hn" in weights:            # GRU: the n-gate's recurrent bias, inside r * (...)
                rnn.bias_hh_l0[2 * H:].copy_(torch.from_numpy(weights["layers.0.b_hn"]))
        head.weight.copy_(torch.from_numpy(weights["V"]))
        head.bias.copy_(torch.from_numpy(weights["c"]))
    params = list(rnn.parameters()) + list(head.parameters())
    x_np, y_np = problem.data()
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(y_np.reshape(-1))
    cross_entropy = torch.nn.functional.cross_entropy

    def step() -> float:
        for p in params:
            p.grad = None                              # the cheapest "zero_grad"
        out, _ = rnn(x)                                # (T, B, H)
        z = head(out)                                  # (T, B, O)
        loss = cross_entropy(z.reshape(T * B, I), y, reduction="sum") / B
        loss.backward()
        return loss.item()

    return Contestant(f"torch.nn.{kind.__name__}", step, step_flops(problem), f"torch {torch.__version__}")


# --------------------------------------------------------------------- JAX
def _jax_cell(cell: str, H: int):
    """The recurrence h_t = cell(A_t, h_{t-1}) for lax.scan, A_t = U x_t + b hoisted out."""
    import jax.numpy as jnp
    from jax.nn import sigmoid

    if cell == "rnn":
        def body(W, carry, a_t, b_hn=None):
            h = jnp.tanh(a_t + carry @ W.T)
            return h, h
    elif cell == "lstm":                               # gates [i, f, g, o] as in torch
        def body(W, carry, a_t, b_hn=None):
            h, c = carry
            g = a_t + h @ W.T
            i, f, gg, o = sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), jnp.tanh(g[:, 2 * H:3 * H]), sigmoid(g[:, 3 * H:])
            c = f * c + i * gg
            h = o * jnp.tanh(c)
            return (h, c), h
    else:                                              # gru, torch's variant: r gates (W_hn h + b_hn)
        def body(W, carry, a_t, b_hn):
            h = carry
            gh = h @ W.T
            r = sigmoid(a_t[:, :H] + gh[:, :H])
            z = sigmoid(a_t[:, H:2 * H] + gh[:, H:2 * H])
            n = jnp.tanh(a_t[:, 2 * H:] + r * (gh[:, 2 * H:] + b_hn))
            h = (1 - z) * n + z * h
            return h, h
    return body


def jax_contestant(problem: Problem, weights: dict) -> Contestant:
    import jax
    import jax.numpy as jnp

    B, H = problem.batch, problem.hidden_size
    body = _jax_cell(problem.cell, H)

    def loss_fn(params, x, y):
        A = x @ params["U"].T + params["b"]           # (T, B, G H): hoisted, one GEMM
        h0 = jnp.zeros((B, H), x.dtype)
        carry0 = (h0, h0) if problem.cell == "lstm" else h0
        _, hs = jax.lax.scan(lambda carry, a_t: body(params["W"], carry, a_t, params.get("b_hn")), carry0, A)
        z = hs @ params["V"].T + params["c"]          # (T, B, O)
        logp = jax.nn.log_softmax(z, axis=-1)
        picked = jnp.take_along_axis(logp, y[..., None], axis=-1)
        return -jnp.sum(picked) / B

    grad_step = jax.jit(jax.value_and_grad(loss_fn))
    params = {"U": weights["layers.0.U"], "W": weights["layers.0.W"], "b": weights["layers.0.b"],
              "V": weights["V"], "c": weights["c"]}
    if "layers.0.b_hn" in weights:
        params["b_hn"] = weights["layers.0.b_hn"]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    x_np, y_np = problem.data()
    x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))

    def step() -> float:
        loss, grads = grad_step(params, x, y)
        jax.block_until_ready(grads)
        return float(loss)

    step()                                             # compile outside the timed loop
    return Contestant("jax.jit(lax.scan)", step, step_flops(problem), f"jax {jax.__version__}")


PEERS = {"torch": torch_contestant, "jax": jax_contestant}
