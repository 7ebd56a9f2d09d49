"""docs/sequences.md's worked example runs as written (so the page and the code cannot disagree)."""

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "sequences.md"


def test_worked_example_runs_and_learns(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "docs_sequences"})   # asserts accuracy >= 0.9
    assert "held-out accuracy" in capsys.readouterr().out
