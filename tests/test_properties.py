"""Property-based tests (hypothesis): random small configurations pass the finite-difference check,
and any Unicode text survives the trip through a vocabulary (and a file, and JSON).

Gradients: every cell (rnn tanh/relu, lstm, gru in both variants), 1-2 layers, one or two
directions, ids or float inputs, cross-entropy or mse, with or without a mask, T and B down
to 1 -- BPTT against central differences in float64 with a random upstream gradient on the
final state (``bptt.gradcheck.check_network``). Truncation: for chunked, TBPTT(k1, k2) and
the per-output window, the sum of the gradients the mode hands the optimiser (weights held
fixed) equals the finite-difference gradient of the objective that mode defines: every output
E_t computed from the true, *detached* state at the start of the window its gradient reaches
back to.
"""

import json

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from bptt.data import Vocabulary, read_text, tokenize  # noqa: E402
from bptt.gradcheck import check_network, numerical_gradient, random_problem, relative_error  # noqa: E402
from bptt.losses import compute_loss  # noqa: E402
from bptt.network import Network  # noqa: E402
from bptt.training.truncation import make_truncation, states_before  # noqa: E402

FD_TOL = 1e-6
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def configurations(draw, bidirectional_ok=True):
    cell = draw(st.sampled_from(["rnn", "lstm", "gru"]))
    options = {}
    if cell == "rnn":
        options["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if cell == "gru":
        options["gru_variant"] = draw(st.sampled_from(["torch", "cho"]))
    if bidirectional_ok:
        options["bidirectional"] = draw(st.booleans())
    loss = draw(st.sampled_from(["cross_entropy", "mse"]))
    net = Network(draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 3)),
                  num_layers=draw(st.integers(1, 2)), cell=cell, loss=loss, seed=draw(st.integers(0, 2 ** 16)),
                  **options)
    T, B = draw(st.integers(1, 5)), draw(st.integers(1, 2))
    ids = loss == "cross_entropy" and draw(st.booleans())
    masked = draw(st.booleans())
    problem = random_problem(net, T, B, seed=draw(st.integers(0, 2 ** 16)), token_ids=ids, masked=masked)
    return net, problem


@FAST
@given(configurations())
def test_random_configurations_pass_the_finite_difference_check(case):
    net, (inputs, targets, mask, h0) = case
    errors = check_network(net, inputs, targets, mask, h0)
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_TOL, (net.config, worst, errors[worst])


def _truncated_objective(net, inputs, targets, mask, h0, reach):
    """sum_t E_t, each computed from the true (detached, fixed) state at reach[t] (<= t)."""
    T = inputs.shape[0]
    starts = sorted(set(reach))
    fixed = dict(zip(starts, states_before(net, inputs, h0, starts)))      # computed once: held constant

    def objective():
        total = 0.0
        for t in range(T):
            w = reach[t]
            out = net.forward(inputs[w:t + 1], fixed[w], validate=False).outputs
            loss, _ = compute_loss(net.loss, out[-1:], targets[t:t + 1], None if mask is None else mask[t:t + 1])
            total += loss
        return total
    return objective


@FAST
@given(configurations(bidirectional_ok=False), st.sampled_from(["chunked", "tbptt", "window"]), st.data())
def test_truncated_gradients_are_exact_for_the_objective_they_define(case, mode, data):
    net, (inputs, targets, mask, h0) = case
    T = inputs.shape[0]
    if mode == "chunked":
        k = data.draw(st.integers(1, T))
        truncation, pieces_reach = make_truncation("chunked", k=k), None
    elif mode == "tbptt":
        k1 = data.draw(st.integers(1, T))
        k2 = data.draw(st.integers(k1, T + 1))
        truncation, pieces_reach = make_truncation("tbptt", k1=k1, k2=k2), None
    else:
        k = data.draw(st.integers(0, T))
        truncation = make_truncation("window", k=k)
        pieces_reach = [max(0, t - k) for t in range(T)]
    x, y = net.check_inputs(inputs), targets
    total = {name: np.zeros_like(p) for name, p in net.params.items()}
    reach = [None] * T

    def update(piece):                                   # weights held fixed: no optimiser step
        for name, g in piece.grads.items():
            total[name] += g
        for t in range(*piece.span):
            reach[t] = piece.window[0]                   # E_t backpropagates to the window's start
    truncation.run(net, x, net.check_targets(y, T, x.shape[1]), mask, h0, update)
    if pieces_reach is not None:
        reach = pieces_reach                             # window mode: one update for all t
    assert None not in reach
    objective = _truncated_objective(net, x, y, mask, h0, reach)
    for name, p in net.params.items():
        # eps = 1e-5: the objective is a sum over T steps (~10), so eps = 1e-6 leaves ~1e-9 of
        # round-off in each difference -- at the tolerance for a small gradient array.
        err = relative_error(total[name], numerical_gradient(objective, p, eps=1e-5))
        assert err < FD_TOL, (mode, truncation.describe(), net.config["cell"], name, err)


# ------------------------------------------------------------------ text round trips

any_text = st.text(min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(any_text, st.sampled_from(["char", "lossless"]))
def test_any_unicode_text_round_trips_through_its_vocabulary(text, level):
    # word level's simple rule drops spacing (tests/test_words.py round-trips ordinary prose);
    # the lossless rule of older word vocabularies, and char level, must lose nothing
    rule = level
    level = "char" if level == "char" else "word"
    assert "".join(tokenize(text, level, rule)) == text                   # tokenising loses nothing
    vocab = Vocabulary(sorted(set(tokenize(text, level, rule))), level, word_rule=rule if level == "word" else "simple")
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and (ids >= 0).all() and (ids < len(vocab)).all()
    assert vocab.decode(ids) == text
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))  # as stored in a checkpoint
    assert again == vocab and again.decode(ids) == text
    assert vocab.tokens == sorted(vocab.tokens)                            # deterministic ids


@settings(max_examples=50, deadline=None)
@given(any_text.filter(lambda s: not s.startswith("\ufeff")))
def test_any_unicode_text_round_trips_through_a_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    assert read_text(path) == text


@settings(max_examples=50, deadline=None)
@given(any_text, any_text)
def test_characters_outside_the_vocabulary_are_named_not_guessed(known, other):
    vocab = Vocabulary.build(known, "char")
    unknown = sorted(set(other) - set(known))
    if not unknown:
        assert vocab.decode(vocab.encode(other)) == other
        return
    with pytest.raises(ValueError, match="not in the model's vocabulary") as info:
        vocab.encode(other)
    assert repr(unknown[0]) in str(info.value)
