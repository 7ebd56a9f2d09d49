"""Optimisers against torch.optim (float64, several steps, random gradients), schedules, clipping."""

import json

import numpy as np
import pytest

from bptt.training.clip import ClipStats, clip_by_param_norm, make_clipper
from bptt.training.optim import SGD, Adagrad, Adam, RMSprop, make_optimizer, optimizer_from_state
from bptt.training.schedules import Constant, Exponential, StepDecay, Warmup, make_schedule

torch = pytest.importorskip("torch")

CASES = [
    (SGD, torch.optim.SGD, {"lr": 0.1}),
    (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    (Adagrad, torch.optim.Adagrad, {"lr": 0.1}),
    (Adagrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.01,
                                    "initial_accumulator_value": 0.1, "eps": 1e-8}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
    (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True,
                                    "weight_decay": 0.02}),
    (Adam, torch.optim.Adam, {"lr": 0.01}),
    (Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05, "amsgrad": True}),
    (Adam, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
]


def torch_kwargs(ours, kwargs):
    kw = dict(kwargs)
    kw.pop("decoupled_weight_decay", None)
    return kw


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_matches_torch_step_for_step(ours, theirs, kwargs):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    tparams = [torch.tensor(params[k].copy(), requires_grad=True) for k in ("W", "b")]
    opt = ours(params, **kwargs)
    topt = theirs(tparams, **torch_kwargs(ours, kwargs))
    for _ in range(6):
        grads = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
        before = {k: g.copy() for k, g in grads.items()}
        opt.step(grads)
        for tp, k in zip(tparams, ("W", "b")):
            tp.grad = torch.tensor(before[k])
        topt.step()
        for tp, k in zip(tparams, ("W", "b")):
            np.testing.assert_allclose(params[k], tp.detach().numpy(), rtol=1e-12, atol=1e-14)
        for k in grads:                                  # gradients are not modified
            np.testing.assert_array_equal(grads[k], before[k])


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_state_dict_round_trip_continues_identically(ours, theirs, kwargs):
    rng = np.random.default_rng(1)
    grads = [{"W": rng.standard_normal((3, 2))} for _ in range(6)]
    a = {"W": np.ones((3, 2))}
    opt_a = ours(a, **kwargs)
    for g in grads[:3]:
        opt_a.step(g)
    state = opt_a.state_dict()
    # the scalars are JSON-able, the rest plain arrays (what checkpoints need)
    json.dumps({k: v for k, v in state.items() if k != "slots"})
    b = {"W": a["W"].copy()}
    opt_b = optimizer_from_state(b, json.loads(json.dumps({k: v for k, v in state.items() if k != "slots"}))
                                 | {"slots": state["slots"]})
    for g in grads[3:]:
        opt_a.step(g)
        opt_b.step(g)
    np.testing.assert_array_equal(a["W"], b["W"])


def test_updates_in_place_and_float32():
    p = {"W": np.ones((2, 2), np.float32)}
    ref = p["W"]
    opt = Adam(p, lr=0.1)
    opt.step({"W": np.full((2, 2), 0.5, np.float32)})
    assert p["W"] is ref and p["W"].dtype == np.float32
    assert np.all(p["W"] < 1)


def test_bad_arguments():
    p = {"W": np.ones(2)}
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -1.0"):
        SGD(p, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam(p, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lbfgs", p)
    with pytest.raises(ValueError, match="lacks gradients"):
        SGD(p).step({})
    with pytest.raises(ValueError, match="optimizer state is for 'adam'"):
        SGD(p).load_state_dict(Adam(p).state_dict())


def test_schedules():
    assert Constant(0.1).lr(1000) == 0.1
    s = StepDecay(1.0, every=10, gamma=0.5)
    assert [s.lr(t) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    tsched = torch.optim.lr_scheduler
    for ours, make_theirs in [(StepDecay(0.1, 3, 0.7), lambda o: tsched.StepLR(o, 3, 0.7)),
                              (Exponential(0.1, 0.9), lambda o: tsched.ExponentialLR(o, 0.9))]:
        o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = make_theirs(o)
        for t in range(10):
            assert ours.lr(t) == pytest.approx(o.param_groups[0]["lr"], rel=1e-12)
            o.step()
            theirs.step()
    w = Warmup(Constant(1.0), 4)
    assert [w.lr(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_halve_on_rise_is_the_tutorials_rule_and_round_trips():
    s = make_schedule("halve-on-rise", 0.01)
    for loss in [5.0, 4.0, 4.5, 4.4, 4.6, 3.0]:    # rises at 4.5 and at 4.6
        s.observe(loss)
    assert s.lr(0) == pytest.approx(0.0025) and s.halvings == 2
    t = make_schedule("halve-on-rise", 0.01)
    t.load_state_dict(json.loads(json.dumps(s.state_dict())))
    t.observe(3.5)                                  # 3.5 > 3.0: halves again
    assert t.lr(0) == pytest.approx(0.00125)
    w = make_schedule("halve-on-rise", 1.0, warmup=2)
    w.observe(1.0)
    w.observe(2.0)
    w2 = make_schedule("halve-on-rise", 1.0, warmup=2)
    w2.load_state_dict(json.loads(json.dumps(w.state_dict())))
    assert w2.lr(5) == 0.5


def test_param_norm_clipping_matches_torch_per_parameter():
    rng = np.random.default_rng(2)
    grads = {"a": 5 * rng.standard_normal((3, 4)), "b": 0.01 * rng.standard_normal(4)}
    tgrads = {k: torch.tensor(g.copy()) for k, g in grads.items()}
    report = clip_by_param_norm(grads, 1.0)
    for k, g in tgrads.items():
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-12)
    assert report.clipped and report.num_clipped == 1 and report.scale < 1


def test_clipper_and_stats():
    clip = make_clipper("global-norm", 1.0)
    stats = ClipStats()
    stats.add(clip({"g": np.array([3.0, 4.0])}))     # norm 5 -> scaled by ~0.2
    stats.add(clip({"g": np.array([0.1, 0.0])}))     # not clipped
    summary = stats.summary()
    assert summary["clip_fired"] == 1 and summary["clip_calls"] == 2
    assert summary["clip_min_scale"] == pytest.approx(0.2, rel=1e-5)
    assert summary["grad_norm_max"] == pytest.approx(5.0)
    assert make_clipper("none") is None
    with pytest.raises(ValueError, match="clip mode must be one of"):
        make_clipper("sometimes", 1.0)
    with pytest.raises(ValueError, match="clip threshold"):
        make_clipper("value", -1)
