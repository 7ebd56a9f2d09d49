"""safetensors out (bptt.export.to_safetensors, bptt export --safetensors) and in (bptt.from_state_dict,
bptt import) under PyTorch's parameter names; the import side runs without torch."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors")

from bptt import Network, from_state_dict, relative_error  # noqa: E402
from bptt.export import read_safetensors, to_safetensors  # noqa: E402
from bptt.interop.names import infer_config, to_torch_state  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _bptt(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bptt", *args], capture_output=True, text=True, cwd=cwd, env=ENV)


def perturbed(net, seed=0):
    rng = np.random.default_rng(seed)
    for p in net.params.values():
        p += rng.normal(0, 0.2, p.shape).astype(p.dtype)
    return net


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_round_trip_through_a_file_is_exact(tmp_path, cell, bidirectional):
    net = perturbed(Network(6, 5, 4, num_layers=2, cell=cell, bidirectional=bidirectional, nonlinearity="tanh"))
    path = to_safetensors(net, tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(path)
    assert json.loads(meta["bptt_config"]) == net.config
    suffix = ["", "_reverse"] if bidirectional else [""]
    want = {f"{w}_l{k}{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for k in (0, 1) for s in suffix}
    assert set(tensors) == want | {"head.weight", "head.bias"}
    back = from_state_dict(tensors, {"cell": cell})
    assert back.config["hidden_size"] == 5 and back.num_layers == 2 and back.bidirectional == bidirectional
    for name, p in net.params.items():
        np.testing.assert_array_equal(back.params[name], p)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_torch_load_state_dict_accepts_the_file(tmp_path, cell):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    net = perturbed(Network(6, 5, 4, num_layers=2, cell=cell, bidirectional=True), seed=1)
    state = load_file(str(to_safetensors(net, tmp_path / "m.safetensors")))
    module = getattr(torch.nn, cell.upper())(6, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    head = torch.nn.Linear(10, 4, dtype=torch.float64)
    module.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})      # strict
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    x = np.random.default_rng(2).normal(size=(7, 3, 6))
    with torch.no_grad():
        z = head(module(torch.from_numpy(x))[0]).numpy()
    assert relative_error(z, net.forward(x).outputs) <= 1e-12


TRAIN_TORCH = textwrap.dedent("""
    import sys, numpy as np, torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    V, H, T, B = 9, 6, 7, 3
    lstm = torch.nn.LSTM(V, H, num_layers=2, dtype=torch.float64)
    head = torch.nn.Linear(H, V, dtype=torch.float64)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=0.05)
    rng = np.random.default_rng(0)
    def loss_of(ids, targets):
        x = torch.nn.functional.one_hot(torch.from_numpy(ids), V).double()
        z = head(lstm(x)[0])
        return torch.nn.functional.cross_entropy(z.reshape(-1, V), torch.from_numpy(targets).reshape(-1),
                                                 reduction="sum") / B, z
    for _ in range(5):                                     # a few real steps: weights away from the init
        ids = rng.integers(0, V, (T, B)); opt.zero_grad(); loss_of(ids, rng.integers(0, V, (T, B)))[0].backward(); opt.step()
    state = {**lstm.state_dict(), **{"head." + k: v for k, v in head.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, sys.argv[1])
    ids, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    opt.zero_grad()
    loss, z = loss_of(ids, targets)
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in lstm.named_parameters()}
    grads.update({"head." + n: p.grad.numpy() for n, p in head.named_parameters()})
    np.savez(sys.argv[2], ids=ids, targets=targets, loss=loss.item(), logits=z.detach().numpy(),
             **{"grad/" + k: v for k, v in grads.items()})
""")

IMPORT_NO_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None                            # any import of torch fails: bptt must not need it
    import numpy as np, bptt
    from bptt.export import read_safetensors
    from bptt.interop.names import torch_names
    tensors, _ = read_safetensors(sys.argv[1])
    net = bptt.from_state_dict(tensors, {"cell": "lstm"})
    ref = np.load(sys.argv[2])
    loss, grads = net.loss_and_grads(ref["ids"], ref["targets"])
    logits = net.forward(ref["ids"]).outputs
    named = torch_names(net, grads)
    np.savez(sys.argv[3], loss=loss, logits=logits, dtype=str(net.dtype), **{"grad/" + k: v for k, v in named.items()})
    assert "torch" not in sys.modules or sys.modules["torch"] is None
""")


