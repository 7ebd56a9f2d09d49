"""MKL's sgemm (the `mkl` wheel's libmkl_rt, through ctypes) against numpy's OpenBLAS at the shapes
of a training step's GEMMs, one thread, interleaved medians -- the check behind "a faster GEMM as an
optional extra only if it measures faster at the step's own shapes" (docs/performance.md, item 22).

    pip download mkl --no-deps -d /tmp/mklwheel && python -m zipfile -e /tmp/mklwheel/*.whl /tmp/mkl
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/mkl_gemm.py /tmp/mkl/mkl-*.data/data/lib/libmkl_rt.so.3
"""

import argparse
import ctypes
import time

import numpy as np

from bptt.benchmark import harness

SHAPES = [(32, 128, 512), (32, 512, 128), (64, 512, 2048), (64, 2048, 512), (64, 1024, 4096), (64, 4096, 1024),
          (2048, 64, 512), (4096, 64, 2048)]          # (M, K, N): per-step products and their transposes


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("library", help="path of libmkl_rt.so.*")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    lib = ctypes.CDLL(args.library, mode=ctypes.RTLD_GLOBAL)
    lib.MKL_Set_Threading_Layer(ctypes.c_int(1))              # MKL_THREADING_SEQUENTIAL: one thread
    pinned = harness.pin_threads(1)  # noqa: F841
    harness.check_threads(1)
    sgemm = lib.cblas_sgemm_64                                 # ILP64, as numpy's own
    i64 = ctypes.c_int64
    sgemm.restype = None
    sgemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, ctypes.c_float, ctypes.c_void_p, i64,
                      ctypes.c_void_p, i64, ctypes.c_float, ctypes.c_void_p, i64]
    rng = np.random.default_rng(0)
    print("float32, 1 thread; (M, K) x (K, N); median of interleaved repeats")
    for M, K, N in SHAPES:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        c1, c2 = np.empty((M, N), np.float32), np.empty((M, N), np.float32)
        calls = max(3, int(2e8 / (2 * M * N * K)))

        def numpy_gemm():
            for _ in range(calls):
                np.dot(a, b, out=c1)

        def mkl_gemm():
            for _ in range(calls):
                sgemm(101, 111, 111, M, N, K, 1.0, a.ctypes.data, K, b.ctypes.data, N, 0.0, c2.ctypes.data, N)
        mkl_gemm()
        numpy_gemm()
        assert np.allclose(c1, c2, rtol=1e-3, atol=1e-2)
        times = harness.interleaved({"numpy": numpy_gemm, "mkl": mkl_gemm}, args.repeats)
        t_np, t_mkl = times["numpy"]["median_s"] / calls, times["mkl"]["median_s"] / calls
        print(f"({M}, {K}) x ({K}, {N}): numpy {t_np * 1e6:9.1f} us  mkl {t_mkl * 1e6:9.1f} us  "
              f"mkl / numpy {t_mkl / t_np:.2f}", flush=True)


if __name__ == "__main__":
    main()
