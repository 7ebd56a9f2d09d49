"""``bptt train``: a character- or word-level language model on a text file (or the built-in
corpus), checkpointed into ``--out DIR``; ``--resume DIR --steps N`` continues for N more
steps and gives bit-identical parameters to one uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import sys

from .. import kernels, threads
from ..training.clip import CLIP_MODES, make_clipper
from ..network import CELLS, Network
from ..training.optim import OPTIMIZERS, make_optimizer
from ..training.schedules import SCHEDULES, make_schedule
from ..training.truncation import FullBPTT, make_truncation
from . import CLIError

DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.1, "rmsprop": 2e-3, "adam": 2e-3}


def path_note(net) -> str:
    """What the first line must add to kernels.describe(): under recurrent dropout or zoneout the
    layers train on their reference loops (the fast paths know no masks)."""
    if net.recurrent_dropout > 0 or net.zoneout > 0:
        return " (training on the layers' reference loops: recurrent dropout / zoneout)"
    return ""
# Flags that define the model and the data: fixed by the checkpoint when resuming (refused if changed).
MODEL_FLAGS = ("text", "level", "max_vocab", "hidden", "layers", "cell", "nonlinearity", "dropout", "layer_norm",
               "proj_size", "weight_dropout", "recurrent_dropout", "zoneout", "seq_len",
               "batch", "seed", "dtype", "optimizer", "momentum", "nesterov", "weight_decay", "truncation", "k",
               "k1", "k2", "val_fraction")
# Flags that may change on --resume (printed as "changed on resume: lr 0.002 -> 0.0001"); all are saved
# in the checkpoint, so one not given on --resume keeps the value the run had.
RESUME_FLAGS = ("lr", "schedule", "lr_every", "lr_gamma", "warmup", "clip_mode", "clip", "clip_loss", "eval_every",
                "checkpoint_every", "log_every", "record_every", "patience")
SCHEDULE_FLAGS = ("lr", "schedule", "lr_every", "lr_gamma", "warmup")
DEFAULTS = {"level": "char", "max_vocab": None, "hidden": 128, "layers": 1, "cell": "rnn", "nonlinearity": "tanh",
            "dropout": 0.0, "layer_norm": False, "proj_size": None, "weight_dropout": 0.0,
            "recurrent_dropout": 0.0, "zoneout": 0.0, "seq_len": 64, "batch": 32, "seed": 0, "dtype": "float32", "optimizer": "adam",
            "lr": None, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant",
            "lr_every": 1000, "lr_gamma": 0.5, "warmup": 0, "clip_mode": "global-norm", "clip": 5.0,
            "clip_loss": "mean", "truncation": "chunked", "k": None, "k1": None, "k2": None, "val_fraction": 0.05,
            "eval_every": 200, "checkpoint_every": 500, "log_every": 10, "record_every": 0, "patience": 0,
            "text": None,
            "schedule_start": 0}      # not a flag: the step a schedule changed on --resume counts from


def add_parser(sub) -> None:
    from . import add_threads_option, show_defaults

    p = sub.add_parser(
        "train", help="train a character/word language model on a text file (or the built-in corpus)",
        description="Train a recurrent language model by truncated BPTT and checkpoint it into --out DIR "
                    "(checkpoint.npz, best.npz: the lowest validation loss, metrics.jsonl). Without --text it "
                    "trains on the built-in corpus (Python's documentation topics). `bptt train --resume DIR "
                    "--steps N` continues for N more steps, bit-identical to an uninterrupted run; the learning "
                    "rate, schedule, clipping and the every-N flags may change there, the model and data may not.",
        argument_default=None)
    d = p.add_argument_group("data")
    d.add_argument("--text", metavar="PATH", help="UTF-8 text file (its absolute path is stored for --resume, "
                                                  "evaluate and diagnose)")
    d.add_argument("--level", choices=("char", "word"), help="tokens: characters or words")
    d.add_argument("--max-vocab", type=int, help="word level: keep the N most frequent tokens, the rest -> <unk>")
    d.add_argument("--val-fraction", type=float, help="last fraction of the text held out for validation")
    d.add_argument("--seq-len", type=int, help="time steps T per batch (BPTT length)")
    d.add_argument("--batch", type=int, help="parallel streams B")
    m = p.add_argument_group("model")
    m.add_argument("--cell", choices=CELLS, help="recurrent cell")
    m.add_argument("--hidden", type=int, help="hidden size H")
    m.add_argument("--layers", type=int, help="stacked layers")
    m.add_argument("--nonlinearity", choices=("tanh", "relu"), help="rnn cell's f")
    m.add_argument("--dropout", type=float, help="dropout between stacked layers")
    m.add_argument("--layer-norm", action="store_true", help="lstm cell: layer-normalised (Ba et al. 2016)")
    m.add_argument("--proj-size", type=int, help="lstm cell: project h to this size (torch's proj_size)")
    m.add_argument("--weight-dropout", type=float, help="DropConnect on the recurrent W, one mask per update")
    m.add_argument("--recurrent-dropout", type=float,
                   help="variational dropout on h_(t-1) before W, one mask per sequence (Gal & Ghahramani 2016)")
    m.add_argument("--zoneout", type=float,
                   help="zoneout: each unit keeps its previous value with this probability, per step "
                        "(Krueger et al. 2017; its expectation at evaluation)")
    m.add_argument("--dtype", choices=("float32", "float64"), help="float32 is about twice as fast")
    m.add_argument("--seed", type=int, help="seed for the weights (runs repeat)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=OPTIMIZERS, help="optimiser (each matches torch.optim step for step)")
    o.add_argument("--lr", type=float, help="learning rate")
    o.add_argument("--momentum", type=float, help="sgd/rmsprop momentum")
    o.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    o.add_argument("--weight-decay", type=float, help="L2 weight decay")
    o.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule; halve-on-rise halves it when the validation loss rises")
    o.add_argument("--lr-every", type=int, help="step schedule: decay every N steps")
    o.add_argument("--lr-gamma", type=float, help="step/exponential schedule factor")
    o.add_argument("--warmup", type=int, help="linear warm-up steps")
    o.add_argument("--clip-mode", choices=CLIP_MODES, help="gradient clipping")
    o.add_argument("--clip", type=float,
                   help="clipping threshold (a norm, or a value for --clip-mode value) on the gradient of the loss "
                        "--clip-loss names")
    o.add_argument("--clip-loss", choices=("mean", "sum"),
                   help="which loss's gradient --clip bounds: mean = the loss per token (char-rnn's and PyTorch's "
                        "'clip 5'; the same as clipping dE/dtheta at --clip times the T steps of the update), "
                        "sum = bptt's E summed over the T steps (its norm grows with T)")
    o.add_argument("--truncation", choices=("chunked", "tbptt", "window"),
                   help="chunked: chunks of --k steps, state carried; tbptt: Williams & Peng "
                        "(--k1, --k2); window: every E_t backpropagates at most --k steps")
    o.add_argument("--k", type=int, help="chunk length (chunked) or window (window)")
    o.add_argument("--k1", type=int, help="tbptt: update every k1 steps")
    o.add_argument("--k2", type=int, help="tbptt: backpropagate k2 >= k1 steps")
    r = p.add_argument_group("run")
    r.add_argument("--out", metavar="DIR", help="output directory")
    r.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    r.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    r.add_argument("--steps", type=int, help="steps (batches) to train in this call")
    r.add_argument("--epochs", type=float, help="passes over the training text (instead of --steps)")
    r.add_argument("--time", type=float, metavar="SECONDS", help="stop after this many seconds")
    r.add_argument("--eval-every", type=int, help="validate every N steps (0: only at the end)")
    r.add_argument("--patience", type=int, metavar="N",
                   help="stop early after N validations in a row without a new lowest validation loss (0: never)")
    r.add_argument("--checkpoint-every", type=int, metavar="N", help="checkpoint every N steps (and at the end)")
    r.add_argument("--log-every", type=int, metavar="N", help="write metrics.jsonl every N steps")
    r.add_argument("--record-every", type=int, metavar="N",
                   help="every N updates append gradient-flow diagnostics (per-parameter norms, update ratios, "
                        "clipping, spectral radius, lag profile) to DIR/diagnostics.jsonl; read by bptt diagnose "
                        "(0: off)")
    r.add_argument("--nonfinite", choices=("stop", "skip", "rollback"), default="stop",
                   help="a NaN/inf loss or gradient (caught before the update): stop; skip the update and warn; or "
                        "roll back to the last checkpoint's state with the learning rate scaled by --rollback-factor "
                        "(bptt.training.numerics)")
    r.add_argument("--rollback-factor", type=float, default=0.5, help="--nonfinite rollback: learning-rate factor")
    r.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    r.add_argument("--mpi", action="store_true",
                   help="data-parallel over MPI (automatic under mpiexec/mpirun/srun; see README 'Scaling out')")
    add_threads_option(r)
    show_defaults(p, **{k: v for k, v in DEFAULTS.items() if v is not None},
                  text="the built-in corpus", lr="adam/rmsprop 2e-3, sgd/adagrad 0.1", k="--seq-len",
                  k1="--k2 // 2", k2="--seq-len", out="runs/train")
    p.set_defaults(run=run, threads_option=False)      # train chooses its threads once the model is built


# ------------------------------------------------------------------ settings
def resolve_settings(args) -> tuple[dict, object]:
    """The run's settings (dict of MODEL_FLAGS + RESUME_FLAGS) and the checkpoint when resuming."""
    names = MODEL_FLAGS + RESUME_FLAGS
    given = {name: getattr(args, name) for name in names
             if getattr(args, name) is not None and getattr(args, name) is not False}
    if given.get("text") is not None:
        # stored absolute, so that --resume, evaluate and diagnose from another directory find it
        given["text"] = os.path.abspath(given["text"])
    if args.resume is None:
        settings = dict(DEFAULTS)
        settings.update(given)
        if settings["lr"] is None:
            settings["lr"] = DEFAULT_LR[settings["optimizer"]]
        settings["changed_on_resume"] = []
        return settings, None
    from ..io.checkpoint import load_checkpoint

    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise CLIError(f"--out cannot be used with --resume: the run continues in {args.resume}")
    ckpt = load_checkpoint(args.resume)
    saved = ckpt.meta.get("extra", {}).get("train_args")
    if saved is None or ckpt.trainer_state() is None:
        raise CLIError(f"{args.resume} holds a model but no training state: it was not written by bptt train")
    saved = dict(saved)
    saved.setdefault("clip_loss", "sum")      # runs from before --clip-loss clipped the summed loss's gradient
    for name in ("checkpoint_every", "log_every", "record_every", "patience", "layer_norm", "proj_size",
                 "weight_dropout", "recurrent_dropout", "zoneout"):
        saved.setdefault(name, DEFAULTS[name])          # runs from before these flags existed
    fixed = [name for name in given if name in MODEL_FLAGS and name != "text" and given[name] != saved.get(name)]
    if fixed:
        flags = ", ".join("--" + n.replace("_", "-") for n in fixed)
        raise CLIError(f"{flags} cannot change on --resume (the checkpoint fixes the model and the data); "
                       f"drop {flags}")
    settings = dict(DEFAULTS)
    settings.update(saved)
    if "text" in given:
        settings["text"] = given["text"]
    changed = [name for name in RESUME_FLAGS if name in given and given[name] != saved.get(name)]
    for name in changed:
        settings[name] = given[name]
    if any(name in SCHEDULE_FLAGS for name in changed):
        settings["schedule_start"] = ckpt.step     # the new schedule counts from here (bptt.training.schedules)
    settings["changed_on_resume"] = [(name, saved.get(name), given[name]) for name in changed]
    return settings, ckpt


