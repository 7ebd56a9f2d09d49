"""The experiment variants of the cells since 2014 (lnlstm, mingru, minlstm) build the right Network,
and parity runs through ``bptt experiment``'s engine (it has task defaults)."""

import numpy as np
import pytest

from bptt.experiments.tasks import DEFAULTS, VARIANTS, make_network, resolve, run_experiment
from bptt.layers.lnlstm import LNLSTMLayer
from bptt.layers.lstm import LSTMLayer
from bptt.layers.mingru import MinGRULayer
from bptt.layers.minlstm import MinLSTMLayer
from bptt.tasks import get_task

EXPECTED = {"lnlstm": (LNLSTMLayer, "lstm"), "mingru": (MinGRULayer, "mingru"), "minlstm": (MinLSTMLayer, "minlstm")}


@pytest.mark.parametrize("variant", sorted(EXPECTED))
@pytest.mark.parametrize("task_name", ["adding", "parity"])
def test_new_variants_build_their_cell(variant, task_name):
    task = get_task(task_name)
    net = make_network(task, variant, hidden=6, seed=0)
    layer_class, cell = EXPECTED[variant]
    assert len(net.layers) == 1 and type(net.layers[0]) is layer_class
    assert net.layers[0].cell == cell and net.hidden_size == 6
    assert net.input_size == task.input_size and net.output_size == task.output_size
    names = set(net.params)
    if variant == "lnlstm":
        assert {"layers.0.ln_x_gamma", "layers.0.ln_h_gamma", "layers.0.ln_c_gamma"} <= names
    else:
        assert "layers.0.W" not in names                # a diagonal linear recurrence: no recurrent matrix
    # the same network as Network(...) with the variant's options (seeded identically)
    from bptt import Network
    ref = Network(task.input_size, 6, task.output_size, loss=task.loss, seed=0, dtype="float32",
                  **VARIANTS[variant]["net"])
    assert all(np.array_equal(ref.params[k], net.params[k]) for k in ref.params)


def test_plain_lstm_is_still_not_layer_normalised():
    net = make_network(get_task("adding"), "lstm", hidden=4, seed=0)
    assert type(net.layers[0]) is LSTMLayer


def test_parity_has_defaults_and_runs_every_new_variant():
    assert "parity" in DEFAULTS
    assert resolve("parity", "mingru")["optimizer"] == "adam"
    result = run_experiment("parity", cells=["lnlstm", "mingru", "minlstm"], seq_lens=[6], seeds=[0], out_dir=None,
                            steps=3, hidden=4, batch=4, eval_every=3, eval_batch=8)
    assert [row["cell"] for row in result["summary"]] == ["lnlstm", "mingru", "minlstm"]
    assert all(np.isfinite(row["mean"]) for row in result["summary"])
