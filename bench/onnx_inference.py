"""Inference (forward only): bptt vs the same model exported to ONNX and run in onnxruntime vs torch,
interleaved in one process, one thread each (BLAS, onnxruntime intra/inter-op, torch), float32.

    python bench/onnx_inference.py [--cells rnn lstm gru] [--hidden 128] [--seq-len 64] [--repeats 31]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/onnx_inference.py   # the machine's own BLAS tuning

Model: a character language model, token ids (T, B) in, logits (T, B, V) out, V = 65. Each row
checks that the three agree (float32, relative error <= 1e-5) before timing. Prints medians in ms and
the ratios onnxruntime / bptt and torch / bptt (below 1: faster than bptt), for B = 1 and B = 64.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

from bptt.benchmark import harness


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], choices=("rnn", "lstm", "gru"))
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--budget", type=float, default=15.0, help="seconds per row before fewer repeats (min 3)")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()
    pinned = harness.pin_threads(1)  # noqa: F841  (keeps the thread limits alive)
    import onnxruntime as ort

    from bptt import Network, relative_error
    from bptt.export import to_onnx

    torch = None
    if not args.no_torch:
        try:
            import torch
            from bptt import to_torch
        except ImportError:
            torch = None
    env = harness.environment()
    blas = env["blas"] if isinstance(env["blas"], str) else ", ".join(
        f"{b['internal_api']} {b['version']} {b['architecture']} threads={b['num_threads']}" for b in env["blas"])
    print(f"float32, 1 thread each; numpy {env['numpy']} ({blas}); onnxruntime {ort.__version__} "
          f"(intra_op=1, inter_op=1, sequential); torch {env['torch']}; bptt {env['bptt_path']}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print(f"V={args.vocab}, H={args.hidden}, L={args.layers}, T={args.seq_len}; medians of interleaved calls")
    print(f"{'cell':5s} {'B':>4s} {'bptt ms':>9s} {'ort ms':>9s} {'torch ms':>9s} {'ort/bptt':>9s} "
          f"{'torch/bptt':>10s}  repeats")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    folder = tempfile.mkdtemp(prefix="bptt-onnx-bench-")
    for cell in args.cells:
        net = Network(args.vocab, args.hidden, args.vocab, num_layers=args.layers, cell=cell, dtype="float32").eval()
        path = to_onnx(net, os.path.join(folder, f"{cell}.onnx"), inputs="ids")
        sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        module = head = None
        if torch is not None:
            module, head = to_torch(net)
            module.eval()
        for B in args.batches:
            ids = np.random.default_rng(0).integers(0, args.vocab, (args.seq_len, B))
            ids64 = ids.astype(np.int64)
            steps = {"bptt": lambda: net.forward(ids).outputs,
                     "ort": lambda: sess.run(["logits"], {"inputs": ids64})[0]}
            if torch is not None:
                onehot = torch.nn.functional.one_hot(torch.from_numpy(ids64), args.vocab).float()

                def torch_forward():
                    with torch.inference_mode():        # the same one-hot float input bptt reads as a lookup
                        return head(module(onehot)[0])
                steps["torch"] = lambda: torch_forward().numpy()
            want = steps["bptt"]()
            for name, fn in steps.items():
                err = relative_error(fn(), want)
                assert err <= 1e-5, (cell, B, name, err)
            t = harness.interleaved(steps, args.repeats, warmup=3, budget_s=args.budget)
            a = t["bptt"]["median_s"]
            o = t["ort"]["median_s"]
            tt = t["torch"]["median_s"] if "torch" in t else float("nan")
            print(f"{cell:5s} {B:4d} {a * 1e3:9.3f} {o * 1e3:9.3f} {tt * 1e3:9.3f} {o / a:9.2f} {tt / a:10.2f}  "
                  f"{t['bptt']['repeats']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
