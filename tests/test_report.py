"""The HTML report is produced, self-contained (it references only what it embeds), and
``bptt diagnose`` writes it from a checkpoint with one clear line on bad input."""

import base64
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import bptt  # noqa: E402
from bptt.diagnostics import GradientRecorder  # noqa: E402
from bptt.diagnostics.report import diagnose, write_report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _References(HTMLParser):
    """Every URL-valued attribute in the document."""

    def __init__(self):
        super().__init__()
        self.urls = []
        self.tags = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "data", "poster", "srcset", "action") and value is not None:
                self.urls.append((tag, name, value))


def _check_self_contained(path, expected_images):
    text = open(path, encoding="utf-8").read()
    parser = _References()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "url(" not in text                                  # no CSS references either
    images = [u for u in parser.urls if u[0] == "img"]
    assert len(images) == expected_images
    for tag, name, value in parser.urls:
        assert value.startswith("data:image/png;base64,"), (tag, name, value[:40])
        payload = base64.b64decode(value.split(",", 1)[1], validate=True)
        assert payload.startswith(PNG_MAGIC)
    return text


def test_write_report_embeds_every_figure(tmp_path):
    from bptt.diagnostics import plots

    a = plots.lag_profiles({"x": np.exp(-np.arange(6.0))}, tmp_path / "a.png")
    b = plots.contributions_heatmap(np.tril(np.ones((4, 4))), tmp_path / "b.png")
    path = write_report(tmp_path / "r.html", "t <&>", {"rho": 0.5, "k": [1.0, 2.0]}, [("A", a), ("B", b)], ["note"])
    text = _check_self_contained(path, 2)
    assert "t &lt;&amp;&gt;" in text and "0.5" in text
    os.remove(a)                                                # still complete without the PNG files
    os.remove(b)
    _check_self_contained(path, 2)


def test_diagnose_with_recorded_history(tmp_path):
    from bptt.training.optim import Adam
    from bptt.training.train import Trainer

    net = bptt.Network(2, 6, 1, loss="mse", seed=0)
    rng = np.random.default_rng(0)
    probe = (rng.standard_normal((8, 2, 2)), rng.standard_normal((8, 2, 1)), None)
    recorder = GradientRecorder(tmp_path / "diagnostics.jsonl", every=2, probe=probe[:2])
    trainer = Trainer(net, Adam(net.params, lr=1e-2), clip=lambda g: bptt.clip_by_global_norm(g, 0.5),
                      callbacks=[recorder], metrics_path=str(tmp_path / "metrics.jsonl"))
    trainer.fit(lambda step: (rng.standard_normal((8, 4, 2)), rng.standard_normal((8, 4, 1))), steps=6)
    lines = [json.loads(s) for s in open(tmp_path / "diagnostics.jsonl")]
    assert [line["update"] for line in lines] == [2, 4, 6]
    assert all(len(line["lag_profile"]) == 8 and "update_ratio" in line for line in lines)
    numbers = diagnose(net, probe, tmp_path / "out", run_dir=str(tmp_path), clip_threshold=0.5)
    for name in ("contributions", "lag_profile", "jacobian", "loss", "grad_norm", "spectral_radius"):
        assert open(tmp_path / "out" / f"{name}.png", "rb").read(8) == PNG_MAGIC
    _check_self_contained(tmp_path / "out" / "report.html", 6)
    assert numbers["logged steps"] == 6
    assert numbers["spectral radius of layers.0.W (per gate block)"][0] == pytest.approx(
        bptt.diagnostics.spectral_radius(net.params["layers.0.W"]))


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "rnn", "gru"])
def test_closed_form_jacobian_beside_the_measured_one(tmp_path, cell):
    """rnn/minGRU/minLSTM: the report's Jacobian curve is measured through the layer's backward and drawn
    with the closed-form products beside it; the two agree to rounding. Gated cells have no closed form."""
    net = bptt.Network(3, 5, 3, cell=cell, seed=2)
    rng = np.random.default_rng(1)
    probe = (rng.standard_normal((7, 2, 3)), rng.integers(0, 3, (7, 2)), None)
    numbers = diagnose(net, probe, tmp_path / "out")
    key = "closed form vs measured ||dh_T/dh_k||, largest relative difference"
    if cell == "gru":
        assert key not in numbers
        return
    assert numbers[key] < 1e-10
    closed = bptt.diagnostics.jacobian_norms(net, probe[0], method="closed_form", t=6)[6]
    measured = bptt.diagnostics.jacobian_norms(net, probe[0], method="protocol", t=6)[6]
    assert np.nanmax(np.abs(closed - measured) / measured) < 1e-10
    assert closed[0] < closed[5]                       # ||dh_6/dh_0|| < ||dh_6/dh_5||: it decays with the lag
    if cell != "rnn":                                  # diag(a_t): the product's norm is max_i prod_t a_t,i
        a = net.layers[0].recurrence_weights(net.layers[0].forward(probe[0], (np.zeros((2, 5)),))[2])
        expected = np.mean(np.max(np.prod(np.abs(a[1:]), axis=0), axis=1))      # ||dh_6/dh_0|| = prod_{t=1..6} a_t
        assert closed[0] == pytest.approx(expected, rel=1e-12)