MAX_COUNT = 2**63 - 1        # steps, seeds, intervals: what a checkpoint's int64-sized fields hold
MAX_SIZE = 2**31 - 1         # sizes (hidden, layers, seq-len, batch, windows, vocabulary)


def check_integer_ranges(s: dict, args) -> None:
    """Integer-valued flags are integers in range (argparse accepts 10**400): one line naming the flag."""
    sizes = ("hidden", "layers", "seq_len", "batch", "k", "k1", "k2", "max_vocab", "lr_every")
    counts = ("seed", "warmup", "eval_every")
    values = [(f, s.get(f), MAX_SIZE) for f in sizes] + [(f, s.get(f), MAX_COUNT) for f in counts]
    values += [(f, getattr(args, f, None), MAX_COUNT) for f in ("steps", "log_every", "checkpoint_every",
                                                                  "record_every")]
    for flag, value, top in values:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise CLIError(f"--{flag.replace('_', '-')} must be an integer, got {value!r}")
        if value > top:
            raise CLIError(f"--{flag.replace('_', '-')} must be <= {top:,}, got {value:,}")


def epochs_to_steps(epochs: float, batches_per_epoch: int) -> int:
    """--epochs E -> steps, refusing a count no run could reach (1e308 epochs) instead of overflowing."""
    steps = epochs * batches_per_epoch
    if not steps <= MAX_COUNT:
        raise CLIError(f"--epochs {epochs:g} is {steps:.3g} steps of {batches_per_epoch} batches each, more than "
                       f"the {MAX_COUNT:,} a run can count; use a smaller --epochs")
    return max(1, int(round(steps)))


