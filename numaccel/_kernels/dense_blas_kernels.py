"""The Numba kernels of :mod:`numaccel._kernels.dense_blas` (imported only after its symbols exist)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .dense_blas import _NO_TRANS, _ROW_MAJOR, _SYMBOLS, _TRANS

_I32, _I64, _PTR = types.int32, types.int64, types.uintp


def _declare(name, real):
    """The ``cblas_?gemm`` (``name`` ending in ``gemm``) or ``cblas_?gemv`` signature, ``real`` its scalars."""
    if name.endswith("gemm"):  # order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc
        args = (_I32, _I32, _I32, _I64, _I64, _I64, real, _PTR, _I64, _PTR, _I64, real, _PTR, _I64)
    else:  # order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy
        args = (_I32, _I32, _I64, _I64, real, _PTR, _I64, _PTR, _I64, real, _PTR, _I64)
    return types.ExternalFunction(_SYMBOLS[name], types.void(*args))


_sgemm = _declare("sgemm", types.float32)
_dgemm = _declare("dgemm", types.float64)
_sgemv = _declare("sgemv", types.float32)
_dgemv = _declare("dgemv", types.float64)


@njit(cache=True, nogil=True)
def gemm_block(x, w, n0, n1, out):
    """``out[:, n0:n1] = x @ w[n0:n1].T`` by one ``cblas_?gemv`` (one row of ``x``) or ``cblas_?gemm`` call
    (row-major, ``w`` transposed)."""
    b, k = x.shape
    n = w.shape[0]
    if n1 <= n0:
        return
    size = x.itemsize
    wp = w.ctypes.data + np.uint64(n0 * k * size)
    op = out.ctypes.data + np.uint64(n0 * size)
    if b == 1:
        if size == 4:
            _sgemv(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int64(n1 - n0), np.int64(k), np.float32(1.0),
                   wp, np.int64(k), x.ctypes.data, np.int64(1), np.float32(0.0), op, np.int64(1))
        else:
            _dgemv(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int64(n1 - n0), np.int64(k), np.float64(1.0),
                   wp, np.int64(k), x.ctypes.data, np.int64(1), np.float64(0.0), op, np.int64(1))
    elif size == 4:  # float32 (the caller passes float32 or float64 only)
        _sgemm(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int32(_TRANS), np.int64(b), np.int64(n1 - n0),
               np.int64(k), np.float32(1.0), x.ctypes.data, np.int64(k), wp, np.int64(k), np.float32(0.0), op,
               np.int64(n))
    else:
        _dgemm(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int32(_TRANS), np.int64(b), np.int64(n1 - n0),
               np.int64(k), np.float64(1.0), x.ctypes.data, np.int64(k), wp, np.int64(k), np.float64(0.0), op,
               np.int64(n))


@njit(parallel=True, cache=True, nogil=True)
def gemm_blocks(x, w, bounds, out):
    """``gemm_block`` of each ``bounds[c]:bounds[c + 1]``, one block per Numba thread."""
    for c in prange(bounds.size - 1):
        gemm_block(x, w, bounds[c], bounds[c + 1], out)


@intrinsic
def _stream_dequantized(typingctx, src, sj, dst, dj, steps, z, s):
    """``dst[dj + t] = (float32(src[sj + t]) - z) * s`` for ``t < 16 * steps``, sixteen at a time, written
    with non-temporal stores (they skip the read of each destination line). ``dst``'s element ``dj`` must
    lie on a 64-byte boundary and every index in range: the caller guarantees both."""
    if not (isinstance(src, types.Array) and src.dtype == types.int8 and isinstance(dst, types.Array)
            and dst.dtype == types.float32):
        return None
    sig = types.void(src, types.int64, dst, types.int64, types.int64, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        sa = context.make_array(signature.args[0])(context, builder, args[0])
        da = context.make_array(signature.args[2])(context, builder, args[2])
        i32, i64 = ir.IntType(32), ir.IntType(64)
        v8, vi, vf = ir.VectorType(ir.IntType(8), 16), ir.VectorType(i32, 16), ir.VectorType(ir.FloatType(), 16)

        def splat(value):
            v = builder.insert_element(ir.Constant(vf, None), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, v, ir.Constant(vi, [0] * 16))

        zv, sv = splat(args[5]), splat(args[6])
        nontemporal = builder.module.add_metadata([ir.Constant(i32, 1)])
        sp = builder.gep(sa.data, [args[1]])
        dp = builder.gep(da.data, [args[3]])
        with cgutils.for_range(builder, args[4]) as loop:
            j = builder.mul(loop.index, ir.Constant(i64, 16))
            q = builder.load(builder.bitcast(builder.gep(sp, [j]), v8.as_pointer()), align=1)
            f = builder.fmul(builder.fsub(builder.sitofp(q, vf), zv), sv)
            store = builder.store(f, builder.bitcast(builder.gep(dp, [j]), vf.as_pointer()), align=64)
            store.set_metadata("nontemporal", nontemporal)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_fence(typingctx):
    """A full memory fence (``mfence`` on x86): the streamed stores before it reach memory before any access
    after it."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True, nogil=True, inline="always")