def _cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "bptt", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_diagnose_checkpoint_and_bad_input(tmp_path, capsys):
    from bptt.io.checkpoint import save_checkpoint
    from bptt.cli import main

    net = bptt.Network(3, 5, 2, cell="lstm", seed=1)
    save_checkpoint(tmp_path / "run", net)
    done = _cli("diagnose", str(tmp_path / "run"), "--seq-len", "6", "--batch", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "effective memory" in done.stdout and "mean forget gate" in done.stdout
    _check_self_contained(tmp_path / "run" / "diagnose" / "report.html", 3)

    def error_line(*args):
        assert main(["diagnose", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bptt diagnose: error: ") and err.count("\n") == 1
        return err

    assert "no checkpoint" in error_line(str(tmp_path / "nowhere"))
    assert "--seq-len must be >= 1, got 0" in error_line(str(tmp_path / "run"), "--seq-len", "0")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert re.search(r"corrupt|not a bptt checkpoint", error_line(str(tmp_path / "junk.npz")))


def test_vanishing_experiment_quick(tmp_path):
    from bptt.experiments.vanishing import METHODS, run_vanishing

    result = run_vanishing(tmp_path / "v", quick=True, seeds=[0], progress=None)
    table = open(tmp_path / "v" / "vanishing.md", encoding="utf-8").read()
    for method in METHODS:
        assert f"| {method} |" in table
    assert open(tmp_path / "v" / "vanishing.png", "rb").read(8) == PNG_MAGIC
    saved = json.load(open(tmp_path / "v" / "vanishing.json"))
    T = saved["seq_len"]
    assert all(len(run["profile_init"]) == T - 1 for run in saved["runs"])
    tanh = next(r for r in result["runs"] if r["method"] == "tanh")
    assert tanh["clipped_updates"] == 0                       # no clipping for the plain RNN
    again = run_vanishing(None, quick=True, seeds=[0], methods=["tanh", "lstm"], progress=None)
    for run in again["runs"]:
        first = next(r for r in result["runs"] if r["method"] == run["method"])
        assert run["mse"] == first["mse"] and run["profile_final"] == first["profile_final"]
    with pytest.raises(ValueError, match="method must be one of"):
        run_vanishing(None, quick=True, methods=["lstm", "transformer"], progress=None)


def test_train_record_every_feeds_diagnose(tmp_path, capsys):
    from bptt.cli import main

    text = tmp_path / "tiny.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--text", str(text), "--steps", "6", "--hidden", "8", "--seq-len", "10", "--batch", "2",
                 "--record-every", "2", "--log-every", "1", "--out", str(run), "--no-progress"]) == 0
    lines = [json.loads(s) for s in open(run / "diagnostics.jsonl")]
    assert len(lines) >= 3 and all("lag_profile" in line and "grad_norms" in line for line in lines)
    assert main(["diagnose", str(run), "--seq-len", "8", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "logged steps" in out
    _check_self_contained(run / "diagnose" / "report.html", 6)
    assert main(["train", "--text", str(text), "--steps", "1", "--hidden", "8", "--seq-len", "10", "--batch", "2",
                 "--record-every", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "--record-every must be >= 0, got -1" in capsys.readouterr().err


def test_report_shows_the_run(tmp_path, capsys):
    """The configuration in report.html is the run's (not just labels), every row has its sentence,
    the sample comes from the model's vocabulary and every caption names layer and step."""
    import hashlib

    from bptt.cli import main
    from bptt.io.checkpoint import load_checkpoint

    text = tmp_path / "t.txt"
    text.write_text("a b c d e f g. " * 60, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--text", str(text), "--steps", "5", "--hidden", "7", "--seq-len", "9", "--batch", "3",
                 "--lr", "0.003", "--optimizer", "rmsprop", "--log-every", "1", "--eval-every", "5",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["diagnose", str(run), "--seq-len", "6", "--batch", "2"]) == 0
    page = open(run / "diagnose" / "report.html", encoding="utf-8").read()
    rows = dict(re.findall(r"<tr><th>(.*?)</th><td><b>(.*?)</b>", page))
    assert rows["optimiser, learning rate"] == "rmsprop, 0.003"
    assert rows["T (steps per update), B (streams)"] == "9, 3"
    assert rows["layers x hidden units"] == "1 x 7" and rows["steps"] == "5"
    assert rows["text SHA-256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    ckpt = load_checkpoint(run)
    assert rows["validation loss"] == f"{ckpt.meta['metrics']['val_loss']:.4f} nats per token"
    assert page.count("<tr>") == page.count('<div class="means">') - page.count('<div class="eq">')  # a sentence each
    sample = re.search(r"<h2>A sample</h2>.*?<pre>(.*?)</pre>", page, re.S).group(1)
    assert len(sample) == 400 and set(sample) <= set(ckpt.vocabulary().tokens)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 5                                   # loss, grad norm; contributions, lag, jacobian
    assert all("layer 0, checkpoint step 5" in c or "all layers, steps 1 to 5" in c for c in captions)
    assert page.count("<math") >= 4


def test_text_view_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from bptt.cli import main
    from bptt.io.checkpoint import save_checkpoint

    text = tmp_path / "t.txt"
    text.write_text("a (b) \"c\" d\n" * 20, encoding="utf-8")
    assert main(["train", "--text", str(text), "--steps", "2", "--hidden", "4", "--seq-len", "6", "--batch", "1",
                 "--out", str(tmp_path / "char"), "--no-progress"]) == 0
    assert main(["train", "--text", str(text), "--level", "word", "--steps", "2", "--hidden", "4", "--seq-len", "4",
                 "--batch", "1", "--out", str(tmp_path / "word"), "--no-progress"]) == 0
    save_checkpoint(tmp_path / "plain", bptt.Network(3, 4, 2, seed=0))
    other = tmp_path / "other.txt"
    other.write_text("xyz w\n" * 40, encoding="utf-8")
    assert main(["train", "--text", str(other), "--steps", "2", "--hidden", "4", "--seq-len", "6", "--batch", "1",
                 "--out", str(tmp_path / "other"), "--no-progress"]) == 0
    capsys.readouterr()

    def error_line(*args):
        assert main(["diagnose", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bptt diagnose: error: ") and err.count("\n") == 1, err
        return err

    char = str(tmp_path / "char")
    assert "--passage-len must be >= 2, got 1" in error_line(char, "--text-view", "--passage-len", "1")
    assert "--position must be in [0, --passage-len) = [0, 50), got 50" in error_line(
        char, "--text-view", "--passage-len", "50", "--position", "50")
    assert "fewer than the passage length + 1 = 10001" in error_line(char, "--text-view", "--passage-len", "10000")
    assert "needs a character-level text run" in error_line(str(tmp_path / "word"), "--text-view")
    assert "not a text model" in error_line(str(tmp_path / "plain"), "--text-view")
    assert "give one run, or two to compare; got 3" in error_line(char, char, char)
    assert "vocabulary lacks" in error_line(char, str(tmp_path / "other"), "--passage-len", "40",
                                            "--out", str(tmp_path / "cmp"))
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "char" / "diagnose").exists()


def test_compare_numbers_and_files(tmp_path, capsys):
    from bptt.cli import main

    text = tmp_path / "t.txt"
    text.write_text('say "hi" (now)\n' * 30, encoding="utf-8")
    for cell in ("rnn", "gru"):
        assert main(["train", "--text", str(text), "--cell", cell, "--steps", "2", "--hidden", "4", "--seq-len", "6",
                     "--batch", "1", "--out", str(tmp_path / cell), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(tmp_path / "rnn"), str(tmp_path / "gru"), "--passage-len", "30", "--position", "7"]) == 0
    out = capsys.readouterr().out
    assert out.count("largest Lyapunov exponent") == 2 and "gate steps below 0.1" in out
    folder = tmp_path / "rnn" / "compare"
    assert sorted(os.listdir(folder)) == ["lyapunov-0.png", "lyapunov-1.png", "report.html", "saturation-1.png"]
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page.count('data-start="7"') == 2
    data = json.loads(re.search(r'<script type="application/json" id="tv-data-0">(.*?)</script>', page, re.S).group(1))
    assert len(data["rows"]) == 30 and [len(r) for r in data["rows"][:3]] == [1, 2, 3]
    assert all(r[-1] == 0.0 for r in data["rows"])                     # lag 0 is the reference: log10(1) = 0
    refs = _References()
    refs.feed(page)
    assert not [u for u in refs.urls if not u[2].startswith("data:")]
