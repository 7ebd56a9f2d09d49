"""The optional numba kernels (bptt.kernels) against the numpy path they replace.

The numpy path is the reference: its gradients are checked against finite differences and
torch elsewhere. Here the kernel path must (a) give the same numbers in float64 to rounding
(it does the same arithmetic, only libm's tanh differs from numpy's in the last bit),
(b) agree in float32 to a few ulp per step (its tanh is a rational approximation, <= ~6 ulp),
and (c) pass a float64 finite-difference check of its own, with random upstream gradients.
The GRU's kernels have their own file (test_kernels_gru.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bptt import kernels
from bptt.gradcheck import check_network, random_problem
from bptt.network import Network

numba = pytest.importorskip("numba")

CASES = [dict(cell="rnn"), dict(cell="rnn", nonlinearity="relu"), dict(cell="lstm"),
         dict(cell="lstm", bias=False), dict(cell="lstm", num_layers=2, dropout=0.3),
         dict(cell="lstm", bidirectional=True), dict(cell="rnn", num_layers=2, bidirectional=True)]
# (B, H): B H^2 <= 16384 runs the rnn's whole-sequence kernel; (32, 40) does not (numpy path)
SHAPES = [(1, 8), (3, 5), (4, 64), (32, 40)]


@pytest.fixture(autouse=True, params=[True, False], ids=["loops", "step-loops"])
def compiled_loops(request):
    """Every test twice: with the LSTM/GRU time loops compiled (numpy's gemm called from numba,
    kernels.loops_enabled) and with the per-step Python loop around the step kernels."""
    previous = kernels.set_loops(request.param)
    yield request.param
    kernels.set_loops(previous)


def _name(options):
    return "-".join(f"{k}={v}" for k, v in options.items())


def _run_both(options, B, H, dtype, ids=False, T=7, I=6, O=5, seed=0):
    """forward_backward on both paths, same weights, same data, random upstream gradients
    (a random mask weights the loss; a random dE/d(final state) is added)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    y = rng.integers(0, O, (T, B))
    mask = rng.uniform(0.2, 2.0, (T, B)).astype(dtype)
    results = {}
    for mode in ("numpy", "numba"):
        net = Network(I, H, O, seed=3, dtype=dtype, **options)
        fwd_state = net.zero_state(B)
        shapes = [s.shape for s in (fwd_state if isinstance(fwd_state, tuple) else (fwd_state,))]
        up = np.random.default_rng(seed + 1)
        dfinal = tuple(up.standard_normal(s).astype(dtype) for s in shapes)
        dfinal = dfinal if isinstance(fwd_state, tuple) else dfinal[0]
        with kernels.using(mode):
            fwd = net.forward(x)
            from bptt.losses import compute_loss
            loss, dz = compute_loss(net.loss, fwd.outputs, y, mask)
            bwd = net.backward(fwd, dz, dfinal_state=dfinal)
        results[mode] = (loss, fwd, bwd)
    return results


def _compare(results, rtol, atol):
    (loss_a, fwd_a, bwd_a), (loss_b, fwd_b, bwd_b) = results["numpy"], results["numba"]
    np.testing.assert_allclose(loss_b, loss_a, rtol=rtol)
    np.testing.assert_allclose(fwd_b.outputs, fwd_a.outputs, rtol=rtol, atol=atol)
    for name in bwd_a.grads:
        np.testing.assert_allclose(bwd_b.grads[name], bwd_a.grads[name], rtol=rtol, atol=atol, err_msg=name)
    for layer, (a, b) in enumerate(zip(bwd_a.dh, bwd_b.dh)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"dh of layer {layer}")
    if bwd_a.dinputs is not None:
        np.testing.assert_allclose(bwd_b.dinputs, bwd_a.dinputs, rtol=rtol, atol=atol)
    for a, b in zip(np.atleast_1d(bwd_a.dh0) if not isinstance(bwd_a.dh0, tuple) else bwd_a.dh0,
                    np.atleast_1d(bwd_b.dh0) if not isinstance(bwd_b.dh0, tuple) else bwd_b.dh0):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg="dh0")