def describe_changes(changes) -> str:
    """``lr 0.002 -> 0.0001, clip 5 -> 1``"""
    def show(value):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return ", ".join(f"{name.replace('_', '-')} {show(old)} -> {show(new)}" for name, old, new in changes)


def check_settings(s: dict, args) -> None:
    check_integer_ranges(s, args)
    def positive(flag, value):
        if value is not None and value < 1:
            raise CLIError(f"--{flag} must be >= 1, got {value}")
    for flag in ("hidden", "layers", "seq_len", "batch", "lr_every", "k", "k1", "k2", "max_vocab"):
        positive(flag.replace("_", "-"), s.get(flag))
    if s.get("warmup") is not None and s["warmup"] < 0:
        raise CLIError(f"--warmup must be >= 0, got {s['warmup']}")
    if args.steps is not None and args.steps < 0:
        raise CLIError(f"--steps must be >= 0, got {args.steps}")
    for flag in ("log_every", "checkpoint_every"):
        positive(flag.replace("_", "-"), s[flag])
    for flag in ("eval_every", "record_every", "patience"):
        if s[flag] < 0:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 0, got {s[flag]}")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    if not s["lr"] > 0:
        raise CLIError(f"--lr must be > 0, got {s['lr']}")
    if not 0 <= s["val_fraction"] < 1:
        raise CLIError(f"--val-fraction must be in [0, 1), got {s['val_fraction']}")
    if s["seed"] < 0:
        raise CLIError(f"--seed must be >= 0, got {s['seed']}")
    if args.epochs is not None and not 0 < args.epochs < float("inf"):
        raise CLIError(f"--epochs must be a finite number > 0, got {args.epochs}")
    if args.time is not None and not 0 < args.time < float("inf"):
        raise CLIError(f"--time must be a finite number > 0, got {args.time}")
    if not s["lr"] < float("inf"):
        raise CLIError(f"--lr must be finite, got {s['lr']}")
    for flag in ("k", "k1", "k2"):       # a truncation window longer than the sequence it cuts
        if s.get(flag) is not None and s[flag] > s["seq_len"]:
            raise CLIError(f"--{flag} {s[flag]} is longer than --seq-len {s['seq_len']}: a batch has only "
                           f"{s['seq_len']} steps to backpropagate through; use --{flag} <= {s['seq_len']}")
    factor = getattr(args, "rollback_factor", 0.5)
    if not 0 < factor < 1:
        raise CLIError(f"--rollback-factor must be in (0, 1), got {factor}")
    if args.steps is not None and args.epochs is not None:
        raise CLIError("give --steps or --epochs, not both")
    if args.steps is None and args.epochs is None and args.time is None:
        raise CLIError("say how long to train: --steps N, --epochs E or --time SECONDS")
    if s["clip_mode"] != "none" and not s["clip"] > 0:
        raise CLIError(f"--clip must be > 0, got {s['clip']}")


