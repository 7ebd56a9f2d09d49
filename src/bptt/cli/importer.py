"""``bptt import model.safetensors --cell lstm --out RUN``: a torch (or exported bptt) model into a bptt
run that ``bptt diagnose``, ``sample`` and ``train --resume`` read. torch is never imported."""

from __future__ import annotations

import json
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="make a bptt run from a safetensors state dict (torch's names), without torch",
                       description="Build a bptt run (RUN/checkpoint.npz) from the weights of a torch.nn.RNN/LSTM/GRU "
                                   "(+ an nn.Linear saved as head.weight/head.bias, + an nn.Embedding as "
                                   "embedding.weight) saved with safetensors.torch.save_file (or by bptt export "
                                   "--safetensors). Sizes, layers, direction and biases are read from the shapes. "
                                   "The run then works with bptt diagnose, bptt sample (give --vocab) and bptt "
                                   "train --resume RUN --text FILE. Needs bptt[interop].")
    p.add_argument("file", metavar="MODEL.safetensors", help="the state dict")
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"),
                   help="the torch module's cell (required unless the file was written by bptt export)")
    p.add_argument("--hidden", type=int, help="hidden size (checked against the shapes; inferred when absent)")
    p.add_argument("--layers", type=int, help="layers (checked against the names; inferred when absent)")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"), help="rnn: the module's nonlinearity")
    p.add_argument("--dtype", choices=("float32", "float64"), help="the run's dtype")
    p.add_argument("--vocab", metavar="FILE",
                   help="vocabulary: a JSON list of tokens in id order (char level when all are one character), "
                        "or a bptt vocabulary object {\"level\": ..., \"tokens\": [...]}; needed by bptt sample "
                        "and train --resume")
    p.add_argument("--text", metavar="FILE",
                   help="the text the model reads (recorded as the run's text: bptt diagnose probes it, bptt train "
                        "--resume trains on it)")
    t = p.add_argument_group("training settings recorded for bptt train --resume (fixed there)")
    t.add_argument("--seq-len", type=int, default=64, help="time steps T per batch")
    t.add_argument("--batch", type=int, default=32, help="parallel streams B")
    t.add_argument("--optimizer", choices=("sgd", "adagrad", "rmsprop", "adam"), default="adam", help="optimiser")
    t.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--out", metavar="RUN", required=True, help="the run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    from . import show_defaults
    show_defaults(p, nonlinearity="tanh", dtype="the tensors'", lr="adam/rmsprop 2e-3, sgd/adagrad 0.1")
    p.set_defaults(run=run)


def read_vocabulary(path: str):
    from ..data import Vocabulary
    from . import CLIError

    if not os.path.isfile(path):
        raise CLIError(f"--vocab {path}: no such file")
    if os.path.getsize(path) > 1 << 28:
        raise CLIError(f"--vocab {path} is larger than 256 MiB")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CLIError(f"--vocab {path} is not a JSON file ({error})") from None
    try:
        if isinstance(data, list):
            if not all(isinstance(t, str) for t in data):
                raise ValueError("every token must be a string")
            level = "char" if all(len(t) == 1 for t in data) else "word"
            return Vocabulary(data, level)
        return Vocabulary.from_json(data)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--vocab {path} is not a vocabulary ({error})") from None


def training_settings(net, vocab, args) -> dict:
    """What bptt train stores as train_args, for a run that starts from imported weights."""
    from .train import DEFAULT_LR, DEFAULTS

    settings = dict(DEFAULTS)
    settings.update(hidden=net.hidden_size, layers=net.num_layers, cell=net.cell, nonlinearity=net.nonlinearity,
                    dropout=net.dropout, dtype=net.dtype.name, level=vocab.level if vocab is not None else "char",
                    seq_len=args.seq_len, batch=args.batch, optimizer=args.optimizer)
    settings["lr"] = args.lr if args.lr is not None else DEFAULT_LR[settings["optimizer"]]
    return settings


def run(args) -> int:
    from ..io.checkpoint import FILENAME, save_checkpoint
    from ..io.importer import load_safetensors
    from ..training.clip import make_clipper
    from ..training.schedules import make_schedule
    from ..training.train import Trainer
    from . import CLIError
    from .train import build_optimizer, build_truncation

    if args.lr is not None and not 0 < args.lr < float("inf"):
        raise CLIError(f"--lr must be a finite number > 0, got {args.lr}")
    for flag in ("hidden", "layers", "seq_len", "batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    target = os.path.join(args.out, FILENAME)
    if os.path.exists(target) and not args.overwrite:
        raise CLIError(f"{args.out} already holds a run: choose another --out, or replace it with --overwrite")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} is not a directory")
    if args.text is not None and not os.path.isfile(args.text):
        raise CLIError(f"--text {args.text} is not a file")
    vocab = read_vocabulary(args.vocab) if args.vocab is not None else None
    config = {"cell": args.cell, "hidden_size": args.hidden, "num_layers": args.layers,
              "nonlinearity": args.nonlinearity, "dtype": args.dtype}
    net, saved_vocab = load_safetensors(args.file, config)
    vocab = vocab if vocab is not None else saved_vocab
    if vocab is not None:
        if net.embedding is None and net.input_size != len(vocab):
            raise CLIError(f"--vocab has {len(vocab)} tokens but {args.file}'s input size is {net.input_size} "
                           f"(token ids index the columns of weight_ih_l0)")
        if net.output_size is not None and net.output_size != len(vocab):
            raise CLIError(f"--vocab has {len(vocab)} tokens but {args.file}'s head has {net.output_size} outputs")
    settings = training_settings(net, vocab, args)
    text_sha = None
    if args.text is not None:
        from ..data import read_text

        if vocab is None:
            raise CLIError("--text needs --vocab (the token ids the model was trained with)")
        from .train import text_sha256

        text = read_text(args.text)
        text_sha = text_sha256(text)
        try:
            vocab.encode(text)
        except (KeyError, ValueError) as error:
            raise CLIError(f"--text {args.text} does not fit --vocab ({error})") from None
        settings["text"] = os.path.abspath(args.text)
    trainer = Trainer(net, build_optimizer(settings, net.params),
                      clip=make_clipper(settings["clip_mode"], settings["clip"]),
                      truncation=build_truncation(settings), seed=settings["seed"],
                      schedule=make_schedule(settings["schedule"], settings["lr"], every=settings["lr_every"],
                                             gamma=settings["lr_gamma"], warmup=settings["warmup"]))
    extra = {"train_args": settings, "text_source": settings["text"], "text_sha256": text_sha,
             "imported_from": os.path.abspath(args.file), "mpi_ranks": 1}
    save_checkpoint(args.out, net, trainer=trainer, vocab=vocab, extra=extra)
    print(f"bptt import: {net.cell} {net.num_layers}x{net.hidden_size}{' bidirectional' if net.bidirectional else ''} "
          f"({net.num_parameters:,} parameters, {net.dtype.name}) from {args.file} -> {target}"
          + ("" if vocab is not None else "; no vocabulary (give --vocab for bptt sample / train --resume)"),
          file=sys.stderr)
    return 0
