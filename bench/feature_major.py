"""The per-step LSTM products in the two layouts, one thread, float32, interleaved medians: what the
feature-major layout (h as (H, B)) would buy (docs/performance.md, item 23).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/feature_major.py

forward:  h (B, H) @ W^T (H, 4H)  [bptt's]   against   W (4H, H) @ h^T  (a transposed view, no copy),
          alone and followed by a numba transpose of the (4H, B) result back into (B, 4H) (blocked by
          16 rows; a plain loop is several times slower: its strided writes at power-of-two strides
          collide in the cache);
backward: da (B, 4H) @ W (4H, H)  [bptt's]   against   W^T (H, 4H) @ da^T (4H, B), both operands
          contiguous (da transposed first).
"""

import numpy as np

from bptt.benchmark import harness


def main():
    pinned = harness.pin_threads(1)  # noqa: F841
    harness.check_threads(1)
    from bptt.kernels.common import jit

    @jit
    def transpose_blocked(src, dst):
        R, C = src.shape
        for r0 in range(0, R, 16):
            r1 = min(r0 + 16, R)
            for c in range(C):
                d = dst[c]
                for r in range(r0, r1):
                    d[r] = src[r, c]

    rng = np.random.default_rng(0)
    n = 20
    print("float32, 1 thread, us per product (median of 11 interleaved repeats of 20)")
    for H, B in ((128, 32), (256, 32), (512, 64), (1024, 64)):
        G = 4 * H
        W = rng.standard_normal((G, H)).astype(np.float32)
        WT = np.ascontiguousarray(W.T)
        h = rng.standard_normal((B, H)).astype(np.float32)
        da = rng.standard_normal((B, G)).astype(np.float32)
        daT = np.ascontiguousarray(da.T)
        rec, recT = np.empty((B, G), np.float32), np.empty((G, B), np.float32)
        dh, dhT = np.empty((B, H), np.float32), np.empty((H, B), np.float32)
        transpose_blocked(recT, rec)
        steps = {
            "forward, bptt's": lambda: [np.dot(h, WT, out=rec) for _ in range(n)],
            "forward, W @ h^T": lambda: [np.dot(W, h.T, out=recT) for _ in range(n)],
            "forward, W @ h^T + transpose": lambda: [(np.dot(W, h.T, out=recT), transpose_blocked(recT, rec))
                                                     for _ in range(n)],
            "backward, bptt's": lambda: [np.dot(da, W, out=dh) for _ in range(n)],
            "backward, W^T @ da^T": lambda: [np.dot(WT, daT, out=dhT) for _ in range(n)],
        }
        times = harness.interleaved(steps, 11)
        print(f"H={H:5d} B={B:3d}: " + "  ".join(f"{k} {v['median_s'] / n * 1e6:8.1f}" for k, v in times.items()),
              flush=True)


if __name__ == "__main__":
    main()