def load_text(path, what: str = "--text"):
    """(text, source). ``what`` names where the path came from (the flag, or the checkpoint) in errors."""
    from ..corpus import builtin_text
    from ..io.files import read_text_file        # a regular file, size-bounded, UTF-8, not binary
    from ..training.memory import text_byte_limit

    if path is None:
        return builtin_text(), "<built-in corpus>"
    if os.path.isdir(path):
        raise CLIError(f"{what} {path} is a directory, not a text file")
    return read_text_file(path, text_byte_limit(), what=what), path


def run_needs_of(settings: dict, vocab, text: str) -> dict:
    """bptt.training.memory.run_needs for these flags: weights, init draws, gradients, slots, activations, text."""
    from ..training.memory import run_needs

    return run_needs(cell=settings["cell"], vocab=len(vocab), hidden=settings["hidden"], layers=settings["layers"],
                     # a batch or window longer than the text is refused later as "too short", not here
                     seq_len=min(settings["seq_len"], len(text)), batch=min(settings["batch"], len(text)),
                     dtype=settings["dtype"],
                     optimizer=settings["optimizer"], momentum=settings["momentum"], chars=len(text),
                     level=settings["level"])


DIVERGENCE_FACTOR = 10.0     # a loss per step 10x its running median, 3 updates in a row: diverged (numerics.py)


