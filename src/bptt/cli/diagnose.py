"""``bptt diagnose RUN_OR_CHECKPOINT``: see the gradients of a trained (or fresh) network.

    bptt diagnose runs/demo                      # a run folder holding checkpoint.npz
    bptt diagnose runs/demo/checkpoint.npz --seq-len 40 --batch 4 --out runs/demo/diagnose

Loads the checkpoint (``bptt.io.checkpoint``, no pickle), builds a probe batch -- for a text
model, windows of the run's text (``--text``, else the text the run trained on; a text not at
hand is an error asking for ``--text``) encoded with the run's vocabulary; otherwise seeded random inputs and
targets -- and writes to ``--out`` (default RUN/diagnose): contributions.png, lag_profile.png,
jacobian.png, loss.png and grad_norm.png (from metrics.jsonl), spectral_radius.png (from
diagnostics.jsonl, when the run recorded one) and report.html (one self-contained file: the
run's configuration, equations, figures embedded, a sample). matplotlib is checked first; on
any failure nothing is left in --out (a folder this run created is removed).
Prints the key numbers. Cost grows like T^2: keep --seq-len modest (default 40).

    bptt diagnose runs/demo --text-view          # + the text view (character-level runs)
    bptt diagnose runs/rnn runs/lstm             # two runs' text views on one passage, one report

``--text-view`` adds to the report a passage of the run's text (``--passage-len`` characters, seeded by
``--seed``) coloured by the saliency ||dE_t/dx_k|| for one output position (``--position``, default the
last; hover or click in the page to choose another -- plain JavaScript in the file, nothing fetched),
the look-back lag of every position, the units that best track simple features of the text, the
gate-saturation scatter and the Lyapunov spectrum (diagnostics/textview.py). Two runs: the text views of
both on the same passage (taken from the first run's text) in one report, written to --out (default
RUN_A/compare).
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from . import CLIError


def add_parser(sub) -> None:
    from . import add_threads_option, show_defaults

    p = sub.add_parser("diagnose", help="figures + an HTML report of a network's gradient flow",
                       description="Vanishing/exploding diagnostics of a checkpoint: the lecture's decomposition "
                                   "of dE_t/dW by step, its profile by time lag, ||dh_t/dh_k||, the spectrum of W, "
                                   "saturation, gates, and the training history. Writes PNGs and report.html. "
                                   "--text-view adds the passage coloured by saliency, the units tracking "
                                   "features of the text, gate saturation and Lyapunov exponents (character-level "
                                   "runs); two runs (RUN_A RUN_B) compare their text views on one passage in one "
                                   "report, RUN_A/compare/report.html by default.")
    p.add_argument("path", metavar="RUN_OR_CHECKPOINT", nargs="+",
                   help="a run folder (with checkpoint.npz) or a .npz checkpoint; two of them: compare their text views")
    p.add_argument("--out", help="output folder")
    p.add_argument("--text", help="text for the probe batch of a text model")
    p.add_argument("--seq-len", type=int, default=40, help="probe length T (cost grows like T^2)")
    p.add_argument("--batch", type=int, default=4, help="probe sequences")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe windows / random probe")
    p.add_argument("--layer", type=int, default=-1, help="which layer (negative counts from the top)")
    p.add_argument("--param", default=None,
                   help="recurrent parameter to decompose: W, U or b (default: W, or U for mingru/minlstm, which have no W)")
    p.add_argument("--fraction", type=float, default=0.01,
                   help="effective memory: lag where the profile falls below this share of lag 0")
    p.add_argument("--text-view", action="store_true",
                   help="add the text view: saliency on a passage, units, gate saturation, Lyapunov exponents")
    p.add_argument("--passage-len", type=int, default=200, help="characters of the text view's passage")
    p.add_argument("--position", type=int, default=None,
                   help="output position the saliency is first shown for (default: the passage's last)")
    add_threads_option(p)
    show_defaults(p, out="RUN/diagnose (RUN_A/compare with two runs)", text="the text the run trained on")
    p.set_defaults(run=run)


def _run_text(ckpt, args):
    """(text, where it came from) for the probe of a text model: --text, else the text the run
    trained on, else -- only when the run says it trained on it -- the built-in corpus. A text
    that is not at hand is a CLIError naming what to pass, never a silent fallback."""
    from ..corpus import builtin_text
    from ..data import read_text

    if args.text:
        if not os.path.isfile(args.text):
            raise CLIError(f"--text {args.text} is not a file")
        return read_text(args.text), args.text
    extra = ckpt.meta.get("extra", {})
    if "train_args" not in extra:
        raise CLIError(f"{ckpt.path} does not record the text it was trained on; pass it with --text PATH")
    source = extra["train_args"].get("text")
    if source is None:                                       # bptt train without --text
        return builtin_text(), "the built-in corpus"
    if not os.path.isfile(source):
        raise CLIError(f"the run trained on {source}, which is not a file from here "
                       f"(sha256 {str(extra.get('text_sha256', '?'))[:12]}...); pass it with --text PATH")
    text = read_text(source)
    from .train import text_sha256                          # the checkpoint's own text: checked before use
    if text_sha256(text) != extra.get("text_sha256"):
        raise CLIError(f"{source}, the text {ckpt.path} was trained on, changed since (its SHA-256 differs "
                       f"from the one recorded); pass --text PATH for the probe")
    return text, source


def _text_probe(text, vocab, args, rng):
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


def _first_missing(path: str):
    """The outermost folder of ``path`` that does not exist yet (what a failed run must remove), or None."""
    path, missing = os.path.abspath(path), None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _check_text_view_args(args) -> None:
    if args.passage_len < 2:
        raise CLIError(f"--passage-len must be >= 2, got {args.passage_len}")
    if args.position is not None and not 0 <= args.position < args.passage_len:
        raise CLIError(f"--position must be in [0, --passage-len) = [0, {args.passage_len}), got {args.position}")


def _char_level(ckpt, vocab, what: str):
    if vocab is None or vocab.level != "char":
        raise CLIError(f"{what} needs a character-level text run; {ckpt.path} is "
                       + ("not a text model" if vocab is None else "word-level"))


def _passage(text, args):
    from ..diagnostics.textview import choose_passage
    try:
        return choose_passage(text, args.passage_len, np.random.default_rng(args.seed))
    except ValueError as error:
        raise CLIError(f"--passage-len {args.passage_len}: {error}") from None


def _compare(args) -> int:
    """bptt diagnose RUN_A RUN_B: the text views of both runs on one passage of RUN_A's text."""
    from ..io.checkpoint import load_checkpoint
    from ..diagnostics.report import compare_text_views

    if len(args.path) != 2:
        raise CLIError(f"give one run, or two to compare; got {len(args.path)}")
    _check_text_view_args(args)
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    runs, passage = [], None
    for path in args.path:
        ckpt = load_checkpoint(path)
        net = ckpt.network()
        vocab = ckpt.vocabulary()
        _char_level(ckpt, vocab, "comparing runs")
        if getattr(net, "bidirectional", False):
            raise CLIError(f"diagnose needs a unidirectional network; {ckpt.path} is bidirectional")
        if passage is None:
            passage = _passage(_run_text(ckpt, args)[0], args)
        missing = sorted(set(passage) - set(vocab.tokens))
        if missing:
            raise CLIError(f"the passage has characters {''.join(missing)!r} that {ckpt.path}'s vocabulary lacks: "
                           "the runs were trained on different texts")
        name = os.path.basename(os.path.normpath(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))))
        label = f"{name} ({net.cell}{', ' + net.nonlinearity if net.cell == 'rnn' else ''}, step {ckpt.step})"
        runs.append((net, vocab, label, ckpt))
    first = args.path[0] if os.path.isdir(args.path[0]) else os.path.dirname(os.path.abspath(args.path[0]))
    out = args.out or os.path.join(first, "compare")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file, not a folder")
    created = _first_missing(out)
    try:
        result = compare_text_views(runs, passage, out, position=args.position)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    for label, numbers in result.items():
        print(label)
        width = max(len(k) for k in numbers)
        for key, value in numbers.items():
            shown = ", ".join(f"{v:.4g}" for v in value) if isinstance(value, list) else (
                f"{value:.4g}" if isinstance(value, float) else str(value))
            print(f"  {key:<{width}}  {shown}")
    print(f"wrote {os.path.join(out, 'report.html')} and the figures in {out}")
    return 0


