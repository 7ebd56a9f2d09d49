"""``bptt experiment``: train on a long-range task and compare with the papers' baselines.

    bptt experiment adding --cell rnn,irnn,lstm --T 100 --seeds 0,1,2 --steps 1500 --out runs/adding
    bptt experiment vanishing --out runs/vanishing --quick

Writes ``result.json`` (every curve and setting), ``results.md`` (a table) and ``curves.png``
(learning curves with the trivial baseline) to --out. ``vanishing`` runs the gradient-flow
comparison of ``bptt.experiments.vanishing`` instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..tasks import TASKS
from . import CLIError

QUICK = dict(steps=20, hidden=8, batch=8, eval_batch=32, eval_every=10)


def _int_list(name: str):
    def parse(text: str) -> list:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers, got {text!r}") from None
        if not values or min(values) < 0:
            raise argparse.ArgumentTypeError(f"{name} must be non-negative integers, got {text!r}")
        return values
    return parse


def add_parser(sub) -> None:
    from ..experiments.tasks import VARIANTS
    from . import RawEpilogHelpFormatter, add_threads_option, show_defaults

    p = sub.add_parser(
        "experiment", help="train on a long-range task (adding, copying, ...) and compare with the baseline",
        description="Train fresh networks on a long-range task for every cell, sequence length and seed; write "
                    "result.json, results.md and curves.png to --out. Defaults per task are sized for a CPU in "
                    "minutes; see docs/results.md. TASK 'vanishing' runs the gradient-flow experiment instead "
                    "and writes vanishing.json, vanishing.md and vanishing.png.",
    )
    p.add_argument("task", metavar="TASK", choices=list(TASKS) + ["vanishing"],
                   help="one of: " + ", ".join(list(TASKS) + ["vanishing"]))
    p.add_argument("--cell", default="rnn,lstm",
                   help="comma-separated variants: " + ", ".join(VARIANTS))
    p.add_argument("--T", dest="seq_lens", type=_int_list("--T"), default=None,
                   help="comma-separated sequence lengths / delays")
    p.add_argument("--seeds", type=_int_list("--seeds"), default=[0], help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=None, help="training steps per run")
    p.add_argument("--hidden", type=int, default=None, help="hidden units")
    p.add_argument("--batch", type=int, default=None, help="sequences per step")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--optimizer", choices=["sgd", "adam", "rmsprop", "adagrad"], default=None, help="optimiser")
    p.add_argument("--clip", type=float, default=None,
                   help="global-norm clipping threshold; 0 turns clipping off")
    p.add_argument("--sgd-lr", type=float, default=None,
                   help="learning rate of the rnn-sgd* variants (Pascanu et al.'s SGD comparison)")
    p.add_argument("--omega", type=float, default=None,
                   help="strength alpha of Pascanu's regulariser in rnn-sgd-clip-omega")
    p.add_argument("--eval-every", type=int, default=None, help="steps between held-out evaluations")
    p.add_argument("--eval-batch", type=int, default=None, help="held-out sequences")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="float type of the networks")
    p.add_argument("--out", default=None, help="output folder (created; files in it are replaced)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (smoke test)")
    # stopping as the papers do, and a bound on each run's time
    p.add_argument("--stop-when-solved", action="store_true",
                   help="check every --eval-every updates; stop a run once the task's criterion holds on the "
                        "held-out set and on --test-size fresh sequences; report the updates it took")
    p.add_argument("--test-size", type=int, default=None,
                   help="fresh sequences that confirm 'solved'")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="stop each run after this many seconds of training")
    add_threads_option(p)
    show_defaults(p, seq_lens="the task's", steps="the task's", hidden="the task's", batch="the task's",
                  lr="the task's", optimizer="the task's", clip="the task's", sgd_lr=0.01, omega=2.0,
                  eval_every="steps / 30", eval_batch=500, out="runs/TASK",
                  test_size="the paper's: 10000 for temporal-order, 2560 for adding-hs, else --eval-batch",
                  budget="no limit")
    p.formatter_class = RawEpilogHelpFormatter           # the papers' setups, laid out as written
    p.epilog = PAPER_SETUPS
    p.set_defaults(run=run)


PAPER_SETUPS = """\
the papers' setups (docs/results.md gives every measured run):
  rnn-sgd, rnn-sgd-clip, rnn-sgd-clip-omega   Pascanu, Mikolov & Bengio 2013, as in their code: tanh RNN,
      W sparse N(0, 0.01^2) with 15 non-zero weights per unit at spectral radius 0.95, U and V N(0, 0.01^2),
      biases 0; SGD lr 0.01 (--sgd-lr; --lr and --optimizer do not apply), batch 20 (--batch overrides);
      -clip: rescale at global norm 1 (--clip), a NaN/inf/>1e10 norm replaces dE/dW by 0.02 W;
      -omega: + their regulariser, alpha 2 (--omega)
  lstm on adding-hs, latch, two-sequence      forget-gate bias 5 (sigma(5) = 0.993; 1 elsewhere)
  lstm-input-3                                forget-gate bias 5 and input-gate bias -3 (long latches)
  --stop-when-solved                          solved = the task's criterion on the paper's test size
      (temporal-order: < 1% wrong on 10,000; adding-hs: >= 99.9% within 0.04 on 2,560)
