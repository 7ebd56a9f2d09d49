#!/usr/bin/env python
"""Regenerate docs/lecture.md and docs/figures/lecture_*.png: the lecture "Backpropagation
in RNNs" (IIT Hyderabad, Deep Learning for Computer Vision, lecture 52), slide by slide,
computed with bptt and checked numerically.

    python scripts/make_lecture.py            # about half a minute on one core

Every number in the document is computed when this script runs (seeded: it repeats).
"""

from __future__ import annotations

import os
import sys

import numpy as np

import bptt
from bptt import diagnostics as D
from bptt.diagnostics import plots
from bptt.functional import softmax
from bptt.gradcheck import numerical_gradient, relative_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
FIGURES = os.path.join(DOCS, "figures")


def fig(name: str) -> str:
    return os.path.join(FIGURES, name)


def rel(a, b) -> str:
    return f"{relative_error(a, b):.1e}"


def lecture_network():
    """The lecture's RNN exactly: h_t = tanh(U x_t + W h_{t-1}), y^_t = softmax(V h_t), no biases;
    x_t one-hot over 8 symbols (token ids), 6 hidden units, 8 output classes, T = 5 (t = 0..4)."""
    net = bptt.Network(8, 6, 8, bias=False, seed=52)
    rng = np.random.default_rng(52)
    x = rng.integers(0, 8, size=(5, 1))            # (T, B) token ids: x_t one-hot
    y = rng.integers(0, 8, size=(5, 1))            # targets y_t
    return net, x, y


def only_step(t: int, T: int = 5) -> np.ndarray:
    """The mask that keeps E_t alone: the loss is E = sum_t E_t."""
    mask = np.zeros((T, 1))
    mask[t] = 1.0
    return mask


def fd(net, x, y, mask, name):
    return numerical_gradient(lambda: net.loss_only(x, y, mask), net.params[name])


def section_forward(out, net, x, y):
    fwd = net.forward(x)
    E = net.loss_only(x, y)
    E_t = [net.loss_only(x, y, only_step(t)) for t in range(5)]
    out += ["## 1. The forward pass (slide 3)", "",
            "    h_t = tanh(U x_t + W h_{t-1}),   y^_t = softmax(V h_t),   E_t = -y_t log y^_t,   E = sum_t E_t", "",
            "```python",
            "net = bptt.Network(8, 6, 8, bias=False, seed=52)     # the lecture's equations: no biases",
            "fwd = net.forward(x)                                  # x: (T=5, B=1) token ids = one-hot x_t",
            "```", "",
            f"E = {E:.6f}; the per-step losses E_0..E_4 = {', '.join(f'{e:.4f}' for e in E_t)} "
            f"add up to {sum(E_t):.6f} (difference {abs(E - sum(E_t)):.1e}).", ""]
    return fwd


def section_dV(out, net, x, y, fwd):
    probs = softmax(fwd.outputs[3, 0])                       # y^_3
    onehot = np.eye(8)[y[3, 0]]                              # y_3
    h3 = fwd.hidden[0][3, 0]                                 # h_3
    by_hand = np.outer(probs - onehot, h3)                   # (y^_3 - y_3) (x) h_3
    _, grads = net.loss_and_grads(x, y, only_step(3))
    numeric = fd(net, x, y, only_step(3), "V")
    out += ["## 2. dE_3/dV = (y^_3 - y_3) (x) h_3 (slide 5)", "",
            "V touches the loss only at the step it is used, so no sum over time is needed:", "",
            "```python",
            "by_hand = np.outer(softmax(z_3) - onehot(y_3), h_3)   # the slide's formula",
            "_, grads = net.loss_and_grads(x, y, mask=only_step(3))  # E_3 alone",
            "```", "",
            "| compared | relative error |", "|---|---|",
            f"| slide formula vs bptt's BPTT | {rel(by_hand, grads['V'])} |",
            f"| slide formula vs central finite differences | {rel(by_hand, numeric)} |", "",
            "Summed over t this is `dE/dV = sum_t (y^_t - y_t) (x) h_t`, one GEMM in `layers/readout.py`.", ""]