@pytest.mark.parametrize("options", CASES, ids=_name)
@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("ids", [False, True])
def test_float64_kernels_match_numpy_to_rounding(options, B, H, ids):
    _compare(_run_both(options, B, H, np.float64, ids=ids), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("options", CASES, ids=_name)
@pytest.mark.parametrize("B,H", SHAPES)
def test_float32_kernels_match_numpy_to_a_few_ulp(options, B, H):
    # float32 eps is 1.2e-7: a tanh a few ulp off, carried through T = 7 steps and the GEMMs,
    # stays within 2e-5 relative of the numpy path (atol for entries that cancel to ~0).
    _compare(_run_both(options, B, H, np.float32), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("options", CASES, ids=_name)
def test_kernel_path_passes_finite_differences(options):
    with kernels.using("numba"):
        net = Network(4, 5, 3, seed=11, **options)
        x, y, mask, h0 = random_problem(net, seq_len=6, batch=2, seed=4, masked=True)
        errors = check_network(net, x, y, mask, h0)
    worst = max(errors.values())
    assert worst < 1e-7, errors


def test_rnn_small_kernel_really_runs_and_a_broken_one_is_caught(monkeypatch):
    """The comparisons above must be able to fail: break the kernel's recurrence (drop W h_{t-1})
    and the float64 comparison has to notice."""
    from bptt.kernels import rnn as rnn_kernels
    good = rnn_kernels.forward_sequence

    def without_recurrence(hs, WT, relu):
        good(hs, np.zeros_like(WT), relu)

    monkeypatch.setattr(rnn_kernels, "forward_sequence", without_recurrence)
    with pytest.raises(AssertionError):
        _compare(_run_both(dict(cell="rnn"), 1, 8, np.float64), rtol=1e-12, atol=1e-14)


def test_lstm_kernel_really_runs_and_a_broken_one_is_caught(monkeypatch):
    from bptt.kernels import lstm as lstm_kernels
    good = lstm_kernels.backward_step

    def forgetful(t, k, dh, dh_total, dh_next, dc, gates, cs, tanh_c, da):
        good(t, k, dh, dh_total, dh_next, dc, gates, cs, tanh_c, da)
        dc[...] = 0                                       # cut the cell-state path back in time

    monkeypatch.setattr(lstm_kernels, "backward_step", forgetful)
    with pytest.raises(AssertionError):
        _compare(_run_both(dict(cell="lstm"), 3, 5, np.float64), rtol=1e-12, atol=1e-14)


def test_lstm_compiled_loops_really_run_and_a_broken_one_is_caught(monkeypatch, compiled_loops):
    """float32 LSTM: with loops on, forward is one forward_loop call and backward one
    backward_loop_tanh call per chunk (no per-step kernel call from Python); a loop that drops
    the cell-state path is caught by the float32 comparison."""
    from bptt.kernels import lstm as lstm_kernels
    if not kernels.loops_enabled(np.float32) and compiled_loops:
        pytest.skip("numpy's BLAS gemm was not found (kernels/blas.py): no compiled loops here")
    calls = {"forward_loop": 0, "backward_loop_tanh": 0, "forward_step": 0, "backward_step_tanh": 0}
    _run_both(dict(cell="lstm"), 3, 5, np.float32, T=7)  # compile the loops before their callees are patched

    def counting(name):
        kernel = getattr(lstm_kernels, name)

        def count(*args):
            calls[name] += 1
            return kernel(*args)
        return count

    for name in calls:
        monkeypatch.setattr(lstm_kernels, name, counting(name))
    _compare(_run_both(dict(cell="lstm"), 3, 5, np.float32, T=7), rtol=2e-5, atol=1e-6)
    if compiled_loops:
        assert calls == {"forward_loop": 1, "backward_loop_tanh": 1, "forward_step": 0, "backward_step_tanh": 0}
    else:
        assert calls == {"forward_loop": 0, "backward_loop_tanh": 0, "forward_step": 7, "backward_step_tanh": 7}
        return
    good = lstm_kernels.backward_loop_tanh

    def forgetful(gemm, first, n, dh, dh_total, dh_next, dc, gates, cs, da, W):
        good(gemm, first, n, dh, dh_total, dh_next, dc, gates, cs, da, W)
        dc[...] = 0                                       # cut the cell-state path back in time

    monkeypatch.setattr(lstm_kernels, "backward_loop_tanh", forgetful)
    with pytest.raises(AssertionError):
        _compare(_run_both(dict(cell="lstm"), 3, 5, np.float32, T=7), rtol=2e-5, atol=1e-6)


def test_relu_kernel_keeps_nan_like_numpy():
    """np.maximum(nan, 0) is nan: a NaN pre-activation must stay visible to the numerics guard."""
    from bptt.kernels import rnn as rnn_kernels
    hs = np.zeros((3, 1, 4))
    hs[1, 0] = [np.nan, -1.0, 2.0, 0.0]
    hs[2, 0] = [0.5, -0.5, 0.0, 1.0]
    rnn_kernels.forward_sequence(hs, np.zeros((4, 4)), True)
    assert np.isnan(hs[1, 0, 0]) and hs[1, 0, 1] == 0.0 and hs[1, 0, 2] == 2.0
    assert np.all(np.isnan(hs[2, 0]))                     # NaN * 0 = NaN: every unit of the next step, as in BLAS


def test_float32_tanh_is_within_a_few_ulp_everywhere():
    from bptt.kernels.common import jit, sigmoid, tanh

    @jit
    def apply(a, t, s):
        for i in range(a.shape[0]):
            t[i] = tanh(a[i])
            s[i] = sigmoid(a[i])

    a = np.concatenate([np.linspace(-20, 20, 400001), [0.0, -0.0, 1e-30, -1e-30, 9.0, -9.0, np.inf, -np.inf]])
    a = a.astype(np.float32)
    t, s = np.empty_like(a), np.empty_like(a)
    apply(a, t, s)
    exact_t = np.tanh(a.astype(np.float64))
    exact_s = 1.0 / (1.0 + np.exp(-a.astype(np.float64)))
    assert t.dtype == np.float32
    ulps = np.abs(t - exact_t) / np.spacing(np.abs(exact_t).astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 8, ulps.max()
    assert np.all(np.abs(t) <= 1) and t[-2] == 1 and t[-1] == -1
    np.testing.assert_allclose(s, exact_s, rtol=0, atol=3e-7)
    assert np.all((s >= 0) & (s <= 1))
    nan = np.array([np.nan], np.float32)
    apply(nan, t[:1], s[:1])
    assert np.isnan(t[0]) and np.isnan(s[0])


def test_mode_switches_and_restores():
    before = kernels.mode()
    with kernels.using("numpy"):
        assert not kernels.enabled() and kernels.mode() == "numpy"
        with kernels.using("numba"):
            assert kernels.enabled()
        assert not kernels.enabled()
    assert kernels.mode() == before
    with pytest.raises(ValueError, match="'fastest'"):
        kernels.use("fastest")


def _run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_numpy_mode_never_imports_numba():
    """The core stays numpy-only: with BPTT_KERNELS=numpy a training step imports no numba."""
    code = ("import sys, numpy as np; from bptt.network import Network; "
            "net = Network(3, 4, 3, cell='lstm'); "
            "net.loss_and_grads(np.zeros((2, 1, 3)), np.zeros((2, 1), int)); "
            "print('numba' in sys.modules)")
    done = _run_python(code, BPTT_KERNELS="numpy")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_bad_environment_value_is_named():
    code = "from bptt import kernels; kernels.enabled()"
    done = _run_python(code, BPTT_KERNELS="gpu")
    assert done.returncode != 0
    assert "BPTT_KERNELS must be one of" in done.stderr and "'gpu'" in done.stderr


def test_cli_names_the_path_and_rejects_a_bad_one(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a small text to train on, a small text to train on. " * 40)
    base = [sys.executable, "-m", "bptt", "train", "--text", str(text), "--steps", "2", "--hidden", "8",
            "--cell", "lstm", "--batch", "4", "--seq-len", "16", "--no-progress"]
    bad = subprocess.run(base + ["--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         env=dict(os.environ, BPTT_KERNELS="gpu"), timeout=120)
    assert bad.returncode == 2
    assert "BPTT_KERNELS must be one of" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    good = subprocess.run(base[:-1] + ["--out", str(tmp_path / "good")], capture_output=True, text=True,
                          env=dict(os.environ, BPTT_KERNELS="numpy"), timeout=120)
    assert good.returncode == 0, good.stderr
    assert "numpy (BPTT_KERNELS=numpy)" in good.stderr