def run(args) -> int:
    from ..diagnostics.plots import require_matplotlib

    require_matplotlib("bptt diagnose's figures")            # before any work: nothing computed in vain
    from ..io.checkpoint import load_checkpoint
    from ..diagnostics.report import diagnose

    if len(args.path) > 1:
        return _compare(args)
    args.path = args.path[0]
    if args.text_view:
        _check_text_view_args(args)
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
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file, not a folder")
    rng = np.random.default_rng(args.seed)
    vocab = ckpt.vocabulary()
    text = source = None
    if vocab is not None:
        text, source = _run_text(ckpt, args)
        probe = _text_probe(text, vocab, args, rng)
    else:
        probe = _random_probe(net, args, rng)
    text_view = None
    if args.text_view:
        _char_level(ckpt, vocab, "--text-view")
        text_view = {"passage": _passage(text, args), "position": args.position}
    train_args = ckpt.meta.get("extra", {}).get("train_args", {})
    threshold = train_args.get("clip") if train_args.get("clip_mode") == "global-norm" else None
    from ..diagnostics import read_jsonl
    for name in ("metrics.jsonl", "diagnostics.jsonl"):    # a damaged history fails before any figure is written
        if os.path.exists(os.path.join(run_dir, name)):
            read_jsonl(os.path.join(run_dir, name))
    created = _first_missing(out)
    try:
        param = args.param or ("U" if net.cell in ("mingru", "minlstm") else "W")   # min cells have no W
        numbers = diagnose(net, probe, out, run_dir=run_dir, layer=args.layer, param=param,
                           fraction=args.fraction, clip_threshold=threshold,
                           title=f"bptt diagnose {os.path.basename(os.path.normpath(run_dir))} (step {ckpt.step})",
                           checkpoint=ckpt, vocab=vocab, text=text, text_source=source, text_view=text_view)
    except BaseException:
        if created is not None:                            # ours alone: made by this run a moment ago
            shutil.rmtree(created, ignore_errors=True)
        raise
    width = max(len(k) for k in numbers)
    for key, value in numbers.items():
        shown = ", ".join(f"{v:.4g}" for v in value) if isinstance(value, list) else (
            f"{value:.4g}" if isinstance(value, float) else str(value))
        print(f"{key:<{width}}  {shown}")
    print(f"wrote {os.path.join(out, 'report.html')} and the figures in {out}")
    return 0
