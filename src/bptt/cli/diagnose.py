"""``bptt diagnose RUN_OR_CHECKPOINT``: see the gradients of a trained (or fresh) network.

    bptt diagnose runs/demo                      # a run folder holding checkpoint.npz
    bptt diagnose runs/demo/checkpoint.npz --seq-len 40 --batch 4 --out runs/demo/diagnose

Loads the checkpoint (``bptt.io.checkpoint``, no pickle), builds a probe batch -- for a text
model, windows of the run's text (``--text``, else the text the run trained on, else the
built-in corpus) encoded with the run's vocabulary; otherwise seeded random inputs and
targets -- and writes to ``--out`` (default RUN/diagnose): contributions.png, lag_profile.png,
jacobian.png, grad_norm.png (from metrics.jsonl), spectral_radius.png (from diagnostics.jsonl,
when the run recorded one) and report.html (one self-contained file, figures embedded).
Prints the key numbers. Cost grows like T^2: keep --seq-len modest (default 40).
"""

from __future__ import annotations

import os

import numpy as np

from . import CLIError


def add_parser(sub) -> None:
    from . import add_threads_option, show_defaults

    p = sub.add_parser("diagnose", help="figures + an HTML report of a network's gradient flow",
                       description="Vanishing/exploding diagnostics of a checkpoint: the lecture's decomposition "
                                   "of dE_t/dW by step, its profile by time lag, ||dh_t/dh_k||, the spectrum of W, "
                                   "saturation, gates, and the training history. Writes PNGs and report.html.")
    p.add_argument("path", metavar="RUN_OR_CHECKPOINT", help="a run folder (with checkpoint.npz) or a .npz checkpoint")
    p.add_argument("--out", help="output folder")
    p.add_argument("--text", help="text for the probe batch of a text model")
    p.add_argument("--seq-len", type=int, default=40, help="probe length T (cost grows like T^2)")
    p.add_argument("--batch", type=int, default=4, help="probe sequences")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe windows / random probe")
    p.add_argument("--layer", type=int, default=-1, help="which layer (negative counts from the top)")
    p.add_argument("--param", default="W", help="recurrent parameter to decompose: W, U or b")
    p.add_argument("--fraction", type=float, default=0.01,
                   help="effective memory: lag where the profile falls below this share of lag 0")
    add_threads_option(p)
    show_defaults(p, out="RUN/diagnose", text="the text the run trained on")
    p.set_defaults(run=run)


def _text_probe(ckpt, vocab, args, rng):
    from ..corpus import builtin_text
    from ..data import read_text

    source = args.text or ckpt.meta.get("extra", {}).get("train_args", {}).get("text")
    if source and not os.path.isfile(source):
        if args.text:
            raise CLIError(f"--text {args.text} is not a file")
        source = None                                       # the run's text moved: fall back
    text = read_text(source) if source else builtin_text()
    ids = vocab.encode(text)
    T, B = args.seq_len, args.batch
    if len(ids) < T + 1:
        raise CLIError(f"the probe text has {len(ids)} tokens, fewer than --seq-len + 1 = {T + 1}")
    starts = rng.integers(0, len(ids) - T, size=B)
    windows = np.stack([ids[s:s + T + 1] for s in starts], axis=1)      # (T+1, B)
    return windows[:-1], windows[1:], None


def _random_probe(net, args, rng):
    T, B = args.seq_len, args.batch
    inputs = rng.standard_normal((T, B, net.input_size))
    width = net.output_size if net.output_size is not None else net.num_directions * net.hidden_size
    if net.loss == "cross_entropy":
        targets = rng.integers(0, width, size=(T, B))
    else:
        targets = rng.standard_normal((T, B, width))
    return inputs.astype(net.dtype), targets, None


def run(args) -> int:
    from ..io.checkpoint import load_checkpoint
    from ..diagnostics.report import diagnose

    for flag in ("seq_len", "batch"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if not 0 < args.fraction < 1:
        raise CLIError(f"--fraction must be in (0, 1), got {args.fraction}")
    ckpt = load_checkpoint(args.path)
    net = ckpt.network()
    if getattr(net, "bidirectional", False):
        raise CLIError("diagnose needs a unidirectional network; this checkpoint is bidirectional")
    run_dir = args.path if os.path.isdir(args.path) else os.path.dirname(os.path.abspath(args.path))
    out = args.out or os.path.join(run_dir, "diagnose")
    rng = np.random.default_rng(args.seed)
    vocab = ckpt.vocabulary()
    probe = _text_probe(ckpt, vocab, args, rng) if vocab is not None else _random_probe(net, args, rng)
    train_args = ckpt.meta.get("extra", {}).get("train_args", {})
    threshold = train_args.get("clip") if train_args.get("clip_mode") == "global-norm" else None
    from ..diagnostics import read_jsonl
    for name in ("metrics.jsonl", "diagnostics.jsonl"):    # a damaged history fails before any figure is written
        if os.path.exists(os.path.join(run_dir, name)):
            read_jsonl(os.path.join(run_dir, name))
    numbers = diagnose(net, probe, out, run_dir=run_dir, layer=args.layer, param=args.param,
                       fraction=args.fraction, clip_threshold=threshold,
                       title=f"bptt diagnose {os.path.basename(os.path.normpath(run_dir))} (step {ckpt.step})")
    width = max(len(k) for k in numbers)
    for key, value in numbers.items():
        shown = ", ".join(f"{v:.4g}" for v in value) if isinstance(value, list) else (
            f"{value:.4g}" if isinstance(value, float) else str(value))
        print(f"{key:<{width}}  {shown}")
    print(f"wrote {os.path.join(out, 'report.html')} and the figures in {out}")
    return 0