def sound_to_save(trainer, model_loss, dist, out: str) -> bool:
    """False (with a warning) when the weights look diverged: the last good checkpoint is kept."""
    from ..training.numerics import unsound_to_save

    why = unsound_to_save(trainer, model_loss)
    if why is not None and dist.is_root:
        print(f"bptt train: warning: not checkpointing step {trainer.step}: {why}; the model may be diverging, "
              f"so the last checkpoint in {out} is kept", file=sys.stderr, flush=True)
    return why is None


def prepare_run_directory(out: str, ckpt, dist) -> None:
    """Rank 0, before anything is written: files the run appends to or replaces must be regular files
    (no symlink, FIFO or hard link planted there); a fresh run (--overwrite checked by then) first clears
    the old run's files, so a kill before its first checkpoint leaves nothing of the old run to resume."""
    from ..io.files import check_run_files, clear_previous_run

    if dist.is_root:
        if ckpt is None:
            clear_previous_run(out)
        check_run_files(out)


def run_fingerprint(settings: dict, args, sha: str, ckpt) -> dict:
    """What every MPI rank must share: the settings (not the text's path: nodes may mount it elsewhere),
    the flags that decide when collectives happen, the text's SHA-256 and the step resumed from."""
    run = {k: v for k, v in settings.items() if k != "text"}
    for flag in ("steps", "epochs", "time", "checkpoint_every", "log_every", "record_every", "nonfinite",
                 "rollback_factor"):
        run[flag] = getattr(args, flag, None)
    run["text (its SHA-256)"] = sha                     # keys with a space are not flags (distributed.agree)
    run["checkpoint step resumed from"] = None if ckpt is None else ckpt.step
    return run


def load_run_text(settings: dict, args, ckpt):
    """(text, source, SHA-256). On --resume without --text the text is the one the checkpoint names:
    it must still be the text trained on (its SHA-256 is checked before it is used)."""
    from_checkpoint = ckpt is not None and args.text is None
    what = f"the training text named in {ckpt.path}," if from_checkpoint else "--text"
    text, source = load_text(settings["text"], what=what)
    sha = text_sha256(text)
    if from_checkpoint and settings["text"] is not None and ckpt.meta["extra"].get("text_sha256") != sha:
        raise CLIError(f"{source}, the text {ckpt.path} was trained on, changed since (its SHA-256 differs from "
                       f"the one recorded); to continue on it as it is now, pass --text {source}")
    return text, source, sha


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_optimizer(s: dict, params: dict):
    hyper = {"lr": s["lr"], "weight_decay": s["weight_decay"]}
    if s["optimizer"] == "sgd":
        hyper.update(momentum=s["momentum"], nesterov=s["nesterov"])
    elif s["optimizer"] == "rmsprop":
        hyper.update(momentum=s["momentum"])
    elif s["momentum"] or s["nesterov"]:
        raise CLIError(f"--momentum/--nesterov apply to sgd and rmsprop, not {s['optimizer']}")
    return make_optimizer(s["optimizer"], params, **hyper)


