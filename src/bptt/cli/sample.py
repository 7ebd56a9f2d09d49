"""``bptt sample DIR``: text from a trained model, to stdout."""

from __future__ import annotations

import os
import sys


MAX_LENGTH = 100_000_000        # tokens per call (about a day of sampling on one core)


def add_parser(sub) -> None:
    from . import add_threads_option

    p = sub.add_parser("sample", help="generate text from a checkpoint (to stdout)",
                       description="Generate text from the model checkpointed in DIR by `bptt train`: "
                                   "softmax(z / temperature), optionally only the top-k tokens, or greedy argmax. "
                                   "The same --seed gives the same text.")
    p.add_argument("checkpoint", metavar="DIR", help="run directory (or a .npz checkpoint file)")
    p.add_argument("--best", action="store_true",
                   help="use DIR/best.npz (the lowest validation loss of the run) instead of DIR/checkpoint.npz")
    p.add_argument("--length", type=int, default=500, help="tokens to generate")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--temperature", type=float, default=1.0, help="< 1: safer, > 1: more varied")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--prime", default="", help="text to start from (must use the model's vocabulary)")
    add_threads_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..io.checkpoint import load_checkpoint
    from ..sample import iter_sample_text
    from . import CLIError

    if args.length < 1:
        raise CLIError(f"--length must be >= 1, got {args.length}")
    if args.length > MAX_LENGTH:                      # streamed, so memory is not the limit: time is
        raise CLIError(f"--length must be <= {MAX_LENGTH:,} tokens, got {args.length:,}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if not args.temperature > 0:
        raise CLIError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1, got {args.top_k}")
    ckpt = load_checkpoint(checkpoint_file(args.checkpoint, args.best))
    vocab = ckpt.vocabulary()
    if vocab is None:
        raise CLIError(f"{ckpt.path} has no vocabulary: it is not a language model from bptt train")
    net = ckpt.network()
    try:
        pieces = iter_sample_text(net, vocab, args.length, prime=args.prime, temperature=args.temperature,
                                  top_k=args.top_k, greedy=args.greedy, seed=args.seed)
    except ValueError as error:
        if args.prime and "vocabulary" in str(error):
            raise CLIError(f"--prime: {error}") from None
        raise
    last = ""
    try:
        for piece in pieces:                          # streamed: written as generated, never held whole
            sys.stdout.write(piece)
            sys.stdout.flush()
            last = piece or last
        if not last.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
    except BrokenPipeError:                           # `bptt sample ... | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def checkpoint_file(path: str, best: bool) -> str:
    """DIR or a .npz file; with --best, DIR/best.npz (refused, in one line, when the run has none)."""
    if not best:
        return path
    from . import CLIError
    from .train import BEST

    if path.endswith(".npz"):
        raise CLIError(f"--best takes a run directory, not a checkpoint file ({path})")
    target = os.path.join(path, BEST)
    if not os.path.isfile(target):
        raise CLIError(f"no {BEST} in {path}: it is written when bptt train validates (--eval-every, and at the "
                       f"end when the text has a validation part); drop --best to use checkpoint.npz")
    return target
