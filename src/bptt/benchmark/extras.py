"""Peak memory of a training step against the analytic minimum, and sampling speed.

Memory: ``tracemalloc`` sees every numpy allocation (numpy reports its data buffers to
it), so the peak traced during ``net.loss_and_grads`` plus what already existed before
the call (parameters, inputs, targets, the scratch arrays the network keeps between
calls) is the step's peak footprint. The analytic minimum
is what any exact BPTT must hold at once:

    parameters + gradients + inputs + targets + the activations backward needs
    rnn:  h_t for t = 0..T                     (T+1) B H
    gru:  h_t, and r, z, n, W_n h_{t-1} + b_hn (T+1) B H + 4 T B H
    lstm: h_t, c_t, and the four gates         2 (T+1) B H + 4 T B H

The API also *returns* dE/dh_t for every t (for the diagnostics): T B H more, reported as
``minimum_with_dh_bytes``.

Sampling: characters per second generating one character at a time (B = 1, token-id input,
softmax, draw) with ``net.step`` against the same loop written with the torch module.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from .peers import Problem


def _activation_floats(cell: str, T: int, B: int, H: int) -> int:
    if cell == "rnn":
        return (T + 1) * B * H
    if cell == "gru":
        return (T + 1) * B * H + 4 * T * B * H
    return 2 * (T + 1) * B * H + 4 * T * B * H


def step_footprint_bytes(net, x, y) -> int:
    """Bytes of one ``net.loss_and_grads(x, y)``: what exists before the step and the step relies on
    (parameters, data, and the scratch arrays loss_and_grads keeps between calls in
    ``net.workspaces``) plus tracemalloc's peak during it. A first call warms any lazy set-up."""
    net.loss_and_grads(x, y)
    existing = sum(p.nbytes for p in net.params.values()) + x.nbytes + y.nbytes
    existing += sum(w.nbytes for w in getattr(net, "workspaces", {}).values())
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = net.loss_and_grads(x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return existing + peak


def measure_memory(problem: Problem) -> dict:
    """Peak bytes of one float32 training step vs the analytic minimum."""
    from ..network import Network

    net = Network(problem.input_size, problem.hidden_size, problem.input_size, cell=problem.cell,
                  seed=problem.seed, dtype="float32")
    x, y = problem.data()
    param_bytes = sum(p.nbytes for p in net.params.values())
    footprint = step_footprint_bytes(net, x, y)
    T, B, H = problem.seq_len, problem.batch, problem.hidden_size
    itemsize = np.dtype(np.float32).itemsize
    minimum = 2 * param_bytes + x.nbytes + y.nbytes + _activation_floats(problem.cell, T, B, H) * itemsize
    measured = footprint
    return {"cell": problem.cell, "input_size": problem.input_size, "hidden_size": H, "batch": B, "seq_len": T,
            "peak_bytes": measured, "minimum_bytes": minimum, "ratio": measured / minimum,
            "minimum_with_dh_bytes": minimum + T * B * H * itemsize,
            "ratio_with_dh": measured / (minimum + T * B * H * itemsize)}


def memory_rows(sizes, cells, log=print) -> list:
    rows = []
    for cell in cells:
        for (I, H, B, T) in sizes:
            try:
                row = measure_memory(Problem(cell, I, H, B, T))
            except ValueError as error:
                log(f"  memory {cell}: skipped ({error})")
                continue
            rows.append(row)
            log(f"  memory {cell:4s} I=O={I} H={H} B={B} T={T}: peak {row['peak_bytes'] / 2**20:8.2f} MiB, "
                f"minimum {row['minimum_bytes'] / 2**20:8.2f} MiB -> {row['ratio']:.2f}x "
                f"({row['ratio_with_dh']:.2f}x counting the returned dE/dh_t)")
    return rows


# ------------------------------------------------------------------- sampling
def _draw(probs: np.ndarray, u: float) -> int:
    """Inverse-CDF draw: the first id whose cumulative probability exceeds u."""
    return min(int(np.searchsorted(np.cumsum(probs), u, side="right")), probs.size - 1)


def sample_bptt(net, n: int, seed: int = 0) -> tuple[float, list]:
    from ..functional import softmax

    rng = np.random.default_rng(seed)
    uniforms = rng.random(n)
    state = net.zero_state(1)
    token = np.zeros(1, np.intp)
    out = []
    start = time.perf_counter()
    for i in range(n):
        logits, state = net.step(token, state)         # (1, O)
        token[0] = _draw(softmax(logits[0]), uniforms[i])
        out.append(int(token[0]))
    return n / (time.perf_counter() - start), out


def sample_torch(net, n: int, seed: int = 0) -> tuple[float, list]:
    import torch

    from ..interop.torch import to_torch

    rnn, head = to_torch(net)
    vocab = net.input_size
    rng = np.random.default_rng(seed)
    uniforms = rng.random(n)
    eye = torch.eye(vocab, dtype=next(rnn.parameters()).dtype)
    out = []
    with torch.no_grad():
        state = None
        token = 0
        start = time.perf_counter()
        for i in range(n):
            x = eye[token].view(1, 1, vocab)               # one-hot: nn.RNN takes features
            h, state = rnn(x, state)
            probs = torch.softmax(head(h[0, 0]), dim=0).numpy()
            token = _draw(probs, uniforms[i])
            out.append(token)
    return n / (time.perf_counter() - start), out


def sampling_rows(cells, quick: bool = False, log=print) -> list:
    """chars/s of bptt vs torch at (vocabulary 65, H 128) and (65, 512)."""
    from ..network import Network

    rows = []
    sizes = [(5, 8)] if quick else [(65, 128), (65, 512)]
    n = 50 if quick else 2000
    for cell in cells:
        for vocab, H in sizes:
            net = Network(vocab, H, vocab, cell=cell, dtype="float32", seed=0)
            sample_bptt(net, 10)
            ours, tokens = sample_bptt(net, n)
            row = {"cell": cell, "vocab": vocab, "hidden_size": H, "chars": n, "bptt_chars_per_s": ours}
            try:
                sample_torch(net, 10)
                theirs, torch_tokens = sample_torch(net, n)
                row.update(torch_chars_per_s=theirs, ratio=ours / theirs,
                           same_text=tokens == torch_tokens)
            except (ImportError, ValueError):          # no torch, or no torch twin for this cell
                row["torch_chars_per_s"] = None
            rows.append(row)
            log(f"  sampling {cell} V={vocab} H={H}: bptt {ours:8.0f} chars/s"
                + (f", torch {row['torch_chars_per_s']:8.0f} chars/s (bptt/torch speed {row['ratio']:.2f}, "
                   f"same text: {row['same_text']})" if row.get("torch_chars_per_s") else ""))
    return rows
