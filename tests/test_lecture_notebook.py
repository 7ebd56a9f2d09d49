"""docs/lecture.ipynb: generated from the same cells as docs/lecture.md, stored without outputs, and
executed top to bottom (nbclient, a real ipykernel) without an error, printing the lecture's checks."""

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("make_lecture", ROOT / "scripts" / "make_lecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_and_markdown_come_from_one_source():
    gen = _generator()
    stored = json.loads((ROOT / "docs" / "lecture.ipynb").read_text(encoding="utf-8"))
    fresh = json.loads(nbformat.writes(gen.notebook()))
    assert stored == fresh, "docs/lecture.ipynb is stale: run python scripts/make_lecture.py"
    code = [c for c in stored["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)   # no outputs stored
    markdown = (ROOT / "docs" / "lecture.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)\n```", markdown, re.S)
    assert blocks == ["".join(c["source"]) for c in code]                   # the md shows exactly the notebook's code
    for cell in stored["cells"]:
        if cell["cell_type"] == "markdown":
            assert "".join(cell["source"]) in markdown


def test_notebook_executes_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("BPTT_LECTURE_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(ROOT / "docs" / "lecture.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                                                        # raises CellExecutionError on any error
    text, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error"
            if output["output_type"] == "stream":
                text.append(output["text"])
            images += "image/png" in output.get("data", {})
    printed = "".join(text)
    assert images == 4                                                      # every figure shown inline
    assert sorted(os.listdir(tmp_path / "figures")) == ["lecture_contributions.png", "lecture_exploding.png",
                                                        "lecture_remedies.png", "lecture_vanishing_product.png"]
    # the checks the lecture prints: formulas against BPTT and finite differences, RTRL against BPTT
    errors = [float(v) for v in re.findall(r"vs (?:bptt's )?BPTT[^:]*:\s+([0-9.e+-]+)", printed)]
    assert len(errors) >= 4 and max(errors) < 1e-12, printed
    rtrl = [float(v) for v in re.findall(r"largest relative gradient difference ([0-9.e+-]+)", printed)]
    assert len(rtrl) == 3 and max(rtrl) < 1e-10
    assert "1.15^59" in printed and "clip_by_value([1000, -4, 20], 10) -> [10.0, -4.0, 10.0]" in printed
