"""Dense float32 products of a few activation rows, on Numba's own threads (x86 with AVX-512).

BLAS's worker threads and Numba's spin on the cores for a while after each call, so a model that
alternates BLAS layers with numaccel layers runs each one against the other's spinning threads
(docs/performance.md, "Dense layers beside numaccel layers"). For the memory-bound small batches a
dense layer runs here instead, in the same thread pool as every other numaccel kernel.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import FASTMATH
from .csr_cpu import _hsum

_ROWS = 8  # weight rows in flight: eight streams keep more of DRAM's bandwidth busy than one or four


def _make_dots(rows: int):
    """An intrinsic ``(w, i, x, b, res)`` writing ``res[r] = sum_k w[i + r, k] * x[b, k]`` for ``r < rows``.

    For C-contiguous float32 ``w`` (N, K) and ``x`` (B, K). Each step loads sixteen activations once and
    sixteen values of every row, one ``llvm.fma.v16f32`` per row into that row's accumulator; the lanes
    are summed by halving and the last ``K % 16`` features added one by one. Every row runs the same
    operations in the same order whatever ``rows`` is, so a row's result depends only on its values (not
    on the threads, the partition or the rows beside it).
    """

    @intrinsic
    def dots(typingctx, w, i, x, b, res):
        if not (
            isinstance(w, types.Array) and w.ndim == 2 and w.dtype == types.float32
            and isinstance(x, types.Array) and x.ndim == 2 and x.dtype == types.float32
            and isinstance(res, types.Array) and res.ndim == 1 and res.dtype == types.float32
        ):
            return None
        sig = types.void(w, types.int64, x, types.int64, res)

        def codegen(context, builder, signature, args):
            wt, _, xt, _, rt = signature.args
            wa = context.make_array(wt)(context, builder, args[0])
            xa = context.make_array(xt)(context, builder, args[2])
            ra = context.make_array(rt)(context, builder, args[4])
            i64 = ir.IntType(64)
            f32 = ir.FloatType()
            vty = ir.VectorType(f32, 16)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 "llvm.fma.v16f32")
            k_total = builder.extract_value(wa.shape, 1)
            xp = builder.gep(xa.data, [builder.mul(args[3], k_total)])
            wps = [builder.gep(wa.data, [builder.mul(builder.add(args[1], ir.Constant(i64, r)), k_total)])
                   for r in range(rows)]
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, None)) for _ in range(rows)]
            steps = builder.sdiv(k_total, ir.Constant(i64, 16))
            with cgutils.for_range(builder, steps) as loop:
                k = builder.mul(loop.index, ir.Constant(i64, 16))
                xv = builder.load(builder.bitcast(builder.gep(xp, [k]), vty.as_pointer()), align=4)
                for r in range(rows):
                    wv = builder.load(builder.bitcast(builder.gep(wps[r], [k]), vty.as_pointer()), align=4)
                    builder.store(builder.call(fma, [wv, xv, builder.load(accs[r])]), accs[r])
            start = builder.mul(steps, ir.Constant(i64, 16))
            for r in range(rows):
                total = cgutils.alloca_once_value(builder, _hsum(builder, builder.load(accs[r]), 16))
                with cgutils.for_range(builder, builder.sub(k_total, start)) as loop:
                    k = builder.add(start, loop.index)
                    prod = builder.fmul(builder.load(builder.gep(wps[r], [k])), builder.load(builder.gep(xp, [k])))
                    builder.store(builder.fadd(builder.load(total), prod), total)
                builder.store(builder.load(total), builder.gep(ra.data, [ir.Constant(i64, r)]))
            return context.get_dummy_value()

        return sig, codegen

    return dots


_dots8 = _make_dots(_ROWS)
_dots1 = _make_dots(1)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _gemv_rows(w, x, r0, r1, out):
    """Rows ``r0:r1`` of ``out = x @ w.T``, eight weight rows at a time (the eight rows stay in L2 while
    the few activation rows pass over them, so each weight is read once from memory)."""
    res = np.empty(_ROWS, np.float32)
    i = r0
    while i + _ROWS <= r1:
        for b in range(x.shape[0]):
            _dots8(w, np.int64(i), x, np.int64(b), res)
            for r in range(_ROWS):
                out[b, i + r] = res[r]
        i += _ROWS
    while i < r1:
        for b in range(x.shape[0]):
            _dots1(w, np.int64(i), x, np.int64(b), res)
            out[b, i] = res[0]
        i += 1


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _gemv_parallel(w, x, nchunks, out):
    """``out = x @ w.T`` for float32 ``w`` (N, K) and a few rows ``x`` (B, K), rows split into ``nchunks``."""
    n = w.shape[0]
    for c in prange(nchunks):
        _gemv_rows(w, x, c * n // nchunks, (c + 1) * n // nchunks, out)
