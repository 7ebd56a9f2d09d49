"""The README's Python walk-through is code that runs: this test extracts the block after the
marker comment and executes it (with fewer steps) in a fresh folder, so README and API cannot
disagree. A name the README uses but does not import, or an API that changed, fails here."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "<!-- tests/test_readme_api.py runs the next code block -->"


def _block() -> str:
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert readme.count(MARKER) == 1
    match = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", readme, re.S)
    assert match, "the marker must be followed by a ```python block"
    return match.group(1)


def test_the_block_shows_every_step_a_script_needs():
    code = _block()
    for name in ("Vocabulary.build", "TextStreams(", "sample_text(", "save_checkpoint(", "vocab=vocab",
                 "load_checkpoint(", "Trainer("):
        assert name in code, name


def test_the_readme_api_block_runs(tmp_path):
    code = _block()
    small, n = re.subn(r"^steps = \d+$", "steps = 3", code, flags=re.M)
    assert n == 1, "the block must set `steps = N` on a line of its own (the test shortens it)"
    small = small.replace("val_ids[:20000]", "val_ids[:2000]")
    script = tmp_path / "readme_api.py"
    script.write_text(small, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # a fresh interpreter in an empty folder: only what the block imports is defined
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"validation: \d+\.\d{3} nats/char", done.stdout)
    assert done.stdout.count("\n") >= 2 and "The " in done.stdout        # the sample starts with the prime
    assert os.path.isfile(tmp_path / "runs" / "api" / "checkpoint.npz")
