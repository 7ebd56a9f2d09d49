"""``bptt evaluate DIR``: a checkpoint's loss on text, in nats (and bits) per token."""

from __future__ import annotations

import math


def add_parser(sub) -> None:
    from . import add_threads_option

    p = sub.add_parser("evaluate", help="loss of a checkpoint on its validation text or another text",
                       description="Mean cross-entropy (nats and bits per token, and perplexity) of the model in "
                                   "DIR predicting each next token. By default on the validation part of the text "
                                   "it was trained on; --text PATH evaluates on a whole other file.")
    p.add_argument("checkpoint", metavar="DIR", help="run directory (or a .npz checkpoint file)")
    p.add_argument("--best", action="store_true",
                   help="evaluate DIR/best.npz (the lowest validation loss of the run) instead of DIR/checkpoint.npz")
    p.add_argument("--text", metavar="PATH", default=None, help="evaluate on this whole file instead")
    p.add_argument("--split", choices=("val", "train", "all"), default="val",
                   help="without --text: which part of the training text")
    p.add_argument("--batch", type=int, default=16, help="parallel streams")
    p.add_argument("--seq-len", type=int, default=256, help="steps per forward call (state carried)")
    add_threads_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..io.checkpoint import load_checkpoint
    from ..data import eval_loss_per_token, split_ids
    from . import CLIError
    from ..textcodes import encode_compact
    from .. import threads
    from .sample import checkpoint_file
    from .train import load_text, text_sha256

    if args.batch < 1 or args.seq_len < 1:
        raise CLIError(f"--batch and --seq-len must be >= 1, got {args.batch} and {args.seq_len}")
    ckpt = load_checkpoint(checkpoint_file(args.checkpoint, args.best))
    vocab = ckpt.vocabulary()
    if vocab is None:
        raise CLIError(f"{ckpt.path} has no vocabulary: it is not a language model from bptt train")
    net = ckpt.network()
    if args.threads is None:             # the default again, now that the model's size is known
        threads.set_threads(None, cell=net.cell, hidden=net.hidden_size, batch=args.batch)
    extra = ckpt.meta.get("extra", {})
    if args.text is not None:
        text, source = load_text(args.text)
        ids = encode_compact(vocab, text)                 # compact ids, no list of characters (bptt.textcodes)
        part = "all"
    else:
        settings = extra.get("train_args")
        if settings is None:
            raise CLIError(f"{ckpt.path} does not say what text it was trained on; pass --text PATH")
        text, source = load_text(settings.get("text"), what=f"the training text named in {ckpt.path},")
        if text_sha256(text) != extra.get("text_sha256"):
            raise CLIError(f"{source} changed since training (its SHA-256 differs); pass --text PATH explicitly")
        all_ids = encode_compact(vocab, text)
        train_ids, val_ids = split_ids(all_ids, settings.get("val_fraction", 0.05))
        part = args.split
        ids = {"val": val_ids, "train": train_ids, "all": all_ids}[part]
        if len(ids) < 2:
            raise CLIError(f"the {part} split of {source} is empty (val_fraction {settings.get('val_fraction')})")
    loss = eval_loss_per_token(net, ids, batch=args.batch, seq_len=args.seq_len)
    unit = "char" if vocab.level == "char" else "token"      # word level counts whitespace tokens too
    print(f"{loss:.4f} nats/{unit}  {loss / math.log(2):.4f} bits/{unit}  perplexity {math.exp(loss):.3f}  "
          f"({len(ids) - 1:,} {unit}s, {part} of {source}, step {ckpt.step})")
    return 0