"""


def command_line(args) -> str:
    """The exact command that reproduces this run (flags in canonical form)."""
    parts = ["bptt", "experiment", args.task, "--cell", args.cell]
    for flag, value in (("--T", args.seq_lens), ("--seeds", args.seeds)):
        if value is not None:
            parts += [flag, ",".join(str(v) for v in value)]
    for flag in ("steps", "hidden", "batch", "lr", "optimizer", "clip", "sgd_lr", "omega", "eval_every",
                 "eval_batch", "test_size", "budget"):
        value = getattr(args, flag)
        if value is not None:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    if args.dtype != "float32":
        parts += ["--dtype", args.dtype]
    if args.quick:
        parts.append("--quick")
    if args.stop_when_solved:
        parts.append("--stop-when-solved")
    return " ".join(parts + ["--out", args.out])


def _progress(cell, T, seed, step, metrics):
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    print(f"  {cell:8s} T={T:<5d} seed={seed:<3d} step {step:6d}  {shown}", file=sys.stderr, flush=True)


def run(args) -> int:
    from ..diagnostics.plots import require_matplotlib

    require_matplotlib("bptt experiment's figures")        # before minutes of training, not after
    if args.out is None:                                   # like bptt train's runs/train
        args.out = os.path.join("runs", args.task)
    if args.task == "vanishing":
        return _run_vanishing(args)
    from ..experiments.tasks import DEFAULTS, run_experiment
    cells = [c.strip() for c in args.cell.split(",") if c.strip()]
    for name in ("steps", "hidden", "batch", "eval_every", "eval_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("lr", "sgd_lr"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise CLIError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if args.omega is not None and not args.omega >= 0:
        raise CLIError(f"--omega must be >= 0, got {args.omega}")
    if args.clip is not None and args.clip < 0:
        raise CLIError(f"--clip must be >= 0 (0 = off), got {args.clip}")
    options = dict(steps=args.steps, hidden=args.hidden, batch=args.batch, lr=args.lr, optimizer=args.optimizer,
                   eval_every=args.eval_every, eval_batch=args.eval_batch, dtype=args.dtype,
                   sgd_lr=args.sgd_lr, omega=args.omega)
    if args.quick:                                         # tiny sizes, unless a flag says otherwise
        options.update({k: v for k, v in QUICK.items() if options.get(k) is None})
    if options["eval_batch"] is None:
        options["eval_batch"] = 500
    if args.clip is not None:
        options["clip"] = None if args.clip == 0 else args.clip
    if args.test_size is not None and args.test_size < 1:
        raise CLIError(f"--test-size must be >= 1, got {args.test_size}")
    if args.budget is not None and not args.budget > 0:                  # also refuses nan
        raise CLIError(f"--budget must be a number of seconds > 0, got {args.budget}")
    options.update(stop_when_solved=args.stop_when_solved, test_size=args.test_size, budget=args.budget)
    seq_lens = args.seq_lens or [DEFAULTS[args.task]["T"]]
    result = run_experiment(args.task, cells=cells, seq_lens=seq_lens, seeds=args.seeds, out_dir=args.out,
                            command=command_line(args), progress=_progress, **options)
    from ..experiments.task_report import write_table
    print(write_table(result))
    print(f"wrote {args.out}/result.json, {args.out}/results.md, {args.out}/curves.png")
    return 0


def _run_vanishing(args) -> int:
    try:
        from ..experiments.vanishing import run_vanishing
    except ImportError as error:
        raise CLIError("the vanishing experiment is not available in this installation "
                       f"(bptt.experiments.vanishing: {error})") from None
    seq_len = args.seq_lens[0] if args.seq_lens else None
    seeds = args.seeds
    kwargs = {"out_dir": args.out, "seeds": seeds, "quick": args.quick}
    if args.steps is not None:
        kwargs["steps"] = args.steps
    if seq_len is not None:
        kwargs["seq_len"] = seq_len
    run_vanishing(**kwargs)
    print(f"wrote {args.out}/vanishing.json, {args.out}/vanishing.md, {args.out}/vanishing.png")
    return 0
