"""make demo installs what the demo needs (the core + the progress bar), make test everything
the tests need; each has its own stamp file. Read from `make -n` (a dry run: nothing installed)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target, tmp_path):
    # a fresh VENV so make plans the installs even where .venv exists
    proc = subprocess.run(["make", "-n", "-C", ROOT, target, f"VENV={tmp_path / 'venv'}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if "pip install" in line or "touch" in line]


def test_make_demo_installs_the_cli_extra_only(tmp_path):
    lines = dry_run("demo", tmp_path)
    installs = [line for line in lines if "pip install" in line and "--upgrade pip" not in line]
    assert len(installs) == 1 and '".[cli]"' in installs[0], lines
    what = installs[0].split("pip install", 1)[1]          # the part after the venv's path
    for heavy in ("torch", "mpi", "test", "all", "numba", "matplotlib"):
        assert heavy not in what, installs[0]
    assert any(line.endswith(".installed-demo") for line in lines)


def test_make_test_installs_everything_the_tests_need(tmp_path):
    lines = dry_run("test", tmp_path)
    installs = " ".join(line for line in lines if "pip install" in line)
    assert '".[test,all,onnx,interop]"' in installs and "torch==" in installs   # every extra a test imports
    assert any(line.endswith(".installed-test") for line in lines)


def test_the_cli_extra_holds_the_progress_bar_and_the_core_its_thread_control():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert any(dep.startswith("threadpoolctl") for dep in project["dependencies"])
    assert any(dep.startswith("tqdm") for dep in project["optional-dependencies"]["cli"])
