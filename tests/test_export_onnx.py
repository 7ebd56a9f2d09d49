"""ONNX export (bptt.export.to_onnx, bptt export --onnx) run in onnxruntime against bptt's forward."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from bptt import Network, relative_error  # noqa: E402
from bptt.export import build_onnx, to_onnx  # noqa: E402

TOL = 1e-5            # float32, relative to the largest entry (bptt.relative_error)
CELLS = [("rnn", "torch", "tanh"), ("rnn", "torch", "relu"), ("lstm", "torch", "tanh"),
         ("gru", "torch", "tanh"), ("gru", "cho", "tanh")]


def make_net(cell, variant, nonlinearity, layers, bidirectional, vocab=7, hidden=5, out=6, seed=3, **kw):
    net = Network(vocab, hidden, out, num_layers=layers, cell=cell, bidirectional=bidirectional,
                  gru_variant=variant, nonlinearity=nonlinearity, dtype="float32", seed=seed, **kw)
    rng = np.random.default_rng(seed + 100)
    for p in net.params.values():                 # away from the init: every bias and block matters
        p += rng.normal(0, 0.3, p.shape).astype(p.dtype)
    return net.eval()


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_both(net, sess, kind, T, B, rng, lengths=None, with_state=True):
    x = rng.integers(0, net.input_size, (T, B)) if kind == "ids" else \
        rng.normal(size=(T, B, net.input_size)).astype(np.float32)
    rows = net.num_layers * net.num_directions
    h0 = rng.normal(size=(rows, B, net.hidden_size)).astype(np.float32)
    c0 = rng.normal(size=(rows, B, net.hidden_size)).astype(np.float32)
    state = (h0, c0) if net.cell == "lstm" else h0
    fwd = net.forward(x, state if with_state else None, lengths=lengths)
    feed = {"inputs": x.astype(np.int64) if kind == "ids" else x}
    if with_state:
        feed["h0"] = h0
        if net.cell == "lstm":
            feed["c0"] = c0
    if lengths is not None:
        feed["lengths"] = np.asarray(lengths, np.int64)
    got = sess.run(None, feed)
    want = [fwd.outputs] + (list(fwd.final_state) if net.cell == "lstm" else [fwd.final_state])
    return got, want


@pytest.mark.parametrize("cell,variant,nonlinearity", CELLS)
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_onnxruntime_matches_forward_with_lengths(tmp_path, cell, variant, nonlinearity, layers, bidirectional):
    net = make_net(cell, variant, nonlinearity, layers, bidirectional)
    rng = np.random.default_rng(layers * 10 + bidirectional)
    for kind in ("ids", "features"):
        path = to_onnx(net, tmp_path / f"{kind}.onnx", inputs=kind, initial_state=True, lengths=True)
        onnx.checker.check_model(onnx.load(path), full_check=True)
        sess = session(path)
        for T, B in [(1, 1), (6, 4), (11, 3)]:
            lengths = rng.integers(1, T + 1, B)
            lengths[0] = T                                   # the longest one fixes T in bptt
            got, want = run_both(net, sess, kind, T, B, rng, lengths)
            names = ["logits", "h_n", "c_n"]
            for name, g, w in zip(names, got, want):
                assert g.shape == w.shape, (name, g.shape, w.shape)
                assert relative_error(g, w) <= TOL, (kind, T, B, name, relative_error(g, w))
            assert np.all(got[0][np.arange(T)[:, None] >= lengths[None, :]] == 0)   # padded steps


@pytest.mark.parametrize("cell,variant", [("lstm", "torch"), ("gru", "torch"), ("gru", "cho"), ("rnn", "torch")])
def test_wide_vocabulary_gathers_columns_of_U_and_no_state_inputs(tmp_path, cell, variant):
    """A vocabulary wider than the gates takes the gathered-columns path; without h0/lengths the graph
    has only ``inputs``, and the states start at zero."""
    net = make_net(cell, variant, "tanh", 2, True, vocab=90, hidden=4)
    path = to_onnx(net, tmp_path / "m.onnx", inputs="ids")
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert "U_columns" in {t.name for t in model.graph.initializer}
    sess = session(path)
    rng = np.random.default_rng(5)
    for T, B in [(3, 1), (9, 64)]:
        got, want = run_both(net, sess, "ids", T, B, rng, with_state=False)
        for g, w in zip(got, want):
            assert relative_error(g, w) <= TOL


def test_embedding_tied_no_bias_and_no_readout(tmp_path):
    rng = np.random.default_rng(0)
    cases = [dict(embedding_size=10, tie_weights=True, cell="lstm", bidirectional=True, hidden=5, out=7),
             dict(embedding_size=3, cell="gru", bias=False, hidden=5, out=6),
             dict(cell="rnn", out=None, hidden=5)]
    for i, case in enumerate(cases):
        cell = case.pop("cell")
        bidirectional = case.pop("bidirectional", False)
        net = make_net(cell, "torch", "tanh", 2, bidirectional, vocab=7, **case)
        sess = session(to_onnx(net, tmp_path / f"{i}.onnx", inputs="ids", lengths=True, initial_state=True))
        got, want = run_both(net, sess, "ids", 5, 3, rng, lengths=[5, 2, 4])
        for g, w in zip(got, want):
            assert g.shape == w.shape and relative_error(g, w) <= TOL, (i, relative_error(g, w))


def test_metadata_dynamic_axes_and_checker(tmp_path):
    from bptt.data import Vocabulary

    vocab = Vocabulary(list("abcdefg"))
    net = make_net("lstm", "torch", "tanh", 1, False)
    model = build_onnx(net, vocab=vocab)
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["bptt_config"]) == net.config
    assert json.loads(props["vocabulary"])["tokens"] == list("abcdefg")
    assert props["inputs"] == "ids"                       # a vocabulary means token ids
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["T", "B"]
    out = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out == ["T", "B", 6]
    assert [o.name for o in model.graph.output] == ["logits", "h_n", "c_n"]


@pytest.mark.parametrize("kw,words", [(dict(cell="mingru"), "mingru"), (dict(cell="minlstm"), "minlstm"),
                                      (dict(readout="last"), "'last'"), (dict(readout="mean"), "'mean'")])
def test_refused_with_a_line_naming_what(tmp_path, kw, words):
    net = Network(4, 3, 2, dtype="float32", **kw)
    target = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match=words) as info:
        to_onnx(net, target)
    assert "\n" not in str(info.value)
    assert not target.exists() and os.listdir(tmp_path) == []


def test_features_refused_for_an_embedding():
    net = Network(5, 3, 5, embedding_size=4, dtype="float32")
    with pytest.raises(ValueError, match="embedding"):
        build_onnx(net, inputs="features")


def _bptt(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "bptt", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    text = folder / "t.txt"
    text.write_text("hello world, the quick brown fox. " * 30)
    r = _bptt("train", "--text", str(text), "--cell", "lstm", "--hidden", "8", "--layers", "2", "--steps", "3",
              "--seq-len", "8", "--batch", "4", "--no-progress", "--out", str(folder / "run"), cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "run"


def test_cli_export_onnx_runs_in_onnxruntime(run_dir, tmp_path):
    from bptt.io.checkpoint import load_checkpoint

    target = tmp_path / "model.onnx"
    r = _bptt("export", str(run_dir), "--onnx", str(target), "--with-lengths", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ckpt = load_checkpoint(run_dir)
    net = ckpt.network().eval()
    props = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert json.loads(props["vocabulary"]) == ckpt.vocabulary().to_json()
    ids = ckpt.vocabulary().encode("the quick fox")[:, None].repeat(2, axis=1)     # (T, 2)
    lengths = np.array([len(ids), 4])
    logits, h_n, c_n = session(target).run(None, {"inputs": ids.astype(np.int64), "lengths": lengths})
    fwd = net.forward(ids, lengths=lengths)
    assert relative_error(logits, fwd.outputs) <= TOL
    assert relative_error(h_n, fwd.final_state[0]) <= TOL and relative_error(c_n, fwd.final_state[1]) <= TOL


def test_cli_export_bad_input_one_line_nothing_written(run_dir, tmp_path):
    cases = [(["export", str(tmp_path / "nope"), "--onnx", "m.onnx"], "no checkpoint"),
             (["export", str(run_dir)], "nothing to do"),
             (["export", str(run_dir), "--onnx", str(tmp_path / "missing" / "m.onnx")], "does not exist"),
             (["export", str(run_dir), "--safetensors", "m.st", "--with-state"], "--onnx only")]
    for args, words in cases:
        r = _bptt(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []


def test_readme_commands_parse():
    """The README's "Moving models in and out" commands use flags the CLI has."""
    import re

    from bptt.cli import build_parser

    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8").read()
    section = readme.split("## Moving models in and out", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^bptt (.+?)(?:\s+#.*)?$", section, re.M)
    assert [c.split()[0] for c in commands] == ["export", "export", "import"]
    for command in commands:
        build_parser().parse_args(command.split())


def test_without_onnx_one_line_naming_the_extra(run_dir, tmp_path):
    """onnx made unimportable (a machine without the extra): bptt imports, export says what to install."""
    code = ("import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import bptt, bptt.export\n"
            "from bptt.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "export", str(run_dir), "--onnx", "m.onnx"], cwd=tmp_path,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 2 and "bptt[onnx]" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert os.listdir(tmp_path) == []
