"""`bptt gradcheck` end to end, as a user runs it (a subprocess: exit codes and output)."""

import subprocess
import sys


def bptt(*args):
    return subprocess.run([sys.executable, "-m", "bptt", *args], capture_output=True, text=True, timeout=120)


def test_gradcheck_passes_and_lists_every_gradient():
    run = bptt("gradcheck", "--layers", "2", "--ids", "--mask")
    assert run.returncode == 0, run.stderr
    for name in ("layers.0.U", "layers.1.W", "layers.1.b", "V", "c", "h0"):
        assert f"\n{name} " in run.stdout
    assert "PASS" in run.stdout


def test_gradcheck_exits_one_above_tolerance():
    run = bptt("gradcheck", "--tol", "1e-30")
    assert run.returncode == 1
    assert "FAIL" in run.stdout and "above tolerance" in run.stdout


def test_bad_values_give_one_line_and_no_traceback():
    for args, fragment in [(("--hidden", "0"), "hidden_size must be >= 1, got 0"),
                           (("--eps", "-1"), "--eps must be > 0, got -1.0"),
                           (("--seq-len", "0"), "seq_len"),]:
        run = bptt("gradcheck", *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr
        assert fragment in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1


def test_unknown_flag_is_a_usage_error():
    run = bptt("gradcheck", "--no-such-flag")
    assert run.returncode == 2 and "unrecognized arguments" in run.stderr


def test_gradcheck_new_cells_and_recurrent_regularisers():
    """The cells and regularisers of issue 17 through the command line, training and evaluation mode."""
    for args in [("--cell", "lstm", "--recurrent-dropout", "0.3", "--zoneout", "0.2", "--bidirectional", "--lengths"),
                 ("--cell", "gru", "--zoneout", "0.3", "--eval"),
                 ("--cell", "lstm", "--proj-size", "3", "--zoneout", "0.25"),
                 ("--cell", "lstm", "--layer-norm", "--recurrent-dropout", "0.2", "--weight-dropout", "0.3"),
                 ("--cell", "minlstm", "--zoneout", "0.4")]:
        run = bptt("gradcheck", *args)
        assert run.returncode == 0 and "PASS" in run.stdout, (args, run.stdout, run.stderr)
    run = bptt("gradcheck", "--cell", "mingru", "--recurrent-dropout", "0.2")
    assert run.returncode == 2 and "has no W" in run.stderr and "Traceback" not in run.stderr
