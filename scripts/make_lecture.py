#!/usr/bin/env python
"""Regenerate docs/lecture.md, docs/lecture.ipynb and docs/figures/lecture_*.png from ONE source: the
list of cells below -- the lecture "Backpropagation in RNNs" (IIT Hyderabad, Deep Learning for
Computer Vision, lecture 52), slide by slide, computed with bptt and checked numerically.

    python scripts/make_lecture.py            # about half a minute on one core

Each cell is markdown or Python. lecture.md is the cells with every code cell executed here, in
order, in one namespace: the code shown, then what it printed and the figures it showed.
lecture.ipynb is the same cells as a notebook, stored without outputs (tests/test_lecture_notebook.py
executes it top to bottom with nbclient). So the two cannot disagree: prose never holds a computed
number; every number is printed by the code beside it (float64, seeded: it repeats).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

INTRO = """# The lecture, computed: backpropagation through time with bptt

This page walks through the lecture *Backpropagation in RNNs* (Vineeth N. Balasubramanian, IIT Hyderabad,
Deep Learning for Computer Vision, lecture 52; slides after Denny Britz's WildML tutorial) and checks every
formula numerically. `docs/lecture.md` and the notebook `docs/lecture.ipynb` are generated from one source by
`python scripts/make_lecture.py`; every number is printed by the code above it (float64, seeded)."""

CELLS = [
    ("md", INTRO),
    ("code", '''\
import os
import numpy as np
import bptt
from bptt import diagnostics as D, rtrl
from bptt.diagnostics import plots
from bptt.functional import softmax
from bptt.gradcheck import numerical_gradient, relative_error

FIGURES = os.environ.get("BPTT_LECTURE_FIGURES", "figures")   # where this notebook writes its figures
os.makedirs(FIGURES, exist_ok=True)


def show(path):
    """Show a figure inline (Jupyter); elsewhere print where it is."""
    try:
        from IPython.display import Image, display
        display(Image(filename=path))
    except ImportError:
        print(path)


def rel(a, b):
    return f"{relative_error(a, b):.1e}"


def only_step(t, T=5):
    """The mask that keeps E_t alone: the loss is E = sum_t E_t."""
    mask = np.zeros((T, 1))
    mask[t] = 1.0
    return mask


def fd(net, x, y, mask, name):
    """Central finite differences of the masked loss with respect to net.params[name]."""
    return numerical_gradient(lambda: net.loss_only(x, y, mask), net.params[name])'''),
    ("md", """## 1. The forward pass (slide 3)

    h_t = tanh(U x_t + W h_{t-1}),   y^_t = softmax(V h_t),   E_t = -y_t log y^_t,   E = sum_t E_t

The lecture's RNN exactly: no biases, x_t one-hot over 8 symbols (token ids), 6 hidden units, 8 output
classes, T = 5 steps (t = 0..4)."""),
    ("code", '''\
net = bptt.Network(8, 6, 8, bias=False, seed=52)     # the lecture's equations: no biases
rng = np.random.default_rng(52)
x = rng.integers(0, 8, size=(5, 1))                  # (T, B) token ids: x_t one-hot
y = rng.integers(0, 8, size=(5, 1))                  # targets y_t
fwd = net.forward(x)
E = net.loss_only(x, y)
E_t = [net.loss_only(x, y, only_step(t)) for t in range(5)]
print(f"E = {E:.6f}; E_0..E_4 = {', '.join(f'{e:.4f}' for e in E_t)}; "
      f"their sum {sum(E_t):.6f} (difference {abs(E - sum(E_t)):.1e})")'''),
    ("md", """## 2. dE_3/dV = (y^_3 - y_3) (x) h_3 (slide 5)

V touches the loss only at the step it is used, so no sum over time is needed. Summed over t this is
`dE/dV = sum_t (y^_t - y_t) (x) h_t`, one GEMM in `layers/readout.py`."""),
    ("code", '''\
by_hand = np.outer(softmax(fwd.outputs[3, 0]) - np.eye(8)[y[3, 0]], fwd.hidden[0][3, 0])   # the slide's formula
_, grads = net.loss_and_grads(x, y, mask=only_step(3))                                     # E_3 alone
print("slide formula vs bptt's BPTT:        ", rel(by_hand, grads["V"]))
print("slide formula vs finite differences: ", rel(by_hand, fd(net, x, y, only_step(3), "V")))'''),
    ("md", """## 3. dE_3/dW: a sum over k (slides 6-8)

h_3 depends on W directly and through h_2, h_1, h_0, so

    dE_3/dW = sum_{k=0..3} dE_3/dy^_3 dy^_3/dh_3 ( prod_{j=k+1..3} dh_j/dh_{j-1} ) d+h_k/dW,
    dh_j/dh_{j-1} = diag(1 - h_j^2) W,    term k = (dE_3/da_k) (x) h_{k-1}

Each term computed literally from that formula (an explicit product of Jacobians), beside
`bptt.diagnostics.step_contributions(net, x, y, t=3, param='W')`. Term k = 0 is exactly zero: it is
multiplied by h_{-1} = 0."""),
    ("code", '''\
h = fwd.hidden[0][:, 0]                                  # (T, H): h_t
h_prev = np.vstack([np.zeros(6), h[:-1]])                # h_{t-1}, h_{-1} = 0
W, V = net.params["layers.0.W"], net.params["V"]
delta3 = (softmax(fwd.outputs[3, 0]) - np.eye(8)[y[3, 0]]) @ V     # dE_3/dh_3
terms = []
for k in range(4):
    g = delta3.copy()
    for j in range(3, k, -1):
        g = (g * (1 - h[j] ** 2)) @ W                    # times dh_j/dh_{j-1} = diag(1 - h_j^2) W
    terms.append(np.outer(g * (1 - h[k] ** 2), h_prev[k]))   # times d+h_k/dW: (dE_3/da_k) (x) h_{k-1}
terms = np.array(terms)
C = D.step_contributions(net, x, y, 3, "W")
for k in range(4):
    print(f"k = {k}: ||term k|| = {np.linalg.norm(terms[k]):.3e}, vs step_contributions {rel(terms[k], C[k])}")
_, grads = net.loss_and_grads(x, y, only_step(3))
print("sum of the terms vs BPTT dE_3/dW:       ", rel(terms.sum(0), grads["layers.0.W"]))
print("sum of the terms vs finite differences: ", rel(terms.sum(0), fd(net, x, y, only_step(3), "layers.0.W")))
per_t = sum(net.loss_and_grads(x, y, only_step(t))[1]["layers.0.W"] for t in range(5))
print("dE/dW = sum_t dE_t/dW (slide 4) vs BPTT:", rel(per_t, net.loss_and_grads(x, y)[1]["layers.0.W"]))'''),
    ("md", """## 4. Homework: dE_3/dU (slide 7)

U enters every step exactly like W, with x_k in place of h_{k-1}:

    dE_3/dU = sum_{k=0..3} (dE_3/da_k) (x) x_k,
    dE_3/da_k = (dE_3/dh_k) * (1 - h_k^2),   dE_3/dh_{k-1} = (dE_3/da_k) W,   dE_3/dh_3 = (y^_3 - y_3) V.

With one-hot x_k, term k adds dE_3/da_k to column x_k of the gradient (what `scatter_add_columns` does)."""),
    ("code", '''\
g = delta3.copy()                                        # dE_3/dh_3
dU = np.zeros_like(net.params["layers.0.U"])
for k in range(3, -1, -1):
    da = g * (1 - h[k] ** 2)                             # dE_3/da_k
    dU[:, x[k, 0]] += da                                 # x_k one-hot: one column
    g = da @ W                                           # dE_3/dh_{k-1}
print("homework formula vs BPTT:                 ", rel(dU, grads["layers.0.U"]))
print("homework formula vs finite differences:   ", rel(dU, fd(net, x, y, only_step(3), "layers.0.U")))
print("homework formula vs sum of the step terms:", rel(dU, D.step_contributions(net, x, y, 3, "U").sum(0)))'''),
    ("md", """## 5. The vanishing product (slides 9-10)

tanh' = 1 - h^2 <= 1, so each factor diag(1 - h_j^2) W has norm at most ||W||: with the largest singular
value of W below 1 the product must shrink geometrically (Pascanu et al. 2013, sec. 2.2).
`bptt.diagnostics.jacobian_norms(net, x)` measures ||dh_t/dh_k|| exactly. 32 tanh units, 8 random sequences
of length 60. Even at spectral radius 1 (orthogonal W) the product decays: the tanh derivatives are below 1
wherever the units are not at 0."""),
    ("code", '''\
rng = np.random.default_rng(0)
xs = rng.standard_normal((60, 8, 4))
curves = {}
for rho in (0.5, 0.9, 1.0):
    tanh_net = bptt.Network(4, 32, 4, recurrent_init="orthogonal", spectral_radius=rho, seed=1)
    curves[f"tanh, rho(W) = {rho}"] = (np.arange(60), D.jacobian_norms(tanh_net, xs, t=59)[59, ::-1])
small = bptt.Network(4, 32, 4, seed=1)                   # torch's default init
rho = D.spectral_radius(small.params["layers.0.W"])
curves[f"tanh, torch default init (rho = {rho:.2f})"] = (np.arange(60), D.jacobian_norms(small, xs, t=59)[59, ::-1])
show(plots.curves(curves, os.path.join(FIGURES, "lecture_vanishing_product.png"),
                  title="||dh_59/dh_k|| for tanh RNNs (batch mean)", xlabel="lag 59 - k",
                  ylabel="spectral norm of the product of Jacobians"))
for label, (_, values) in curves.items():
    print(f"{label:<40} ||dh_59/dh_49|| {values[10]:.2e}  ||dh_59/dh_29|| {values[30]:.2e}  "
          f"||dh_59/dh_0|| {values[59]:.2e}")'''),
    ("md", """Term by term, for E_t at every t (30 steps, torch's default init): the long lags (bottom left)
contribute almost nothing."""),
    ("code", '''\
targets = rng.integers(0, 4, size=(30, 8))
table = D.contribution_norms(small, xs[:30], targets, "W")
show(plots.contributions_heatmap(table, os.path.join(FIGURES, "lecture_contributions.png"),
                                 title="tanh RNN, torch init: ||term k of dE_t/dW||"))
profile = D.lag_profile(table, reduce="mean")
print(f"the mean term at lag 10 is {profile[10] / profile[0]:.1e} of the lag-0 term; "
      f"effective memory (first lag below 1% of lag 0): {D.effective_memory(profile, 0.01)} steps")'''),
    ("md", """## 6. Exploding gradients and clipping (slide 11)

With factors of norm above 1 the product grows instead. A ReLU RNN with W = 1.15 I and every unit active
multiplies by exactly 1.15 per step. The gradient of the last step's loss grows with T; clipping the global
norm (Pascanu et al. 2013, Alg. 1: rescale all gradients by threshold/norm, keeping the direction) caps it.
The lecture's version, "if the gradient exceeds 10, use 10", is clipping by value, which also changes the
direction."""),
    ("code", '''\
def relu_net():
    net = bptt.Network(4, 16, 4, nonlinearity="relu", recurrent_init="identity", spectral_radius=1.15, seed=2)
    net.params["layers.0.b"][...] = 0.1                  # every unit active: the ReLU product is W^(t-k)
    return net

rng = np.random.default_rng(3)
lengths, norms, clipped = [5, 10, 20, 40, 60], [], []
for T in lengths:
    xT = np.abs(rng.standard_normal((T, 4, 4)))
    mask = np.zeros((T, 4))
    mask[-1] = 1                                         # E_T alone
    _, g = relu_net().loss_and_grads(xT, rng.integers(0, 4, size=(T, 4)), mask)
    norms.append(bptt.global_norm(g))
    bptt.clip_by_global_norm(g, 10.0)
    clipped.append(bptt.global_norm(g))
    print(f"T = {T:>2}: ||dE_T/dtheta|| = {norms[-1]:.3e}, after clipping at 10: {clipped[-1]:.3f}")
J = D.jacobian_norms(relu_net(), np.abs(rng.standard_normal((60, 4, 4))), t=59)
print(f"||dh_59/dh_0|| = {J[59, 0]:.3e};  1.15^59 = {1.15 ** 59:.3e}")
show(plots.curves({"||dE_T/dtheta|| before clipping": (lengths, norms),
                   "after clip_by_global_norm(grads, 10)": (lengths, clipped)},
                  os.path.join(FIGURES, "lecture_exploding.png"),
                  title="ReLU RNN, W = 1.15 I: exploding gradients and clipping", xlabel="sequence length T",
                  ylabel="global gradient norm", hline=10.0, hline_label="threshold 10"))
demo = {"g": np.array([1e3, -4.0, 20.0])}
info = bptt.clip_by_value(demo, 10.0)
print(f"clip_by_value([1000, -4, 20], 10) -> {demo['g'].tolist()} ({info.num_clipped} entries changed)")'''),
    ("md", """## 7. The closing question: remedies (slide 12)

Without changing the architecture: orthogonal or identity initialisation (IRNN: ReLU with W = I, Le, Jaitly
& Hinton 2015), a chosen spectral radius (`Network(recurrent_init=..., spectral_radius=...)`), clipping
(`bptt.clip_by_global_norm`), and Pascanu et al.'s regulariser Omega
(`bptt.training.regularizers.loss_and_grads_with_omega`). Changing it: the LSTM and GRU, whose additive
state update keeps a path where the factor is the forget gate (LSTM: dc_t/dc_{t-1} = diag(f_t)) rather
than a product with tanh'. At initialisation, 32 units, 8 sequences of 80 steps (for the LSTM the Jacobian
of the full state (h, c)). Whether a network then *learns* a long-range dependency is measured by
`bptt experiment vanishing` (the adding problem): see [vanishing.md](vanishing.md)."""),
    ("code", '''\
rng = np.random.default_rng(5)
x80 = rng.standard_normal((80, 8, 4)) * 0.5
nets = {"tanh RNN (torch init)": bptt.Network(4, 32, 4, seed=3),
        "tanh RNN, orthogonal W": bptt.Network(4, 32, 4, recurrent_init="orthogonal", seed=3),
        "IRNN (ReLU, W = I)": bptt.Network(4, 32, 4, nonlinearity="relu", recurrent_init="identity", seed=3),
        "GRU": bptt.Network(4, 32, 4, cell="gru", seed=3),
        "LSTM (forget bias 1), state (h, c)": bptt.Network(4, 32, 4, cell="lstm", seed=3)}
remedies = {}
for label, model in nets.items():
    J = D.jacobian_norms(model, x80, t=79, ord="fro")
    remedies[label] = (np.arange(80), J[79, ::-1] / J[79, 79])
    values = remedies[label][1]
    print(f"{label:<36} relative ||ds_79/ds_69|| {values[10]:.2e}  ||ds_79/ds_39|| {values[40]:.2e}  "
          f"||ds_79/ds_0|| {values[79]:.2e}")
show(plots.curves(remedies, os.path.join(FIGURES, "lecture_remedies.png"),
                  title="||ds_79/ds_k||_F / ||I||_F at initialisation", xlabel="lag 79 - k",
                  ylabel="relative Frobenius norm"))'''),
    ("md", """## 8. RTRL beside BPTT: the same sum, computed forwards

BPTT walks back from each E_t. Real-time recurrent learning (Williams & Zipser 1989) carries the
sensitivities M_t = dh_t/dtheta forward instead, M_t = D_t M_{t-1} + I_t with D_t = dh_t/dh_{t-1} and I_t the
immediate dh_t/dtheta: unrolled, M_t = sum_{k<=t} (prod_{j=k+1..t} dh_j/dh_{j-1}) d+h_k/dtheta -- the
lecture's sum over k, accumulated as time runs. Then dE/dtheta = sum_t dE_t/dh_t M_t, with no backward pass
and nothing stored per step. `bptt.rtrl.loss_and_grads` writes D_t and I_t out from each cell's equations,
so it checks BPTT independently. The price: the product D_t M_{t-1} costs O(H^2 P) per step (P parameters)
against BPTT's O(P), in O(H P) memory against BPTT's O(T H) (`bench/rtrl_cost.py` measures it)."""),
    ("code", '''\
for cell in ("rnn", "lstm", "gru"):
    model = bptt.Network(8, 6, 8, cell=cell, num_layers=2, seed=52)
    loss_b, grads_b = model.loss_and_grads(x, y)
    loss_r, grads_r = rtrl.loss_and_grads(model, x, y)
    worst = max(relative_error(grads_r[k], grads_b[k]) for k in grads_b)
    print(f"{cell:>4}, 2 layers: |E_RTRL - E_BPTT| = {abs(loss_r - loss_b):.1e}, "
          f"largest relative gradient difference {worst:.1e} over {len(grads_b)} parameters")'''),
]


def _run_cells(figures_dir: str) -> list:
    """Execute every code cell in one namespace; returns the markdown of lecture.md."""
    os.environ["BPTT_LECTURE_FIGURES"] = figures_dir
    namespace: dict = {"__name__": "__lecture__"}
    shown: list = []                                      # the figures the current cell showed

    def record(path):                                     # lecture.md links a figure instead of displaying it
        shown.append(path)

    out = []
    for kind, source in CELLS:
        if kind == "md":
            out += [source, ""]
            continue
        shown.clear()
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(source, "<lecture>", "exec"), namespace)
        namespace["show"] = record                        # the setup cell defined the notebook's show
        out += ["```python", source, "```", ""]
        printed = buffer.getvalue().rstrip("\n")
        if printed:
            out += ["```text", printed, "```", ""]
        out += [line for path in shown for line in (f"![{os.path.basename(path)}](figures/{os.path.basename(path)})", "")]
    return out


def notebook():
    """The cells as an nbformat v4 notebook, without outputs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:02d}"                 # stable ids: regenerating changes nothing
    return nb


def main() -> int:
    import nbformat

    from bptt.io.files import write_text

    figures = os.path.join(DOCS, "figures")
    os.makedirs(figures, exist_ok=True)
    markdown = _run_cells(figures)
    write_text(os.path.join(DOCS, "lecture.md"), "\n".join(markdown).rstrip("\n") + "\n")
    write_text(os.path.join(DOCS, "lecture.ipynb"), nbformat.writes(notebook()) + "\n")
    print(f"wrote {DOCS}/lecture.md, {DOCS}/lecture.ipynb and {figures}/lecture_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