def section_dW(out, net, x, y, fwd):
    h = fwd.hidden[0][:, 0]                                  # (T, H): h_t
    h_prev = np.vstack([np.zeros(6), h[:-1]])                # h_{t-1}, h_{-1} = 0
    W, V = net.params["layers.0.W"], net.params["V"]
    delta3 = (softmax(fwd.outputs[3, 0]) - np.eye(8)[y[3, 0]]) @ V    # dE_3/dy^_3 dy^_3/dh_3 = dE_3/dh_3
    terms = []
    for k in range(4):
        g = delta3.copy()                                    # dE_3/dh_3 ...
        for j in range(3, k, -1):
            g = (g * (1 - h[j] ** 2)) @ W                    # ... times dh_j/dh_{j-1} = diag(1 - h_j^2) W
        terms.append(np.outer(g * (1 - h[k] ** 2), h_prev[k]))   # times d+h_k/dW: (dE_3/da_k) (x) h_{k-1}
    terms = np.array(terms)
    C = D.step_contributions(net, x, y, 3, "W")
    _, grads = net.loss_and_grads(x, y, only_step(3))
    numeric = fd(net, x, y, only_step(3), "layers.0.W")
    per_t = sum(net.loss_and_grads(x, y, only_step(t))[1]["layers.0.W"] for t in range(5))
    _, full = net.loss_and_grads(x, y)
    out += ["## 3. dE_3/dW: a sum over k (slides 6-8)", "",
            "h_3 depends on W directly and through h_2, h_1, h_0, so", "",
            "    dE_3/dW = sum_{k=0..3} dE_3/dy^_3 dy^_3/dh_3 ( prod_{j=k+1..3} dh_j/dh_{j-1} ) d+h_k/dW,",
            "    dh_j/dh_{j-1} = diag(1 - h_j^2) W,    term k = (dE_3/da_k) (x) h_{k-1}", "",
            "The script computes each term literally from that formula (an explicit product of Jacobians) and "
            "compares it with `bptt.diagnostics.step_contributions(net, x, y, t=3, param='W')`:", "",
            "| k | ‖term k‖ (slide formula) | relative error vs step_contributions |", "|---|---|---|"]
    for k in range(4):
        out.append(f"| {k} | {np.linalg.norm(terms[k]):.3e} | {rel(terms[k], C[k])} |")
    out += ["", "| compared | relative error |", "|---|---|",
            f"| sum of the 4 terms vs bptt's BPTT dE_3/dW | {rel(terms.sum(0), grads['layers.0.W'])} |",
            f"| sum of the 4 terms vs central finite differences | {rel(terms.sum(0), numeric)} |",
            f"| dE/dW = sum_t dE_t/dW (slide 4) vs BPTT of E | {rel(per_t, full['layers.0.W'])} |", "",
            "Term k = 0 is exactly zero here: it is multiplied by h_{-1} = 0.", ""]


def section_dU(out, net, x, y, fwd):
    h = fwd.hidden[0][:, 0]
    W, V = net.params["layers.0.W"], net.params["V"]
    g = (softmax(fwd.outputs[3, 0]) - np.eye(8)[y[3, 0]]) @ V          # dE_3/dh_3
    dU = np.zeros_like(net.params["layers.0.U"])
    for k in range(3, -1, -1):
        da = g * (1 - h[k] ** 2)                             # dE_3/da_k
        dU[:, x[k, 0]] += da                                 # d+h_k/dU: da_k (x) x_k, x_k one-hot -> one column
        g = da @ W                                           # dE_3/dh_{k-1}
    C = D.step_contributions(net, x, y, 3, "U")
    _, grads = net.loss_and_grads(x, y, only_step(3))
    numeric = fd(net, x, y, only_step(3), "layers.0.U")
    out += ["## 4. Homework: dE_3/dU (slide 7)", "",
            "U enters every step exactly like W, with x_k in place of h_{k-1}:", "",
            "    dE_3/dU = sum_{k=0..3} dE_3/dy^_3 dy^_3/dh_3 ( prod_{j=k+1..3} diag(1 - h_j^2) W ) diag(1 - h_k^2) d(U x_k)/dU",
            "            = sum_{k=0..3} (dE_3/da_k) (x) x_k,",
            "    dE_3/da_k = (dE_3/dh_k) * (1 - h_k^2),   dE_3/dh_{k-1} = (dE_3/da_k) W,   dE_3/dh_3 = (y^_3 - y_3) V.", "",
            "With one-hot x_k, term k adds dE_3/da_k to column x_k of the gradient (what `scatter_add_columns` does).", "",
            "| compared | relative error |", "|---|---|",
            f"| homework formula vs bptt's BPTT | {rel(dU, grads['layers.0.U'])} |",
            f"| homework formula vs central finite differences | {rel(dU, numeric)} |",
            f"| homework formula vs sum of step_contributions(param='U') | {rel(dU, C.sum(0))} |", ""]


