"""Lyapunov exponents of the trained dynamics by the QR method (Benettin et al. 1980; for RNNs,
Vogt et al. 2020, "On Lyapunov exponents for RNNs").

With D_t = ds_t/ds_{t-1} (S, S) the one-step Jacobians along the trajectory the inputs drive
(jacobians.state_jacobians), the product D_T ... D_1 stretches a k-dimensional volume; re-orthonormalising
every step keeps the directions apart:

    Q_0 = [e_1 .. e_k]                      (S, k)
    Q_t R_t = D_t Q_{t-1}                   (QR decomposition, R_t upper triangular)
    lambda_i = (1/T) sum_t log |R_t[i, i]|   per step, natural log, i = 1..k

lambda_1 > 0: nearby states separate (chaos; gradients through time can explode); lambda_1 < 0: they
merge and dE_t/ds_k shrinks like exp(lambda_1 (t - k)) -- gradients vanish at that rate. For a linear
recurrence s_t = W s_{t-1} the exponents are log |eigenvalues of W| (tests/test_lyapunov.py), and
always sum_i lambda_i (k = S) = (1/T) sum_t log |det D_t|.
"""

from __future__ import annotations

import numpy as np

from .jacobians import state_jacobians


def lyapunov_from_jacobians(factors: np.ndarray, k: int | None = None, transient: int = 0) -> np.ndarray:
    """factors (T, B, S, S) -> (B, k): the k largest exponents of each example's trajectory, by QR,
    averaged over the steps after the first ``transient`` (whose QR steps only align Q)."""
    factors = np.asarray(factors)
    if factors.ndim != 4 or factors.shape[2] != factors.shape[3]:
        raise ValueError(f"factors must have shape (T, B, S, S), got {factors.shape}")
    T, B, S, _ = factors.shape
    k = S if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= S:
        raise ValueError(f"k must be an integer in [1, {S}] (the state size), got {k!r}")
    if isinstance(transient, bool) or not isinstance(transient, (int, np.integer)) or not 0 <= transient < T:
        raise ValueError(f"transient must be an integer in [0, {T}) (the sequence length), got {transient!r}")
    Q = np.broadcast_to(np.eye(S)[:, :k], (B, S, k)).copy()
    total = np.zeros((B, k))
    for t in range(T):
        Q, R = np.linalg.qr(factors[t] @ Q)                  # batched over examples
        if t >= transient:
            with np.errstate(divide="ignore"):               # a singular step: -inf, honestly
                total += np.log(np.abs(np.diagonal(R, axis1=1, axis2=2)))
    return total / (T - transient)


def lyapunov_spectrum(net, inputs, k: int | None = None, *, h0=None, layer: int = -1,
                      transient: int = 0) -> np.ndarray:
    """(k,): the k largest Lyapunov exponents (per step, natural log; default all S) of layer ``layer``'s
    state along the trajectory ``inputs`` drive, averaged over the batch, in descending order.
    S = H (RNN, GRU) or 2H (LSTM: the state is (h, c))."""
    factors = state_jacobians(net, inputs, h0, layer)
    exponents = lyapunov_from_jacobians(factors, k, transient).mean(axis=0)
    return np.sort(exponents)[::-1]