def _dequantize_rows(q, s2, z2, gs, r0, r1, buf):
    """``buf[:r1 - r0, :K] = (q[r0:r1] - z) * s`` in float32, as ``Int8Weight.dequantize`` computes it.

    ``buf``'s rows start on 64-byte boundaries (its row length a multiple of 16): within each group the
    16-value steps that start on a multiple of 16 are streamed (``_stream_dequantized``; the caller fences
    before reading them), the few values before and after them written one by one.
    """
    k = q.shape[1]
    g = s2.shape[1]
    for i in range(r1 - r0):
        r = r0 + i
        qr = q[r]
        br = buf[i]
        for gi in range(g):
            j0 = gi * gs
            j1 = min(j0 + gs, k)
            z = np.float32(z2[r, gi])
            s = s2[r, gi]
            h = min(j1, j0 + (-j0) % 16)  # the first multiple of 16 at or after j0
            steps = (j1 - h) // 16
            for j in range(j0, h):
                br[j] = (np.float32(qr[j]) - z) * s
            if steps > 0:
                _stream_dequantized(qr, h, br, h, steps, z, s)
            for j in range(h + 16 * steps, j1):
                br[j] = (np.float32(qr[j]) - z) * s


@njit(parallel=True, cache=True, nogil=True)
def int8_dequantized_gemm(q, s2, z2, gs, x, bounds, rows, scratch, out):
    """``out = x @ dequantize(q).T`` for float32 ``x`` (B, K), int8 codes ``q`` (N, K), scales ``s2`` and
    zero points ``z2`` (N, G): each Numba thread takes the features ``bounds[c]:bounds[c + 1]`` and, ``rows``
    at a time, dequantizes them into its own ``scratch[c]`` (rows, L), L >= K a multiple of 16, starting on
    a 64-byte boundary, and multiplies them by one single-threaded ``cblas_sgemm`` call."""
    b, k = x.shape
    n = q.shape[0]
    ld = scratch.shape[2]
    for c in prange(bounds.size - 1):
        buf = scratch[c]
        for r0 in range(bounds[c], bounds[c + 1], rows):
            r1 = min(r0 + rows, bounds[c + 1])
            _dequantize_rows(q, s2, z2, gs, r0, r1, buf)
            _store_fence()
            op = out.ctypes.data + np.uint64(r0 * 4)
            _sgemm(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int32(_TRANS), np.int64(b), np.int64(r1 - r0),
                   np.int64(k), np.float32(1.0), x.ctypes.data, np.int64(k), buf.ctypes.data, np.int64(ld),
                   np.float32(0.0), op, np.int64(n))
