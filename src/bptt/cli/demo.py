"""``bptt demo``: train a small model on the built-in corpus for about a minute, then sample."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train on the built-in corpus for about a minute, then sample",
                       description="`bptt train` on the built-in corpus (Python's documentation topics) with a "
                                   "progress bar and a falling loss, then `bptt sample` from the result.")
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument("--seconds", type=float, default=60.0, help="training time")
    p.add_argument("--length", type=int, default=600, help="characters to sample")
    p.add_argument("--threads", type=int, metavar="N", help="BLAS threads for training (as bptt train --threads)")
    p.set_defaults(run=run)


def run(args) -> int:
    from . import main

    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    code = main(["train", "--out", args.out, "--overwrite", "--time", str(args.seconds),
                 "--hidden", "256", "--seq-len", "64", "--batch", "32", "--eval-every", "100"] + threads)
    if code:
        return code
    print(f"\n--- sample (bptt sample {args.out} --length {args.length} --temperature 0.8) ---")
    return main(["sample", args.out, "--length", str(args.length), "--temperature", "0.8"])
