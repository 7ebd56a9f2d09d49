"""Lag profiles of the six cells on one figure (issue 17): ||ds_t/ds_{t-k}||_2 against the lag k.

    python bench/cells_lag_profiles.py /work/shared/data/tinyshakespeare.txt \
        [--trained-dir runs/cells/nets] --json lags.json --figure lags.png

For each cell of ``bench/cells_compare.py`` at the same (parameter-matched) sizes: the network freshly
initialised (seed 0, as cells_compare starts it) and, when ``--trained-dir`` holds ``CELL.npz`` (written
by ``cells_compare.py --save-dir``), after that training. The probe is ``--batch`` windows of ``--seq-len``
characters from the held-out tail of the text (the same for every cell). The number plotted is
``bptt.diagnostics.jacobian_norms(net, x, ord=2, t=T-1)``: the batch mean of the spectral norm of the
Jacobian product ds_{T-1}/ds_{T-1-k} = prod_j ds_j/ds_{j-1}, for the full state s (h for rnn, gru,
mingru, minlstm; (h, c) for lstm and lnlstm), read along the last row, i.e. how much of a perturbation of
the state k steps back still reaches the last step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cells_compare import CELLS, matched_sizes, pin_one_thread  # noqa: E402
from time_to_quality import load_text, windows  # noqa: E402


def profile(net, x) -> list:
    from bptt import diagnostics as D
    T = x.shape[0]
    J = D.jacobian_norms(net, x, ord=2, t=T - 1)          # only row T-1: T products
    return [float(J[T - 1, T - 1 - k]) for k in range(T)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("text")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--base-hidden", type=int, default=128, help="as cells_compare.py: the LSTM's H fixes the size")
    p.add_argument("--trained-dir", help="cells_compare.py --save-dir: CELL.npz of the trained networks")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=4, help="probe windows (the Jacobians cost B S^2 T memory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--figure")
    args = p.parse_args(argv)
    from bptt import Network
    pin_one_thread()
    names = [c.strip() for c in args.cells.split(",") if c.strip()]
    train, val, vocab = load_text(args.text)
    V, T = len(vocab), args.seq_len
    sizes = matched_sizes(names, V, "lstm", args.base_hidden)
    offsets = np.random.default_rng([args.seed, 7]).integers(0, len(val) - T - 1, args.batch)
    x, _ = windows(val, offsets, T)
    out = {"T": T, "batch": args.batch, "norm": "spectral, batch mean, row t = T-1 of jacobian_norms",
           "text": os.path.abspath(args.text), "load_start": os.getloadavg(), "profiles": []}
    for name in names:
        H = sizes[name][0]
        net = Network(V, H, V, seed=args.seed, dtype="float32", **CELLS[name])
        states = [("initial", None)]
        path = os.path.join(args.trained_dir, f"{name}.npz") if args.trained_dir else None
        if path and os.path.isfile(path):
            states.append(("trained", path))
        for label, src in states:
            if src:
                with np.load(src) as f:
                    net.load_state_dict({k: f[k] for k in f.files})
            c0 = time.process_time()
            prof = profile(net, x)
            out["profiles"].append({"cell": name, "hidden": H, "state": label, "profile": prof,
                                    "cpu_s": time.process_time() - c0})
            print(f"{name:8s} H={H:4d} {label:8s} lag 1 {prof[1]:.3g}  lag 10 {prof[10]:.3g}  lag {T - 1} {prof[-1]:.3g}"
                  f"  ({time.process_time() - c0:.1f} CPU-s)", flush=True)
    out["load_end"] = os.getloadavg()
    if args.json:
        from bptt.io.files import write_text
        write_text(args.json, json.dumps(out, indent=1))
    if args.figure:
        figure(out, args.figure)
    return 0


def figure(out: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {}
    for r in out["profiles"]:
        colour = colours.setdefault(r["cell"], f"C{len(colours)}")
        prof = np.array(r["profile"])
        ax.semilogy(np.arange(len(prof)), np.maximum(prof, 1e-30), color=colour,
                    linestyle="-" if r["state"] == "trained" else "--",
                    label=f"{r['cell']} H={r['hidden']} ({r['state']})")
    ax.set_xlabel("lag k (steps back from the last step, T = %d)" % out["T"])
    ax.set_ylabel("||ds_{T-1} / ds_{T-1-k}||_2 (batch mean)")
    ax.set_ylim(bottom=max(1e-30, ax.get_ylim()[0]))
    ax.set_title("Jacobian-product norm against lag; dashed: initialised; solid: after bench/cells_compare.py training",
                 fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
