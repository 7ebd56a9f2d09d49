"""``bptt bench --quick`` runs end to end so the benchmark cannot rot. No timing asserts:
only that every peer ran, computed the same loss, and the report is complete and sane."""

import json
import os
import sys

import numpy as np
import pytest

from bptt.benchmark import harness, runner
from bptt.benchmark.peers import Problem, bptt_contestant, step_flops
from bptt.cli import main


def _numpy_blas(pools):
    """threadpoolctl's entry for the BLAS numpy itself links (its wheel's numpy.libs, or numpy/)."""
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    mine = [p for p in pools if p["user_api"] == "blas" and p["filepath"]
            and os.path.relpath(p["filepath"], numpy_dir).split(os.sep)[0] in ("numpy", "numpy.libs")]
    return mine


def test_quick_bench_writes_a_complete_report(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--threads", "1", "--cells", "rnn", "lstm", "gru", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["schema"] == "bptt-bench/1"
    (run,) = report["runs"]
    assert run["threads"] == 1 and run["gemm_peak_gflops"] > 0
    assert {row["cell"] for row in run["rows"]} == {"rnn", "lstm", "gru"}
    # --threads 1 really is one thread: threadpoolctl's report from inside the worker, at its start
    # and again after each row's peers were built, shows numpy's own BLAS (and every other pool) at 1.
    for pools in [run["threadpools"]] + [row["threadpools"] for row in run["rows"]]:
        assert [p["num_threads"] for p in _numpy_blas(pools)] == [1], pools
        assert all(p["num_threads"] == 1 for p in pools), pools
    for row in run["rows"]:
        bptt = row["peers"]["bptt"]
        assert bptt["median_s"] > 0 and bptt["repeats"] >= 3
        # every peer computes the same float32 loss from the same weights and data
        for name, loss in row["losses"].items():
            assert loss == pytest.approx(row["losses"]["bptt"], rel=1e-5), name
        for name, entry in row["peers"].items():
            if name != "bptt":
                assert entry["ratio"] == pytest.approx(bptt["median_s"] / entry["median_s"])
    try:
        import torch  # noqa: F401  (optional peer: when present it must have run)
        assert all(any(name.startswith("torch.nn.") for name in row["peers"]) for row in run["rows"])
    except ImportError:
        pass
    for mem in run["memory"]:
        assert mem["peak_bytes"] >= mem["minimum_bytes"]        # nothing can beat the analytic minimum
    assert "GEMM peak" in capsys.readouterr().out


def test_step_flops_counts_every_gemm_once():
    # rnn, I=O=3, H=2, B=1, T=1 by hand: forward xU^T 6 + hW^T 4 + hV^T 6 = 16 MACs,
    # backward dV 6 + dh 6 + dW 4 + dh_prev 4 + dU 6 = 26 MACs; 2 flops per MAC.
    assert step_flops(Problem("rnn", 3, 2, 1, 1)) == 2 * (16 + 26)
    # gates multiply the U and W blocks only
    lstm, rnn = step_flops(Problem("lstm", 3, 2, 1, 1)), step_flops(Problem("rnn", 3, 2, 1, 1))
    assert lstm - rnn == 2 * 3 * (6 + 4 + 4 + 4 + 6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_stays_float32_through_every_array(cell):
    """No silent upcast: every array a float32 step produces or keeps is float32."""
    problem = Problem(cell, 5, 4, 2, 3)
    net = bptt_contestant(problem).step.net
    x, y = problem.data()
    fwd = net.forward(x)
    loss_grads = net.forward_backward(x, y)
    arrays = [fwd.outputs, loss_grads.dinputs, *loss_grads.dh, *loss_grads.grads.values()]
    arrays += [value for cache in fwd.caches for value in vars(cache).values()
               if isinstance(value, np.ndarray) and value.dtype.kind == "f"]
    final = loss_grads.final_state if isinstance(loss_grads.final_state, tuple) else (loss_grads.final_state,)
    arrays += list(final)
    assert arrays and all(a.dtype == np.float32 for a in arrays), sorted({str(a.dtype) for a in arrays})


@pytest.mark.parametrize("argv, words", [
    (["bench", "--threads", "999"], "--threads must be between 1"),
    (["bench", "--repeats", "0"], "--repeats must be >= 1"),
    (["bench", "--json", "/no/such/dir/x.json", "--quick"], "does not exist"),
])
def test_bad_arguments_are_one_line_errors(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bptt bench: error:") and words in err[0]


def test_a_thread_count_that_did_not_hold_is_refused():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1):
        assert _numpy_blas(harness.check_threads(1))            # numpy's BLAS is found and at 1
        with pytest.raises(harness.ThreadsNotEnforced, match=r"asked for 2 thread\(s\), but .*runs 1"):
            harness.check_threads(2)


def test_without_threadpoolctl_the_bench_refuses_with_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)     # import threadpoolctl -> ImportError
    with pytest.raises(harness.ThreadsNotEnforced, match="pip install threadpoolctl"):
        harness.pin_threads(1)
    # the worker hands the reason to the parent as its one JSON line, and no report
    job = {"threads": 1, "sizes": [[3, 2, 1, 2]], "cells": ["rnn"], "peers": [], "repeats": 1,
           "budget_s": 1.0, "extras": False}
    assert runner.worker_main([json.dumps(job)]) == 3
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "pip install threadpoolctl" in json.loads(line)["error"]


def test_time_to_quality_quick_trains_the_same_model_side_by_side(tmp_path):
    """bench/time_to_quality.py --quick on a small text: both frameworks start from the same weights
    (the same validation loss before any step) and train on the same batches, so after equal steps
    their losses still agree closely; the JSON has both curves. No timing is asserted."""
    pytest.importorskip("torch")
    import subprocess
    script = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "time_to_quality.py")
    rng = np.random.default_rng(0)
    words = ["the ", "king ", "and ", "queen ", "said ", "to ", "me. ", "\n"]
    (tmp_path / "text.txt").write_text("".join(rng.choice(words, 4000)))
    out = tmp_path / "ttq.json"
    # its own process: the script pins threads and cores for the whole process it runs in
    subprocess.run([sys.executable, script, str(tmp_path / "text.txt"), "--quick", "--cell", "gru",
                    "--target", "0.5", "--max-steps", "40", "--json", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    bptt, torch = result["curves"]["bptt"], result["curves"]["torch"]
    assert bptt[0][2] == pytest.approx(torch[0][2], rel=1e-5)          # same init, same validation windows
    assert bptt[0][2] == pytest.approx(np.log(len(set("".join(words)))), rel=0.1)   # ~log(vocabulary) at start
    assert [s for s, _, _ in bptt] == [s for s, _, _ in torch] and len(bptt) >= 3
    assert bptt[-1][2] < bptt[0][2] - 0.3                                # it learns
    assert bptt[-1][2] == pytest.approx(torch[-1][2], abs=0.05)          # the same training, float32 apart
