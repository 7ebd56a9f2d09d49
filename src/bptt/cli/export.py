"""``bptt export RUN --onnx model.onnx --safetensors model.safetensors``: a trained model out of bptt."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a run's model as ONNX and/or safetensors (PyTorch's names)",
                       description="Write the model checkpointed in RUN (a run directory or a .npz checkpoint) "
                                   "as an ONNX graph checked by onnx.checker (inputs: token ids (T, B) or features "
                                   "(T, B, I); outputs: logits (T, B, O), h_n (, c_n); T and B dynamic; needs "
                                   "bptt[onnx]) and/or as safetensors weights under PyTorch's parameter names "
                                   "(weight_ih_l0, ..., head.weight; needs bptt[interop]). Files are written "
                                   "atomically: nothing is left half-written on an error.")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or .npz checkpoint file")
    p.add_argument("--onnx", metavar="PATH", help="write an ONNX model here")
    p.add_argument("--safetensors", metavar="PATH", help="write the weights (torch names) here")
    p.add_argument("--inputs", choices=("auto", "ids", "features"), default="auto",
                   help="ONNX input: int64 token ids (T, B) or float32 features (T, B, I); auto: ids when the run "
                        "has a vocabulary or an embedding")
    p.add_argument("--with-state", action="store_true", help="ONNX: add the inputs h0 (and c0), (L*D, B, H)")
    p.add_argument("--with-lengths", action="store_true",
                   help="ONNX: add the input lengths (B,) (packed sequences; logits are zero at padded steps)")
    p.set_defaults(run=run)


def _check_target(path: str, flag: str) -> None:
    from . import CLIError

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"{flag} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a directory")


def run(args) -> int:
    from ..io.checkpoint import load_checkpoint
    from ..io.export import build_onnx, exportable, to_safetensors, write_bytes
    from . import CLIError

    if args.onnx is None and args.safetensors is None:
        raise CLIError("nothing to do: give --onnx PATH and/or --safetensors PATH")
    if args.onnx is None and (args.with_state or args.with_lengths or args.inputs != "auto"):
        raise CLIError("--inputs, --with-state and --with-lengths apply to --onnx only")
    for flag, path in (("--onnx", args.onnx), ("--safetensors", args.safetensors)):
        if path is not None:
            _check_target(path, flag)
    ckpt = load_checkpoint(args.checkpoint)
    net = ckpt.network().eval()                 # inference: no dropout
    vocab = ckpt.vocabulary()
    model = None
    if args.onnx is not None:                   # everything is checked before anything is written
        model = build_onnx(net, vocab=vocab, inputs=args.inputs, initial_state=args.with_state,
                           lengths=args.with_lengths)
    if args.safetensors is not None:
        exportable(net, "safetensors", readouts=("all", "last", "mean"))
    if model is not None:
        write_bytes(args.onnx, model.SerializeToString())
        print(f"bptt export: {net.cell} {net.num_layers}x{net.hidden_size} -> {args.onnx} (ONNX opset "
              f"{model.opset_import[0].version})", file=sys.stderr)
    if args.safetensors is not None:
        to_safetensors(net, args.safetensors, vocab=vocab)
        print(f"bptt export: {net.cell} {net.num_layers}x{net.hidden_size} -> {args.safetensors} "
              f"(safetensors, PyTorch's names)", file=sys.stderr)
    return 0
