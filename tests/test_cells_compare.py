"""bench/cells_compare.py (issue 17) runs end to end on a small text and matches parameter counts."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    spec = importlib.util.spec_from_file_location("cells_compare", os.path.join(ROOT, "bench", "cells_compare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sizes_match_within_five_percent():
    cc = _load()
    sizes = cc.matched_sizes(list(cc.CELLS), 65, "lstm", 128)
    target = sizes["lstm"][1]
    assert sizes["lstm"] == (128, 107713)
    assert all(abs(n / target - 1) < 0.05 for _, n in sizes.values()), sizes


def test_quick_run_writes_json(tmp_path):
    cc = _load()
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    out = tmp_path / "r.json"
    assert cc.main([str(text), "--quick", "--cells", "rnn,mingru", "--budget", "0.3", "--eval-every", "0.2",
                    "--json", str(out), "--save-dir", str(tmp_path / "nets")]) == 0
    result = json.loads(out.read_text())
    assert [r["cell"] for r in result["runs"]] == ["rnn", "mingru"]
    for r in result["runs"]:
        assert r["steps"] >= 1 and r["train_cpu_s"] >= 0.3 and r["val_final"] > 0
    assert (tmp_path / "nets" / "mingru.npz").exists()
    assert all(p["num_threads"] == 1 for p in result["blas_pools"])