def section_vanishing(out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8, 4))
    curves, memories = {}, {}
    for rho in (0.5, 0.9, 1.0):
        net = bptt.Network(4, 32, 4, recurrent_init="orthogonal", spectral_radius=rho, seed=1)
        J = D.jacobian_norms(net, x, t=59)
        curves[f"tanh, rho(W) = {rho}"] = (np.arange(60), J[59, ::-1])
    small = bptt.Network(4, 32, 4, seed=1)                 # torch's default init
    J = D.jacobian_norms(small, x, t=59)
    curves[f"tanh, torch default init (rho = {D.spectral_radius(small.params['layers.0.W']):.2f})"] = (
        np.arange(60), J[59, ::-1])
    plots.curves(curves, fig("lecture_vanishing_product.png"), title="||dh_59/dh_k|| for tanh RNNs (batch mean)",
                 xlabel="lag 59 - k", ylabel="spectral norm of the product of Jacobians")
    # the decomposition as a table, for the default-init network on a many-to-many problem
    targets = rng.integers(0, 4, size=(30, 8))
    table = D.contribution_norms(small, x[:30], targets, "W")
    plots.contributions_heatmap(table, fig("lecture_contributions.png"),
                                title="tanh RNN, torch init: ||term k of dE_t/dW||")
    profile = D.lag_profile(table, reduce="mean")
    memory = D.effective_memory(profile, 0.01)
    out += ["## 5. The vanishing product (slides 9-10)", "",
            "tanh' = 1 - h^2 <= 1, so each factor diag(1 - h_j^2) W has norm at most ||W||: with the largest "
            "singular value of W below 1 the product must shrink geometrically (Pascanu et al. 2013, sec. 2.2).",
            "`bptt.diagnostics.jacobian_norms(net, x)` measures ||dh_t/dh_k|| exactly (tested against torch autograd "
            "and finite differences). 32 tanh units, 8 random sequences of length 60:", "",
            "![vanishing product](figures/lecture_vanishing_product.png)", "",
            "| recurrent W | ‖dh_59/dh_49‖ | ‖dh_59/dh_29‖ | ‖dh_59/dh_0‖ |", "|---|---|---|---|"]
    for label, (_, values) in curves.items():
        out.append(f"| {label} | {values[10]:.2e} | {values[30]:.2e} | {values[59]:.2e} |")
    out += ["", "Even at spectral radius 1 (orthogonal W) the product decays: the tanh derivatives are below 1 "
            "wherever the units are not at 0.", "",
            "Term by term, for E_t at every t (30 steps, torch's default init): the long lags (bottom left) "
            "contribute almost nothing:", "",
            "![contributions](figures/lecture_contributions.png)", "",
            f"The mean term at lag 10 is {profile[10] / profile[0]:.1e} of the lag-0 term; the effective memory "
            f"(first lag below 1% of lag 0) is {memory} steps.", ""]


def section_exploding(out):
    rng = np.random.default_rng(3)
    lengths = [5, 10, 20, 40, 60]
    norms, clipped_norms = [], []
    for T in lengths:
        net = bptt.Network(4, 16, 4, nonlinearity="relu", recurrent_init="identity", spectral_radius=1.15, seed=2)
        net.params["layers.0.b"][...] = 0.1              # every unit active: the ReLU product is W^(t-k)
        x = np.abs(rng.standard_normal((T, 4, 4)))
        y = rng.integers(0, 4, size=(T, 4))
        mask = np.zeros((T, 4))
        mask[-1] = 1                                       # E_T alone
        _, grads = net.loss_and_grads(x, y, mask)
        norms.append(bptt.global_norm(grads))
        bptt.clip_by_global_norm(grads, 10.0)
        clipped_norms.append(bptt.global_norm(grads))
    net = bptt.Network(4, 16, 4, nonlinearity="relu", recurrent_init="identity", spectral_radius=1.15, seed=2)
    net.params["layers.0.b"][...] = 0.1
    xs = np.abs(rng.standard_normal((60, 4, 4)))
    J = D.jacobian_norms(net, xs, t=59)
    plots.curves({"||dE_T/dtheta|| before clipping": (lengths, norms),
                  "after clip_by_global_norm(grads, 10)": (lengths, clipped_norms)},
                 fig("lecture_exploding.png"), title="ReLU RNN, W = 1.15 I: exploding gradients and clipping",
                 xlabel="sequence length T", ylabel="global gradient norm", hline=10.0, hline_label="threshold 10")
    grads_demo = {"g": np.array([1e3, -4.0, 20.0])}
    by_value = bptt.clip_by_value({"g": grads_demo["g"].copy()}, 10.0)
    out += ["## 6. Exploding gradients and clipping (slide 11)", "",
            "With factors of norm above 1 the product grows instead. A ReLU RNN with W = 1.15 I and every unit "
            f"active multiplies by exactly 1.15 per step: ||dh_59/dh_0|| = {J[59, 0]:.3e} = 1.15^59 "
            f"= {1.15 ** 59:.3e}. The gradient of the last step's loss grows with T; clipping the global norm "
            "(Pascanu et al. 2013, Alg. 1: rescale all gradients by threshold/norm, keeping the direction) caps it:", "",
            "![exploding](figures/lecture_exploding.png)", "",
            "| T | ‖dE_T/dθ‖ | after clipping at 10 |", "|---|---|---|"]
    for T, n, c in zip(lengths, norms, clipped_norms):
        out.append(f"| {T} | {n:.3e} | {c:.3f} |")
    out += ["", "The lecture's version, \"if the gradient exceeds 10, use 10\", is clipping by value: "
            f"`bptt.clip_by_value(grads, 10)` turns [1000, -4, 20] into {grads_demo['g'].clip(-10, 10).tolist()} "
            f"({by_value.num_clipped} entries changed) -- it also changes the direction, which norm clipping does not.", ""]


