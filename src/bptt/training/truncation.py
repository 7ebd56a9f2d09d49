"""Truncated backpropagation through time: the three things people mean by it.

Full BPTT computes  dE/dW = sum_t dE_t/dW  with every E_t reaching back to step 1 through
the lecture's product of Jacobians  prod_j dh_j/dh_{j-1}.  Truncation cuts that product.

``FullBPTT()``            no truncation inside a batch: one forward, one backward, one update.

``Chunked(k)``            (a) char-rnn / min-char-rnn: split the stream into chunks of k steps;
                          forward, backward and update on each chunk; the chunk's last hidden
                          state seeds the next chunk but no gradient crosses the boundary
                          ("detached").  E_t reaches back to the start of its chunk.

``TBPTT(k1, k2)``         (b) Williams & Peng (1990) TBPTT(k1, k2), k2 >= k1: every k1 steps,
                          run the last k2 steps again from the stored (detached) state, take the
                          loss on the k1 newest outputs and backpropagate through all k2 steps,
                          then update.  E_t reaches back between k2-k1+1 and k2 steps.  The
                          window is recomputed with the current weights (as PyTorch
                          implementations do); TBPTT(k, k) is Chunked(k) when k divides T.

``PerOutputWindow(k)``    (c) the WildML tutorial's ``bptt_truncate``: every E_t backpropagates
                          at most k steps: its gradient reaches h_j only for t-k <= j <= t
                          (k Jacobian factors).  One update per batch.  Computed exactly by
                          running, for every t, a window of k+1 steps from the true (detached)
                          state, with the loss at E_t only; all T windows go through the network
                          together as one batch of T*B sequences (grouped to bound memory).
                          Cost: about (k+1) times a full BPTT pass. With dropout each window draws
                          its own masks.

Every mode equals full BPTT when its window covers the sequence (tests check this), and
``PerOutputWindow`` matches a direct per-output loop (the tutorial's algorithm).

Protocol used by ``bptt.training.train.Trainer``:
``mode.run(net, inputs, targets, mask, state, update, lengths=None) -> (loss, final_state)`` where the
mode calls ``update(Piece)`` once per gradient it computes, in time order (the trainer's
update hooks, clips and steps the optimiser, so the next piece sees the new weights).
``inputs``/``targets``/``mask``/``lengths`` must already be validated (``net.check_*``).

Variable-length batches (``lengths`` (B,), see layers/packed.py): each piece of time gets the
lengths that fall inside it (``piece_lengths``); a sequence that ended in an earlier piece has
length 0 there, so its state passes through unchanged and it adds nothing to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation as check
from ..losses import compute_loss

TRUNCATIONS = ("full", "chunked", "tbptt", "window")


@dataclass
class Piece:
    """One gradient computation inside a batch."""

    loss: float                   # loss of the outputs this piece is responsible for
    grads: dict                   # dE/dparams for that loss (fresh arrays, may be clipped in place)
    span: tuple                   # (t0, t1): the outputs whose loss is in ``loss``
    window: tuple                 # (w0, w1): the steps the gradient flowed through
    forward: object = None        # ForwardPass (single-pass modes)
    backward: object = None       # BackwardPass (single-pass modes; dinputs is None: not computed)
    dh: list | None = None        # per layer, dE/dh_t over the window (T_window, B, H); None for mode (c)


def _slice_mask(mask, t0, t1):
    return None if mask is None else mask[t0:t1]


def _needs_unidirectional(net, mode: str) -> None:
    if getattr(net, "bidirectional", False):
        raise ValueError(f"truncation {mode!r} needs a unidirectional network (a bidirectional layer reads "
                         f"the whole sequence); use truncation 'full'")
    if getattr(net, "pooled", False):
        raise ValueError(f"truncation {mode!r} needs one output per step; readout={net.readout_mode!r} has one "
                         f"per sequence: use truncation 'full'")


def piece_lengths(lengths, t0: int, t1: int):
    """How many of steps [t0, t1) belong to each sequence (0 for one that ended before t0)."""
    return None if lengths is None else np.clip(lengths - t0, 0, t1 - t0)


def _forward_loss_backward(net, x, targets, mask, state, lengths=None):
    fwd = net.forward(x, state, lengths=lengths, validate=False)
    loss, dout = net.output_loss(fwd, targets, mask)
    bwd = net.backward(fwd, dout, input_grad=False)       # training never reads dE/dx: skip its GEMM
    return loss, fwd, bwd


class FullBPTT:
    """No truncation within a batch."""

    name = "full"

    def run(self, net, inputs, targets, mask, state, update, lengths=None):
        T = inputs.shape[0]
        loss, fwd, bwd = _forward_loss_backward(net, inputs, targets, mask, state, lengths)
        update(Piece(loss, bwd.grads, (0, T), (0, T), fwd, bwd, bwd.dh))
        return loss, fwd.final_state

    def describe(self) -> dict:
        return {"mode": self.name}


class Chunked:
    """(a) Chunks of k steps, hidden state carried (detached) from one chunk to the next."""

    name = "chunked"

    def __init__(self, k: int):
        self.k = check.positive_int("k", k)

    def run(self, net, inputs, targets, mask, state, update, lengths=None):
        _needs_unidirectional(net, self.name)
        T = inputs.shape[0]
        total = 0.0
        for t0 in range(0, T, self.k):
            t1 = min(t0 + self.k, T)
            loss, fwd, bwd = _forward_loss_backward(net, inputs[t0:t1], targets[t0:t1],
                                                    _slice_mask(mask, t0, t1), state, piece_lengths(lengths, t0, t1))
            update(Piece(loss, bwd.grads, (t0, t1), (t0, t1), fwd, bwd, bwd.dh))
            total += loss
            state = fwd.final_state                   # carried, no gradient across the boundary
        return total, state

    def describe(self):
        return {"mode": self.name, "k": self.k}


class TBPTT:
    """(b) Williams & Peng TBPTT(k1, k2): update every k1 steps, backpropagate k2 >= k1 steps."""

    name = "tbptt"

    def __init__(self, k1: int, k2: int):
        self.k1 = check.positive_int("k1", k1)
        self.k2 = check.positive_int("k2", k2)
        if self.k2 < self.k1:
            raise ValueError(f"k2 must be >= k1, got k1={k1}, k2={k2}")

    def run(self, net, inputs, targets, mask, state, update, lengths=None):
        _needs_unidirectional(net, self.name)
        T = inputs.shape[0]
        total = 0.0
        start, state_start = 0, state                 # window start and the (detached) state before it
        done = 0                                      # outputs already trained on
        while done < T:
            end = min(done + self.k1, T)              # this update is for outputs [done, end)
            next_end = min(end + self.k1, T)
            # The next window starts at next_end - k2; we need the state there, so split this
            # window's forward at that point (it lies inside [start, end] because k2 >= k1).
            split = max(start, next_end - self.k2) if end < T else end
            passes = []
            s = state_start
            for a, b in ((start, split), (split, end)):
                if b > a:
                    fwd = net.forward(inputs[a:b], s, lengths=piece_lengths(lengths, a, b), validate=False)
                    passes.append((a, b, fwd))
                    s = fwd.final_state
                if b == split:
                    state_split = s
            outputs = np.concatenate([f.outputs for _, _, f in passes], axis=0) if len(passes) > 1 else passes[0][2].outputs
            weights = np.zeros((end - start, inputs.shape[1]), outputs.dtype)
            weights[done - start:] = 1.0 if mask is None else mask[done:end]   # loss on the k1 newest outputs
            if lengths is not None:
                weights *= np.arange(start, end)[:, None] < lengths[None, :]   # not on padded steps
            loss, dout = compute_loss(net.loss, outputs, targets[start:end], weights)
            grads, dstate, dh_parts = None, None, []
            for a, b, fwd in reversed(passes):          # top of the window first: BPTT runs backwards
                bwd = net.backward(fwd, dout[a - start:b - start], grads, dfinal_state=dstate, input_grad=False)
                grads, dstate = bwd.grads, bwd.dh0
                dh_parts.insert(0, bwd.dh)
            dh = [np.concatenate([part[layer] for part in dh_parts], axis=0) for layer in range(len(dh_parts[0]))]
            single = passes[0][2] if len(passes) == 1 else None
            update(Piece(loss, grads, (done, end), (start, end), single, bwd if single else None, dh))
            total += loss
            final_state = s
            start, state_start, done = split, state_split, end
        return total, final_state

    def describe(self):
        return {"mode": self.name, "k1": self.k1, "k2": self.k2}


def states_before(net, inputs, state, positions, fwd=None):
    """The network state (format of h0) just before each step in sorted ``positions``,
    i.e. after ``p`` steps from ``state``.  For one-state cells this is read off the full
    forward pass; otherwise the sequence is run piece by piece (same numbers)."""
    T, B = inputs.shape[:2]
    if len(net.state_names) == 1:
        fwd = fwd if fwd is not None else net.forward(inputs, state, validate=False)
        h0 = net.zero_state(B) if state is None else np.asarray(state)
        hs = np.concatenate([h0[:, None], np.stack(fwd.hidden, axis=0)], axis=1)   # (L, T+1, B, H)
        return [hs[:, p] for p in positions]
    out, s, at = [], (net.zero_state(B) if state is None else state), 0
    for p in positions:
        if p > at:
            s = net.forward(inputs[at:p], s, validate=False).final_state
            at = p
        out.append(s)
    return out


class PerOutputWindow:
    """(c) WildML's ``bptt_truncate``: each E_t backpropagates at most k steps (to h_{t-k})."""

    name = "window"

    def __init__(self, k: int, max_rows: int = 1 << 15):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k must be an integer >= 0, got {k!r}")
        self.k = int(k)
        self.max_rows = check.positive_int("max_rows", max_rows)   # window-batch rows per group (memory bound)

    def run(self, net, inputs, targets, mask, state, update, lengths=None):
        _needs_unidirectional(net, self.name)
        T, B = inputs.shape[:2]
        L = self.k + 1                                   # steps in each output's window
        if T <= L:                                       # every window covers the sequence: full BPTT
            return FullBPTT().run(net, inputs, targets, mask, state, update, lengths)
        fwd = net.forward(inputs, state, lengths=lengths, validate=False)
        # E_t of a sequence b counts only for t < L_b; the states before its window's start (< L_b)
        # never depend on padding, so states_before needs no lengths.
        starts = np.clip(np.arange(T) - self.k, 0, T - L)             # window of E_t: [s_t, s_t + L)
        at = np.arange(T) - starts                                      # where E_t sits in its window
        firsts = list(range(T - L + 1))
        state_at = states_before(net, inputs, state, firsts, fwd)      # detached states, true trajectory
        grads, total = net.zero_grads(), 0.0
        group = max(1, self.max_rows // B)
        for g0 in range(0, T, group):
            ts = np.arange(g0, min(g0 + group, T))                      # outputs handled in this group
            idx = starts[ts][:, None] + np.arange(L)                    # (G, L) time index of each window step
            xw = _windows(inputs, idx)                                  # (L, G*B, ...)
            yw = _windows(targets, idx)
            weights = np.zeros((L, len(ts), B), fwd.outputs.dtype)
            weights[at[ts], np.arange(len(ts))] = 1.0 if mask is None else mask[ts]
            window_lengths = None
            if lengths is not None:
                weights[at[ts], np.arange(len(ts))] *= ts[:, None] < lengths[None, :]
                window_lengths = np.clip(lengths[None, :] - starts[ts][:, None], 0, L).reshape(-1)
            weights *= len(ts)                          # the loss averages over G*B rows; we want 1/B
            h0 = _stack_states([state_at[s] for s in starts[ts]])
            wf = net.forward(xw, h0, lengths=window_lengths, validate=False)
            loss, dout = compute_loss(net.loss, wf.outputs, yw, weights.reshape(L, len(ts) * B))
            net.backward(wf, dout, grads, input_grad=False)
            total += loss
        update(Piece(total, grads, (0, T), (0, T), None, None, None))
        return total, fwd.final_state

    def describe(self):
        return {"mode": self.name, "k": self.k}


def _windows(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """arr (T, B, ...) and idx (G, L) -> (L, G*B, ...), window g's row b at column g*B + b."""
    G, L = idx.shape
    w = arr[idx]                                         # (G, L, B, ...)
    w = np.swapaxes(w, 0, 1)                             # (L, G, B, ...)
    return np.ascontiguousarray(w.reshape((L, G * arr.shape[1]) + arr.shape[2:]))


def _stack_states(states: list):
    """Per-window states (format of h0, batch B) -> one state with batch G*B (window-major)."""
    if isinstance(states[0], tuple):
        return tuple(_stack_states([s[i] for s in states]) for i in range(len(states[0])))
    return np.concatenate(states, axis=1)                # (L, G*B, H)


def make_truncation(mode: str = "full", *, k: int | None = None, k1: int | None = None, k2: int | None = None):
    """A truncation mode by name: ``full``, ``chunked`` (k), ``tbptt`` (k1, k2; k2 defaults to k1), ``window`` (k)."""
    mode = check.one_of("truncation", mode, TRUNCATIONS)
    if mode == "full":
        return FullBPTT()
    if mode == "chunked":
        return Chunked(k)
    if mode == "tbptt":
        return TBPTT(k1, k2 if k2 is not None else k1)
    return PerOutputWindow(k)


Window = PerOutputWindow          # the name the README uses: Window(k) = WildML's bptt_truncate
TRUNCATION_TYPES = (FullBPTT, Chunked, TBPTT, PerOutputWindow)