def test_torch_trained_lstm_imports_without_torch_and_matches(tmp_path):
    pytest.importorskip("torch")
    model, ref, mine = tmp_path / "lstm.safetensors", tmp_path / "ref.npz", tmp_path / "mine.npz"
    r = subprocess.run([sys.executable, "-c", TRAIN_TORCH, str(model), str(ref)], capture_output=True, text=True,
                       env=ENV)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", IMPORT_NO_TORCH, str(model), str(ref), str(mine)],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    ref, mine = np.load(ref), np.load(mine)
    assert str(mine["dtype"]) == "float64"
    assert relative_error(mine["logits"], ref["logits"]) <= 1e-9
    assert abs(float(mine["loss"]) - float(ref["loss"])) <= 1e-9 * abs(float(ref["loss"]))
    names = sorted(k for k in ref.files if k.startswith("grad/"))
    assert names == sorted(k for k in mine.files if k.startswith("grad/")) and len(names) == 10
    for name in names:
        assert relative_error(mine[name], ref[name]) <= 1e-9, name


def test_cli_import_then_diagnose_sample_and_resume(tmp_path):
    pytest.importorskip("matplotlib")
    from safetensors.numpy import save_file

    text = "abcab cabba acbca " * 40
    (tmp_path / "t.txt").write_text(text)
    tokens = sorted(set(text))
    (tmp_path / "vocab.json").write_text(json.dumps(tokens))
    net = perturbed(Network(len(tokens), 8, len(tokens), cell="lstm", dtype="float32"), seed=4)
    save_file({k: np.ascontiguousarray(v) for k, v in to_torch_state(net).items()}, str(tmp_path / "m.safetensors"))
    r = _bptt("import", "m.safetensors", "--cell", "lstm", "--vocab", "vocab.json", "--text", "t.txt",
              "--seq-len", "16", "--batch", "4", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from bptt.io.checkpoint import load_checkpoint

    imported = load_checkpoint(tmp_path / "run").network()
    for name, p in net.params.items():
        np.testing.assert_array_equal(imported.params[name], p)
    r = _bptt("sample", "run", "--length", "30", "--seed", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) >= 20 and set(r.stdout.strip()) <= set(tokens)
    r = _bptt("diagnose", "run", "--seq-len", "10", "--batch", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "diagnose" / "report.html").is_file()
    r = _bptt("train", "--resume", "run", "--steps", "2", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and "differs" not in r.stderr, r.stderr
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 2
    assert any(not np.array_equal(ckpt.params[n], p) for n, p in net.params.items())    # it trained


def test_cli_export_safetensors_then_import(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 20)
    r = _bptt("train", "--text", str(text), "--cell", "gru", "--hidden", "6", "--steps", "2", "--seq-len", "8",
              "--batch", "2", "--no-progress", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _bptt("export", "run", "--safetensors", "m.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _bptt("import", "m.safetensors", "--out", "back", cwd=tmp_path)      # cell and vocabulary from metadata
    assert r.returncode == 0, r.stderr
    from bptt.io.checkpoint import load_checkpoint

    a, b = load_checkpoint(tmp_path / "run"), load_checkpoint(tmp_path / "back")
    assert a.vocabulary() == b.vocabulary()
    for name, p in a.params.items():
        np.testing.assert_array_equal(b.params[name], p)


def test_infer_config_reads_sizes_and_refuses_what_fits_nothing():
    net = Network(6, 5, 4, num_layers=3, cell="gru", bidirectional=True, bias=False)
    shapes = {k: v.shape for k, v in to_torch_state(net).items()}
    config = infer_config(shapes, "gru")
    assert (config["input_size"], config["hidden_size"], config["num_layers"], config["bidirectional"],
            config["bias"], config["output_size"]) == (6, 5, 3, True, False, 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        infer_config({"weight_ih_l0": (15, 6), "weight_hh_l0": (15, 5)}, "lstm")
    with pytest.raises(ValueError, match="weight_hh_l0 has shape"):
        infer_config({"weight_ih_l0": (20, 6), "weight_hh_l0": (20, 4)}, "lstm")
    with pytest.raises(ValueError, match="'rnn.weight_ih_l0' is not a name"):
        infer_config({"rnn.weight_ih_l0": (5, 6)}, "rnn")
    with pytest.raises(ValueError, match="layers \\[0, 2\\]"):
        infer_config({"weight_ih_l0": (5, 6), "weight_hh_l0": (5, 5), "weight_ih_l2": (5, 5),
                      "weight_hh_l2": (5, 5)}, "rnn")
    with pytest.raises(ValueError, match="hidden_size=7 was given but the weights say hidden_size=5"):
        from_state_dict(to_torch_state(net), {"cell": "gru", "hidden_size": 7})


def test_bad_files_one_line_naming_the_file_nothing_written(tmp_path):
    pytest.importorskip("onnx")
    from safetensors.numpy import save_file

    from bptt.export import to_onnx

    good = Network(6, 5, 4, cell="lstm", dtype="float32")
    to_onnx(good, tmp_path / "model.onnx")
    to_safetensors(good, tmp_path / "good.safetensors")
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) - 40])
    (tmp_path / "header.safetensors").write_bytes(data[:20])
    (tmp_path / "text.safetensors").write_text("not a safetensors file at all\n")
    save_file({"weight_ih_l0": np.zeros((20, 6), np.float32), "weight_hh_l0": np.zeros((20, 3), np.float32)},
              str(tmp_path / "shapes.safetensors"))
    save_file({"lstm.weight_ih_l0": np.zeros((20, 6), np.float32)}, str(tmp_path / "names.safetensors"))
    save_file({"weight_ih_l0": np.zeros((20, 6), np.int32), "weight_hh_l0": np.zeros((20, 5), np.int32)},
              str(tmp_path / "ints.safetensors"))
    before = sorted(os.listdir(tmp_path))
    cases = [("model.onnx", "not a"), ("truncated.safetensors", "truncated"), ("header.safetensors", "truncated"),
             ("text.safetensors", "not a safetensors file"), ("shapes.safetensors", "weight_hh_l0 has shape"),
             ("names.safetensors", "'lstm.weight_ih_l0' is not a name"), ("ints.safetensors", "float tensor"),
             ("missing.safetensors", "no such file")]
    for name, words in cases:
        r = _bptt("import", name, "--cell", "lstm", "--out", "run", cwd=tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and words in lines[0], (name, r.stderr)
    r = _bptt("import", "good.safetensors", "--hidden", "9", "--out", "run", cwd=tmp_path)
    assert r.returncode == 2 and "hidden_size=9" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _bptt("export", "model.onnx", "--onnx", "again.onnx", cwd=tmp_path)       # an ONNX file is no checkpoint
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == before                                  # nothing written


def test_refuses_a_cell_torch_does_not_have(tmp_path):
    with pytest.raises(ValueError, match="mingru"):
        to_safetensors(Network(4, 3, 2, cell="mingru"), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="cho"):
        to_safetensors(Network(4, 3, 2, cell="gru", gru_variant="cho"), tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def test_without_safetensors_one_line_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['safetensors'] = None\n"
            "import bptt, bptt.export\n"
            "from bptt.cli import main; sys.exit(main(sys.argv[1:]))")
    (tmp_path / "m.safetensors").write_bytes(b"\0" * 16)
    r = subprocess.run([sys.executable, "-c", code, "import", "m.safetensors", "--cell", "rnn", "--out", "run"],
                       cwd=tmp_path, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "bptt[interop]" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_non_finite_weights_named_with_the_file(tmp_path):
    from safetensors.numpy import save_file

    state = to_torch_state(Network(4, 3, 2, cell="rnn"))
    state["weight_hh_l0"][1, 2] = np.nan
    save_file(state, str(tmp_path / "nan.safetensors"))
    r = _bptt("import", "nan.safetensors", "--cell", "rnn", "--out", "run", cwd=tmp_path)
    assert r.returncode == 2 and "nan.safetensors" in r.stderr and "non-finite" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
