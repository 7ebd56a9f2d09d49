"""Training steps of the cells beyond the lecture, side by side in one process.

For each of minGRU, minLSTM, the layer-normalised LSTM and the LSTM with projection: one training
step (forward, cross-entropy over T, backward) of bptt against a torch autograd implementation of
the same equations (the test suite's references), and against torch's fused nn.GRU / nn.LSTM at the
same H; for minGRU and minLSTM also bptt's compiled loop against its numpy loop, and the step
against bptt's own GRU / LSTM step. Interleaved, rotating order, medians; float32; one thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/new_cells.py [--repeats 11] [--size 65 128 32 64]

Ratios are time / reference time: below 1 means the first is faster.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def torch_reference_step(torch, cell, net, x, y, proj=None):
    """The cell's equations in torch autograd (float32), on net's weights; returns a step function."""
    F = torch.nn.functional
    P = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    H = net.hidden_size
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y).reshape(-1)
    T, B = x.shape

    def step():
        for p in P.values():
            p.grad = None
        A = P["layers.0.U"].T[xt]                                   # ids: a column lookup
        if "layers.0.b" in P:
            A = A + P["layers.0.b"]
        h = torch.zeros(B, proj or H)
        c = torch.zeros(B, H)
        outs = []
        for t in range(T):
            if cell == "mingru":
                z = torch.sigmoid(A[t, :, :H])
                h = (1 - z) * h + z * A[t, :, H:]
            elif cell == "minlstm":
                f, i = torch.sigmoid(A[t, :, :H]), torch.sigmoid(A[t, :, H:2 * H])
                h = f / (f + i) * h + i / (f + i) * A[t, :, 2 * H:]
            else:
                rec = h @ P["layers.0.W"].T
                if cell == "lnlstm":
                    a = (F.layer_norm(A[t] - P["layers.0.b"], (4 * H,), P["layers.0.ln_x_gamma"], P["layers.0.ln_x_beta"])
                         + F.layer_norm(rec, (4 * H,), P["layers.0.ln_h_gamma"], P["layers.0.ln_h_beta"]) + P["layers.0.b"])
                else:
                    a = A[t] + rec
                i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H])
                g, o = torch.tanh(a[:, 2 * H:3 * H]), torch.sigmoid(a[:, 3 * H:])
                c = f * c + i * g
                if cell == "lnlstm":
                    m = o * torch.tanh(F.layer_norm(c, (H,), P["layers.0.ln_c_gamma"], P["layers.0.ln_c_beta"]))
                else:
                    m = o * torch.tanh(c)
                h = m @ P["layers.0.W_hr"].T if proj else m
            outs.append(h)
        logits = torch.stack(outs) @ P["V"].T + P["c"]
        loss = F.cross_entropy(logits.reshape(T * B, -1), yt, reduction="sum") / B
        loss.backward()
        return loss

    return step


def torch_fused_step(torch, kind, V, H, x, y):
    module = getattr(torch.nn, kind)(V, H)
    head = torch.nn.Linear(H, V)
    features = torch.nn.functional.one_hot(torch.from_numpy(x), V).float()
    yt = torch.from_numpy(y).reshape(-1)
    T, B = x.shape

    def step():
        module.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        out, _ = module(features)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(T * B, -1), yt, reduction="sum") / B
        loss.backward()
        return loss

    return step


def medians(steps: dict, repeats: int) -> dict:
    names = list(steps)
    for name in names:
        steps[name]()
        steps[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=11, help="timed repeats per variant")
    parser.add_argument("--size", type=int, nargs=4, default=[65, 128, 32, 64], metavar=("I", "H", "B", "T"))
    args = parser.parse_args()
    import threadpoolctl
    import torch

    from bptt import Network, kernels

    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)
    V, H, B, T = args.size
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    blas = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    print(f"float32, 1 thread, BLAS {'; '.join(blas)}, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}; "
          f"(I=O, H, B, T) = ({V}, {H}, {B}, {T}); median of {args.repeats}")
    print(f"{'cell':8} {'bptt ms':>8} {'vs torch autograd':>18} {'vs torch fused':>15} {'vs bptt GRU/LSTM':>17} "
          f"{'compiled/numpy':>15}")
    cases = [("mingru", dict(cell="mingru"), "GRU"), ("minlstm", dict(cell="minlstm"), "LSTM"),
             ("lnlstm", dict(cell="lstm", layer_norm=True), "LSTM"),
             ("lstmp", dict(cell="lstm", proj_size=H // 2), "LSTM")]
    for name, options, fused in cases:
        net = Network(V, H, V, dtype="float32", seed=0, **options)
        own = Network(V, H, V, cell=fused.lower(), dtype="float32", seed=0)
        steps = {"bptt": lambda net=net: net.loss_and_grads(x, y),
                 "torch autograd": torch_reference_step(torch, name, net, x, y,
                                                        proj=options.get("proj_size")),
                 "torch fused": torch_fused_step(torch, fused, V, H, x, y),
                 "bptt own": lambda own=own: own.loss_and_grads(x, y)}
        if name.startswith("min"):
            def numpy_step(net=net):
                with kernels.using("numpy"):
                    return net.loss_and_grads(x, y)
            steps["bptt numpy loop"] = numpy_step
        m = medians(steps, args.repeats)
        compiled = f"{m['bptt'] / m['bptt numpy loop']:15.2f}" if "bptt numpy loop" in m else f"{'-':>15}"
        print(f"{name:8} {m['bptt'] * 1e3:8.2f} {m['bptt'] / m['torch autograd']:18.2f} "
              f"{m['bptt'] / m['torch fused']:15.2f} {m['bptt'] / m['bptt own']:17.2f} {compiled}")


if __name__ == "__main__":
    main()
