"""The diagonal linear recurrence of minGRU/minLSTM (Feng et al. 2024), and its BPTT.

    h_t = a_t * h_{t-1} + b_t            a, b, h: (T, B, H); h_0 given (B, H)

Forward is a scan. Backward, with g_t = dE/dh_t (all paths) and dh[t] the gradient from above:

    g_T   = dh[T] + dE/dh_T(final)
    g_t   = dh[t] + a_{t+1} * g_{t+1}        (the reverse scan: dh_{t+1}/dh_t = diag(a_{t+1}))
    da_t  = g_t * h_{t-1}
    db_t  = g_t
    dh_0  = a_1 * g_1

The lecture's product of Jacobians is here the element-wise product  a_{k+1} * ... * a_t,
so the gradient's decay with the time lag is known in closed form.

Two ways to compute the same forward: ``sequential`` (the loop above) and ``blocked``: each
block of k steps is scanned from a zero state alongside the running product of its a's,
then the blocks are chained by the associative rule  (a, b) o (a', b') = (a a', a' b + b')
-- the form a parallel scan uses. Both give the same numbers to rounding (tests).
With numba installed (``bptt.kernels``) the sequential loops run compiled (kernels/scan.py).
"""

from __future__ import annotations

import numpy as np

from .. import kernels


def linear_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray, method: str = "sequential",
                block: int = 16) -> np.ndarray:
    """h (T, B, H) with h_t = a_t * h_{t-1} + b_t. ``method``: "sequential" or "blocked" (``block`` steps)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3 or np.shape(h0) != a.shape[1:]:
        raise ValueError(f"linear_scan needs a, b of one shape (T, B, H) and h0 (B, H), "
                         f"got {a.shape}, {b.shape}, {np.shape(h0)}")
    if method == "sequential":
        h = np.empty(a.shape, np.result_type(a, b, h0))
        if kernels.enabled() and h.dtype in (np.float32, np.float64) and a.dtype == b.dtype == h.dtype:
            from ..kernels import scan as scan_kernels
            scan_kernels.forward(np.ascontiguousarray(a), np.ascontiguousarray(b),
                                 np.ascontiguousarray(h0, h.dtype), h)
            return h
        prev = h0
        for t in range(a.shape[0]):
            np.multiply(a[t], prev, out=h[t])
            h[t] += b[t]
            prev = h[t]
        return h
    if method == "blocked":
        return _blocked_scan(a, b, h0, block)
    raise ValueError(f"method must be 'sequential' or 'blocked', got {method!r}")


def _blocked_scan(a, b, h0, block: int) -> np.ndarray:
    T = a.shape[0]
    h = np.empty(a.shape, np.result_type(a, b, h0))
    carry = np.asarray(h0, h.dtype)
    for start in range(0, T, block):
        stop = min(start + block, T)
        local = linear_scan(a[start:stop], b[start:stop], np.zeros_like(carry))   # from a zero state
        products = np.cumprod(a[start:stop], axis=0)                               # a_start ... a_t
        h[start:stop] = local + products * carry                                    # (A, B) o carry
        carry = h[stop - 1]
    return h


def linear_scan_backward(a: np.ndarray, h: np.ndarray, h0: np.ndarray, dh: np.ndarray,
                         dh_final: np.ndarray | None = None):
    """BPTT through the scan: (da, g, dh0) with g_t = dE/dh_t (all paths) = db_t, from the forward's
    a (T, B, H), h (T, B, H), h0 (B, H), the gradient from above dh (T, B, H) and dE/dh_T (B, H) or None."""
    T = a.shape[0]
    dtype = np.result_type(a, dh)
    g = np.empty(a.shape, dtype)
    carry = np.zeros(a.shape[1:], dtype) if dh_final is None else np.array(dh_final, dtype)
    if kernels.enabled() and dtype in (np.float32, np.float64) and a.dtype == dh.dtype == dtype:
        from ..kernels import scan as scan_kernels
        carry = scan_kernels.backward(np.ascontiguousarray(a), np.ascontiguousarray(dh), carry, g)
    else:
        for t in range(T - 1, -1, -1):
            np.add(dh[t], carry, out=g[t])                  # g_t = dh[t] + a_{t+1} g_{t+1}
            carry = a[t] * g[t]                              # its share for step t-1
    da = np.empty_like(g)
    da[0] = g[0] * h0
    np.multiply(g[1:], h[:-1], out=da[1:])                   # da_t = g_t h_{t-1}
    return da, g, carry                                      # db_t = g_t; dh0 = a_1 g_1 = the last carry