def section_remedies(out):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((80, 8, 4)) * 0.5
    curves = {}
    nets = {"tanh RNN (torch init)": bptt.Network(4, 32, 4, seed=3),
            "tanh RNN, orthogonal W": bptt.Network(4, 32, 4, recurrent_init="orthogonal", seed=3),
            "IRNN (ReLU, W = I)": bptt.Network(4, 32, 4, nonlinearity="relu", recurrent_init="identity", seed=3),
            "GRU": bptt.Network(4, 32, 4, cell="gru", seed=3),
            "LSTM (forget bias 1), state (h, c)": bptt.Network(4, 32, 4, cell="lstm", seed=3)}
    for label, net in nets.items():
        J = D.jacobian_norms(net, x, t=79, ord="fro")
        curves[label] = (np.arange(80), J[79, ::-1] / J[79, 79])
    plots.curves(curves, fig("lecture_remedies.png"), title="||ds_79/ds_k||_F / ||I||_F at initialisation",
                 xlabel="lag 79 - k", ylabel="relative Frobenius norm")
    out += ["## 7. The closing question: remedies (slide 12)", "",
            "Without changing the architecture: orthogonal or identity initialisation (IRNN: ReLU with W = I, "
            "Le, Jaitly & Hinton 2015), a chosen spectral radius (`Network(recurrent_init=..., spectral_radius=...)`), "
            "clipping (`bptt.clip_by_global_norm`), and Pascanu et al.'s regulariser Omega "
            "(`bptt.training.regularizers.loss_and_grads_with_omega`). Changing it: the LSTM and GRU, whose additive state "
            "update keeps a path where the factor is the forget gate (LSTM: dc_t/dc_{t-1} = diag(f_t)) rather than "
            "a product with tanh'. At initialisation, 32 units, 8 sequences of 80 steps (for the LSTM the Jacobian "
            "of the full state (h, c)):", "",
            "![remedies](figures/lecture_remedies.png)", "",
            "| network | relative ‖ds_79/ds_69‖ | relative ‖ds_79/ds_39‖ | relative ‖ds_79/ds_0‖ |",
            "|---|---|---|---|"]
    for label, (_, values) in curves.items():
        out.append(f"| {label} | {values[10]:.2e} | {values[40]:.2e} | {values[79]:.2e} |")
    lstm, tanh = curves["LSTM (forget bias 1), state (h, c)"][1], curves["tanh RNN (torch init)"][1]
    out += ["", f"At lag 79 the LSTM's product is {lstm[79]:.1e} against the tanh RNN's {tanh[79]:.1e} "
            f"({'slower' if lstm[79] > tanh[79] else 'not slower'} decay by a factor {lstm[79] / tanh[79]:.0e}). "
            "Whether a network then *learns* "
            "a long-range dependency is measured by `bptt experiment vanishing` (the adding problem): see "
            "[vanishing.md](vanishing.md).", ""]


def main() -> int:
    os.makedirs(FIGURES, exist_ok=True)
    net, x, y = lecture_network()
    out = ["# The lecture, computed: backpropagation through time with bptt", "",
           "This page walks through the lecture *Backpropagation in RNNs* (Vineeth N. Balasubramanian, IIT "
           "Hyderabad, Deep Learning for Computer Vision, lecture 52; slides after Denny Britz's WildML tutorial) "
           "and checks every formula numerically. It is generated by `python scripts/make_lecture.py`; every "
           "number below is computed when the script runs (float64, seeded).", ""]
    fwd = section_forward(out, net, x, y)
    section_dV(out, net, x, y, fwd)
    section_dW(out, net, x, y, fwd)
    section_dU(out, net, x, y, fwd)
    section_vanishing(out)
    section_exploding(out)
    section_remedies(out)
    path = os.path.join(DOCS, "lecture.md")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    os.replace(tmp, path)
    print(f"wrote {path} and {FIGURES}/lecture_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
