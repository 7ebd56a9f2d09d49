"""``matmul_into(address, a, b, out)``: out = a @ b inside a numba kernel, by calling the BLAS
gemm at ``address`` (an integer: kernels/blas.py finds numpy's own).

Why an address and an intrinsic: a ctypes function passed to a kernel costs ~8 us to unbox per
call (measured: an empty forward_loop call 12.9 us against 4.3 us for a step kernel), and one
held as a global stops numba from caching the kernel on disk. An integer is unboxed for free, and
the call below is plain LLVM IR (inttoptr + call), so the kernels stay cacheable.

All arrays C-contiguous and 2-d: a (M, K), b (K, N), out (M, N); row-major cblas_?gemm with no
transposes, alpha 1, beta 0 -- what numpy's np.dot(a, b, out=out) asks the same library for
(except at M = 1, where numpy calls gemv).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

ROW_MAJOR, NO_TRANS = 101, 111      # CBLAS enum values (cblas.h)


def _gemm_intrinsic(real_type):
    @intrinsic
    def call_gemm(typingctx, address, M, N, K, a, lda, b, ldb, c, ldc):
        sig = types.void(types.int64, types.int64, types.int64, types.int64, types.uintp, types.int64,
                         types.uintp, types.int64, types.uintp, types.int64)

        def codegen(context, builder, signature, args):
            i32, i64 = ir.IntType(32), ir.IntType(64)
            real = context.get_value_type(real_type)
            # cblas_?gemm(order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), ILP64;
            # pointers passed as 64-bit integers (the same registers as void * on x86-64 and arm64)
            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, i64, i64, i64, i64,
                                                   real, i64, i64])
            address, M, N, K, a, lda, b, ldb, c, ldc = args
            function = builder.inttoptr(address, fnty.as_pointer())
            builder.call(function, [ir.Constant(i32, ROW_MAJOR), ir.Constant(i32, NO_TRANS),
                                    ir.Constant(i32, NO_TRANS), M, N, K, ir.Constant(real, 1.0), a, lda,
                                    b, ldb, ir.Constant(real, 0.0), c, ldc])
            return context.get_dummy_value()

        return sig, codegen
    return call_gemm


_sgemm = _gemm_intrinsic(types.float32)
_dgemm = _gemm_intrinsic(types.float64)


def matmul_into(address, a, b, out):
    """out = a @ b (a stub: numba compiles the overload below)."""
    raise NotImplementedError("matmul_into runs inside numba kernels only")


@overload(matmul_into, inline="always")
def _matmul_into_overload(address, a, b, out):
    if not (isinstance(a, types.Array) and a.dtype == b.dtype == out.dtype):
        return None
    call = _sgemm if a.dtype == types.float32 else _dgemm if a.dtype == types.float64 else None
    if call is None:
        return None

    def impl(address, a, b, out):
        M, K = a.shape
        N = b.shape[1]
        call(address, M, N, K, a.ctypes.data, K, b.ctypes.data, N, out.ctypes.data, N)
    return impl