def build_truncation(s: dict):
    mode, T = s["truncation"], s["seq_len"]
    if mode == "chunked":
        k = s["k"] or T
        return FullBPTT() if k >= T else make_truncation("chunked", k=k)
    if mode == "tbptt":
        k2 = s["k2"] or T
        k1 = s["k1"] or max(1, k2 // 2)
        if k2 < k1:
            raise CLIError(f"--k2 must be >= --k1, got k1={k1}, k2={k2}")
        return make_truncation("tbptt", k1=k1, k2=k2)
    if s["k"] is None:
        raise CLIError("--truncation window needs --k (how many steps each E_t backpropagates)")
    return make_truncation("window", k=s["k"])


# ----------------------------------------------------------------------- run
def run(args) -> int:
    from ..training.distributed import Distributed
    from ..io.runlock import lock_run

    # Under mpiexec every rank runs this; an error on any rank must end all of them (MPI_Abort)
    # instead of leaving the others waiting in an Allreduce. One process: nothing changes.
    dist = Distributed.from_environment(force=args.mpi)
    with dist.abort_on_error("train"):
        # One writer per run directory (bptt.io.runlock): a second bptt train on it is refused, not interleaved.
        with lock_run(args.resume or args.out or os.path.join("runs", "train"), enabled=dist.is_root):
            return train(args, dist)


def train(args, dist) -> int:
    from ..io.checkpoint import save_checkpoint
    from ..data import TextStreams, Vocabulary, eval_loss_per_token, split_ids
    from ..training.data_parallel import DataParallel
    from ..training.interrupt import StopOnSignal
    from ..training.numerics import NonFiniteGuard, loss_per_step
    from ..training.train import Progress, Trainer
    from ..textcodes import build_char_vocabulary, encode_compact
    from ..training.memory import refuse_if_too_big

    settings, ckpt = resolve_settings(args)
    changes = settings.pop("changed_on_resume")
    check_settings(settings, args)
    out = args.resume or args.out or os.path.join("runs", "train")
    if ckpt is None and os.path.exists(os.path.join(out, "checkpoint.npz")):
        if not args.overwrite:
            raise CLIError(f"{out} already holds a run: continue it with --resume {out}, or start afresh "
                           f"with --overwrite")
    text, source, sha = load_run_text(settings, args, ckpt)
    dist.agree(run_fingerprint(settings, args, sha, ckpt))   # MPI: every rank runs rank 0's settings, or all stop
    if ckpt is not None:
        vocab = ckpt.vocabulary()
        if ckpt.meta["extra"].get("text_sha256") != sha and dist.is_root:
            print(f"bptt train: note: {source} differs from the text this run started on; continuing on it",
                  file=sys.stderr)
        net = ckpt.network()
    else:
        if settings["level"] == "word":
            vocab = Vocabulary.build(text, "word", max_size=settings["max_vocab"])
        else:
            if settings["max_vocab"] is not None:
                raise CLIError("--max-vocab applies to --level word only")
            vocab = build_char_vocabulary(text)            # numpy, no list of characters (bptt.textcodes)
        refuse_if_too_big(run_needs_of(settings, vocab, text), "this run")   # before any large allocation
        net = Network(len(vocab), settings["hidden"], len(vocab), num_layers=settings["layers"],
                      cell=settings["cell"], nonlinearity=settings["nonlinearity"], dropout=settings["dropout"],
                      layer_norm=settings["layer_norm"], proj_size=settings["proj_size"],
                      weight_dropout=settings["weight_dropout"], recurrent_dropout=settings["recurrent_dropout"],
                      zoneout=settings["zoneout"],
                      seed=settings["seed"], dtype=settings["dtype"])
    choose_threads(args, net, settings, dist)
    unit = "char" if vocab.level == "char" else "token"      # word level counts whitespace tokens too
    ids = encode_compact(vocab, text)                     # uint8/uint16 ids (bptt.textcodes)
    train_ids, val_ids = split_ids(ids, settings["val_fraction"])
    data = TextStreams(train_ids, settings["batch"], settings["seq_len"])
    schedule = make_schedule(settings["schedule"], settings["lr"], every=settings["lr_every"],
                             gamma=settings["lr_gamma"], warmup=settings["warmup"], start=settings["schedule_start"])
    os.makedirs(out, exist_ok=True)
    prepare_run_directory(out, ckpt, dist)        # planted links/FIFOs refused; --overwrite clears first (bptt.io.files)
    # MPI: each rank trains on its share of the --batch streams; every update is summed over the
    # ranks before clipping (bptt.training.data_parallel); rank 0 alone writes metrics, checkpoints, progress.
    parallel = DataParallel(dist)
    parallel.attach(net)                  # dropout masks drawn for the whole batch, cut per rank
    truncation = build_truncation(settings)
    trainer = Trainer(net, build_optimizer(settings, net.params),
                      clip=make_clipper(settings["clip_mode"], settings["clip"],
                                        per_token=settings["clip_loss"] == "mean"),
                      truncation=parallel.wrap_truncation(truncation) if dist.active else truncation,
                      schedule=schedule,
                      metrics_path=os.path.join(out, "metrics.jsonl") if dist.is_root else None,
                      log_every=settings["log_every"], seed=settings["seed"],
                      numerics=NonFiniteGuard(args.nonfinite, lr_factor=args.rollback_factor,
                                              divergence_factor=DIVERGENCE_FACTOR,
                                              snapshot_every=settings["checkpoint_every"],
                                              warn=None if not dist.is_root
                                              else lambda message: print(f"bptt train: warning: {message}",
                                                                         file=sys.stderr, flush=True)))
    if ckpt is not None:
        state = ckpt.trainer_state()
        if any(name in SCHEDULE_FLAGS for name, _, _ in changes):
            state = dict(state, schedule=None)       # a new schedule starts fresh at this step (Offset)
        parallel.load_trainer_state(trainer, state)  # the carried state cut to this rank
        if changes and dist.is_root:
            print(f"bptt train: changed on resume: {describe_changes(changes)}", file=sys.stderr)
    if settings["record_every"] and dist.is_root:
        from ..diagnostics import GradientRecorder        # a fixed probe: one validation window of <= 50 steps
        probe = (val_ids if len(val_ids) > 2 else train_ids)[:min(settings["seq_len"], 50) + 1]
        trainer.callbacks.append(GradientRecorder(os.path.join(out, "diagnostics.jsonl"),
                                                  every=settings["record_every"],
                                                  probe=(probe[:-1, None], probe[1:, None])))
    feed = data
    if dist.active:
        parallel.set_time_limit(args.time)                             # stop together, not rank by rank
        feed = parallel.shard_data(data, trainer)                      # this rank's columns of each batch

    steps = args.steps
    if args.epochs is not None:
        steps = epochs_to_steps(args.epochs, data.batches_per_epoch)
    has_val = len(val_ids) >= 2

    def evaluate(model):
        return eval_loss_per_token(model, val_ids)
    evaluate = parallel.evaluate_on_root(evaluate)     # MPI: rank 0 evaluates, every rank gets its number

    extra = {"train_args": settings, "text_source": source, "text_sha256": sha, "mpi_ranks": dist.size}
    best = BestKeeper(ckpt)

    # the weights about to be saved, on the batch just trained: rank 0 computes, every rank gets the number
    model_loss = parallel.evaluate_on_root(lambda model: loss_per_step(model, data.batch(max(trainer.step - 1, 0))))

    def save(tr, metrics, name=None):
        if not sound_to_save(tr, model_loss, dist, out):   # a diverging model never replaces the last good one
            return
        view = parallel.prepare_checkpoint(tr)        # every rank: identical-parameters check, gather state
        if dist.is_root:
            save_checkpoint(out if name is None else os.path.join(out, name), net, trainer=view, vocab=vocab,
                            metrics=metrics, extra=dict(extra, best=best.state()))

    def on_step(tr, summary):
        metrics = {"train_loss_per_token": summary.loss_per_token, **summary.extra}
        if "val_loss" in summary.extra and best.improves(summary.extra["val_loss"], tr.step):
            save(tr, metrics, BEST)                   # same atomic checkpoint writer, its own file
        if tr.step % settings["checkpoint_every"] == 0:
            save(tr, metrics)

    progress = None
    if not args.no_progress and dist.is_root:
        ranks = f" on {dist.size} MPI ranks" if dist.active else ""
        print(f"bptt train{ranks}: {net.cell} {net.num_layers}x{net.hidden_size} ({net.num_parameters:,} parameters, "
              f"{net.dtype.name}), vocabulary {len(vocab)} {unit}s, {len(train_ids):,} training tokens from "
              f"{source}; step {trainer.step} -> {stopping_rule(trainer.step, steps, args, settings)}; "
              f"{kernels.describe()}{path_note(net)}; {threads.describe()}; output {out}", file=sys.stderr)
        progress = Progress(steps, every=max(1, settings["log_every"] * 5), time_limit=args.time)
    # Ctrl-C/SIGTERM: finish the step, save below, exit 130/143 (bptt.training.interrupt). Under MPI a signal on
    # any rank is a stop vote carried in the gradient buffer, so every rank stops after the same step
    # (bptt.training.data_parallel); a second Ctrl-C to mpiexec aborts the job at once.
    interrupted = StopOnSignal(announce="bptt train" if dist.is_root else None)
    parallel.stop_signal = interrupted
    with interrupted:
        summaries = trainer.fit(feed, steps, evaluate=evaluate if has_val else None,
                                eval_every=settings["eval_every"], on_step=on_step,
                                time_limit=None if dist.active else args.time, progress=progress,
                                stop=None if dist.active else interrupted,
                                patience=settings["patience"] or None)
    metrics = {}
    if summaries:
        metrics["train_loss_per_token"] = summaries[-1].loss_per_token
    if has_val:
        metrics["val_loss"] = evaluate(net)      # reported only: not fed to the schedule
        if best.improves(metrics["val_loss"], trainer.step):
            save(trainer, metrics, BEST)
    save(trainer, metrics)
    line = f"step {trainer.step}"
    if summaries:
        line += f"  train loss {summaries[-1].loss_per_token:.4f}"
    if has_val:
        line += f"  validation loss {metrics['val_loss']:.4f} nats/{unit}"
    if trainer.clip is not None and trainer.clip_stats.calls:
        c = trainer.clip_stats.summary()
        line += f"  clipping fired {c['clip_fired']}/{c['clip_calls']} updates"
    if dist.is_root:
        print(line + f"  -> {out}", file=sys.stderr)
        if best.step is not None:
            print(f"bptt train: best validation loss {best.loss:.4f} nats/{unit} at step {best.step} -> "
                  f"{os.path.join(out, BEST)}" + (f"; stopped early: {settings['patience']} validations without "
                                                  f"a lower loss (--patience)" if trainer.stopped_early else ""),
                  file=sys.stderr)
    if interrupted.signal is not None:
        if dist.is_root:
            print(f"bptt train: stopped by {interrupted.signal.name} at step {trainer.step}, checkpoint saved; "
                  f"continue with: bptt train --resume {out} --steps N", file=sys.stderr)
        return interrupted.exit_code
    return 0


# ------------------------------------------------------ threads, stopping rule, best checkpoint
BEST = "best.npz"


def choose_threads(args, net, settings, dist) -> None:
    """--threads N, else bptt.threads' default for this model's per-step GEMM (one per MPI rank: the
    ranks already share the cores)."""
    if args.threads is not None:
        threads.set_threads(args.threads)
    elif dist.active:
        threads.set_threads(1, reason="auto: one per MPI rank")
    else:
        batch = max(1, settings["batch"] // max(1, dist.size))
        threads.set_threads(None, cell=net.cell, hidden=net.hidden_size, batch=batch)


def stopping_rule(step: int, steps, args, settings) -> str:
    """What ends this call, for the header: ``200 (--steps 200)``, ``until 60 s (--time 60)``, ..."""
    rules = []
    if steps is not None:
        rules.append(f"{step + steps} (--epochs {args.epochs:g})" if args.epochs is not None
                     else f"{step + steps} (--steps {steps})")
    if args.time is not None:
        rules.append(f"{'' if rules else 'until '}{args.time:g} s (--time {args.time:g})")
    if settings["patience"]:
        rules.append(f"{settings['patience']} validations without a lower loss (--patience)")
    if len(rules) == 1:
        return rules[0]
    return ", or ".join(rules) + ", whichever comes first"


class BestKeeper:
    """The lowest validation loss so far and its step (kept in every checkpoint's ``extra.best``,
    so that a resumed run only replaces best.npz with a better model)."""

    def __init__(self, ckpt=None):
        saved = (ckpt.meta.get("extra", {}).get("best") if ckpt is not None else None) or {}
        self.loss, self.step = saved.get("val_loss"), saved.get("step")

    def improves(self, loss: float, step: int) -> bool:
        if not loss == loss or (self.loss is not None and loss >= self.loss):     # NaN never improves
            return False
        self.loss, self.step = float(loss), int(step)
        return True

    def state(self) -> dict:
        return {"val_loss": self.loss, "step": self.step}
