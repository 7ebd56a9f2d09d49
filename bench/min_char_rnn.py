"""Karpathy's min-char-rnn (2015), reimplemented faithfully, as a reference point for bptt.

Same algorithm and settings as the original gist: hidden 100, seq_length 25, batch 1,
Adagrad lr 0.1 with ``sqrt(mem + 1e-8)``, element-wise clipping to [-5, 5], weights
``randn * 0.01``, zero biases, the loss summed over the 25 steps, the hidden state carried
from chunk to chunk and reset at the start of each pass over the data. Differences, so
that the numbers compare with ``bptt train``: the vocabulary is sorted (runs repeat), it
trains on the first 95% of the text and reports the validation loss (nats/char) on the
last 5% (bptt's ``--val-fraction 0.05`` split), and it is seeded.

    python bench/min_char_rnn.py /work/shared/data/tinyshakespeare.txt --steps 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def loss_fun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """The gist's lossFun: forward 25 steps, BPTT back, clip to [-5, 5]."""
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    vocab = Wxh.shape[1]
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ys[t] = Why @ hs[t] + by
        ps[t] = np.exp(ys[t] - ys[t].max()) / np.sum(np.exp(ys[t] - ys[t].max()))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    for d in (dWxh, dWhh, dWhy, dbh, dby):
        np.clip(d, -5, 5, out=d)
    return loss, (dWxh, dWhh, dWhy, dbh, dby), hs[len(inputs) - 1]


def val_loss(ids, Wxh, Whh, Why, bh, by) -> float:
    """Mean nats/char predicting ids[1:] from ids[:-1], one stream, state carried."""
    h = np.zeros((Whh.shape[0], 1))
    total = 0.0
    U = Wxh                                     # column lookup = one-hot matmul
    for t in range(len(ids) - 1):
        h = np.tanh(U[:, ids[t]:ids[t] + 1] + Whh @ h + bh)
        y = Why @ h + by
        y = y - y.max()
        total += -(y[ids[t + 1], 0] - np.log(np.exp(y).sum()))
    return total / (len(ids) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    args = ap.parse_args()
    data = open(args.text, encoding="utf-8").read()
    chars = sorted(set(data))
    ix = {c: i for i, c in enumerate(chars)}
    ids = np.array([ix[c] for c in data])
    n_val = int(round(len(ids) * args.val_fraction))
    train, val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
    V, H, T, lr = len(chars), 100, 25, 1e-1
    rng = np.random.default_rng(args.seed)
    Wxh, Whh, Why = rng.standard_normal((H, V)) * 0.01, rng.standard_normal((H, H)) * 0.01, rng.standard_normal((V, H)) * 0.01
    bh, by = np.zeros((H, 1)), np.zeros((V, 1))
    mems = [np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by)]
    p, hprev = 0, np.zeros((H, 1))
    started = time.perf_counter()
    smooth = -np.log(1.0 / V) * T
    for n in range(args.steps):
        if p + T + 1 >= len(train):
            hprev, p = np.zeros((H, 1)), 0
        loss, grads, hprev = loss_fun(train[p:p + T], train[p + 1:p + T + 1], hprev, Wxh, Whh, Why, bh, by)
        smooth = smooth * 0.999 + loss * 0.001
        for param, dparam, mem in zip((Wxh, Whh, Why, bh, by), grads, mems):
            mem += dparam * dparam
            param += -lr * dparam / np.sqrt(mem + 1e-8)
        p += T
    seconds = time.perf_counter() - started
    v = val_loss(val, Wxh, Whh, Why, bh, by)
    print(f"min-char-rnn: {args.steps} steps ({args.steps * T:,} chars) in {seconds:.1f} s, "
          f"smooth train loss {smooth / T:.4f} nats/char, validation loss {v:.4f} nats/char")


if __name__ == "__main__":
    main()
