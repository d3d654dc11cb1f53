"""Probe: a W8A8 kernel for pruned-int8 at batch >= 64 (int8 activations x int8 codes, int32 exact), timed
against numaccel's weight-only pruned-int8 and fp32 CSR kernels. Not part of the package: it measured no
faster (docs/performance.md, "Pruned int8").

Activations are quantized per row (symmetric, +128 offset for ``vpdpbusd``) and transposed to (K, B) bytes, so
that a column id selects one 64-byte row of 64 batch columns; each group of four nonzeros of a weight row
interleaves its four activation rows (``vpermt2b``) and runs four ``vpdpbusd`` against the four codes
broadcast. Checks the int32 sums against an int64 oracle, then times the three kernels in interleaved rounds
(weights hot).

    python bench/csr_int8_w8a8_probe.py [N]        (N x N, 90 % pruned; default 4096)
"""

import sys
import time

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

import numaccel as na
from numaccel.plan import csr as pcsr

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
V64B = ir.VectorType(I8, 64)
V16I = ir.VectorType(I32, 16)

@intrinsic
def _row64(typingctx, indices, q, start, end, xt, c0, acc):
    """acc[0:64] = sum_p q[p] * xt[indices[p], c0:c0+64] (u8 activations, int32 exact)."""
    sig = types.void(indices, q, types.int64, types.int64, xt, types.int64, acc)
    def codegen(context, builder, signature, args):
        it, qt, _, _, xtt, _, at = signature.args
        ia = context.make_array(it)(context, builder, args[0])
        qa = context.make_array(qt)(context, builder, args[1])
        xa = context.make_array(xtt)(context, builder, args[4])
        aa = context.make_array(at)(context, builder, args[6])
        start, end, c0 = args[2], args[3], args[5]
        stride = cgutils.unpack_tuple(builder, xa.strides, 2)[0]
        xbase = builder.gep(xa.data, [c0])
        ext = builder.sext if it.dtype.signed else builder.zext
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16I, [V16I, V16I, V16I]),
                                            "llvm.x86.avx512.vpdpbusd.512")
        accs = [cgutils.alloca_once_value(builder, ir.Constant(V16I, None)) for _ in range(4)]
        def rowvec(k):
            p = builder.gep(xbase, [builder.mul(k, stride)])
            return builder.load(builder.bitcast(p, V64B.as_pointer()), align=1)
        # interleave masks
        m01 = []
        for n in range(64):
            m01 += [n, 64 + n]
        m0123 = []
        for n in range(64):
            m0123 += [n, 64 + n]
        V64H = ir.VectorType(ir.IntType(16), 64)
        def group(kidx, q4):
            r = [rowvec(k) for k in kidx]
            t01 = builder.shuffle_vector(r[0], r[1], ir.Constant(ir.VectorType(I32, 128), m01))
            t23 = builder.shuffle_vector(r[2], r[3], ir.Constant(ir.VectorType(I32, 128), m01))
            h01 = builder.bitcast(t01, V64H)
            h23 = builder.bitcast(t23, V64H)
            u = builder.shuffle_vector(h01, h23, ir.Constant(ir.VectorType(I32, 128), m0123))  # <128 x i16>
            u32 = builder.bitcast(u, ir.VectorType(I32, 64))
            qv = builder.insert_element(ir.Constant(V16I, ir.Undefined), q4, ir.Constant(I32, 0))
            qv = builder.shuffle_vector(qv, ir.Constant(V16I, ir.Undefined), ir.Constant(V16I, [0] * 16))
            for j in range(4):
                uj = builder.shuffle_vector(u32, ir.Constant(ir.VectorType(I32, 64), ir.Undefined),
                                            ir.Constant(V16I, list(range(16 * j, 16 * j + 16))))
                builder.store(builder.call(dp, [builder.load(accs[j]), uj, qv]), accs[j])
        n = builder.sub(end, start)
        g = builder.ashr(n, ir.Constant(I64, 2))
        with cgutils.for_range(builder, g) as loop:
            p = builder.add(start, builder.shl(loop.index, ir.Constant(I64, 2)))
            ks = [ext(builder.load(builder.gep(ia.data, [builder.add(p, ir.Constant(I64, m))])), I64) for m in range(4)]
            q4 = builder.load(builder.bitcast(builder.gep(qa.data, [p]), I32.as_pointer()), align=1)
            group(ks, q4)
        rest = builder.sub(n, builder.shl(g, ir.Constant(I64, 2)))
        with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(I64, 0))):
            p = builder.sub(end, rest)
            ks, q4 = [], ir.Constant(I32, 0)
            for m in range(4):
                have = builder.icmp_signed("<", ir.Constant(I64, m), rest)
                pm = builder.select(have, builder.add(p, ir.Constant(I64, m)), p)
                km = ext(builder.load(builder.gep(ia.data, [pm])), I64)
                ks.append(km)
                qm = builder.zext(builder.load(builder.gep(qa.data, [pm])), I32)
                qm = builder.select(have, qm, ir.Constant(I32, 0))
                q4 = builder.or_(q4, builder.shl(qm, ir.Constant(I32, 8 * m)))
            group(ks, q4)
        for j in range(4):
            dst = builder.bitcast(builder.gep(aa.data, [ir.Constant(I64, 16 * j)]), V16I.as_pointer())
            builder.store(builder.load(accs[j]), dst, align=4)
        return context.get_dummy_value()
    return sig, codegen

@njit(parallel=True, nogil=True, fastmath={"contract"})
def _quant_t(x, xt, sx):
    """Per-row symmetric codes of ``x`` (B, K), +128, transposed into ``xt`` (K, Bp) uint8: the scales first,
    then blocks of 64 features, each filling 64 rows of ``xt`` that stay in L1 while every activation row
    passes (a byte store per element, but to lines in cache)."""
    B, K = x.shape
    for b in prange(B):
        m = 0.0
        for k in range(K):
            m = max(m, abs(np.float64(x[b, k])))
        sx[b] = m / 127.0
    for kb in prange((K + 63) // 64):
        k0 = kb * 64
        k1 = min(K, k0 + 64)
        for b in range(B):
            inv = 1.0 / sx[b] if sx[b] > 0 else 0.0
            xb = x[b]
            for k in range(k0, k1):
                xt[k, b] = np.uint8(np.int32(np.rint(np.float64(xb[k]) * inv)) + 128)


@njit(parallel=True, nogil=True, fastmath={"contract"})
def _spmm_w8a8(indptr, indices, q, scales, qsum, bounds, xt, sx, out):
    B, N = out.shape
    nslab = xt.shape[1] // 64
    for c in prange(bounds.size - 1):
        acc = np.empty(64, np.int32)
        for i in range(bounds[c], bounds[c + 1]):
            s = scales[i]
            corr = 128 * qsum[i]
            for t in range(nslab):
                _row64(indices, q, np.int64(indptr[i]), np.int64(indptr[i + 1]), xt, np.int64(64 * t), acc)
                b0 = 64 * t
                for j in range(min(64, B - b0)):
                    out[b0 + j, i] = np.float32(sx[b0 + j] * s * np.float64(acc[j] - corr))

def w8a8(w, x, qsum, out):
    B, K = x.shape
    bp = 64 * -(-B // 64)
    xt = np.zeros((K, bp), np.uint8)
    sx = np.zeros(bp, np.float64)
    _quant_t(x, xt, sx)
    _spmm_w8a8(w.indptr, w.indices, w.qdata, w.scales, qsum, pcsr.chunk_bounds(w), xt, sx, out)
    return xt, sx

def _timed(fn, reps=5):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(n: int) -> None:
    rng = np.random.default_rng(0)
    c = na.prune(rng.standard_normal((n, n), dtype=np.float32), 0.9)
    q = na.quantize(c)
    qsum = np.zeros(n, np.int64)
    np.add.at(qsum, np.repeat(np.arange(n), np.diff(q.indptr)), q.qdata.astype(np.int64))
    qsum = qsum.astype(np.int32)
    dq = q.to_dense()
    codes = np.zeros((n, n), np.int64)
    codes[np.repeat(np.arange(n), np.diff(q.indptr)), q.indices] = q.qdata
    bnd = pcsr.chunk_bounds(q)
    for b in (64, 256):
        x = rng.standard_normal((b, n), dtype=np.float32)
        out = np.empty((b, n), np.float32)
        xt, sx = w8a8(q, x, qsum, out)
        acc = (xt[:, :b].T.astype(np.int64) - 128) @ codes.T  # the int64 oracle of the int32 sums
        ref_int = (sx[:b, None] * q.scales[None, :].astype(np.float64) * acc).astype(np.float32)
        ref = x.astype(np.float64) @ dq.T.astype(np.float64)
        print(f"B={b}: int32 sums exact: {np.allclose(out, ref_int, rtol=1e-6, atol=1e-6 * np.abs(ref_int).max())}, "
              f"relative error against the float product {np.linalg.norm(out - ref) / np.linalg.norm(ref):.2e}")
        fns = {"w8a8 probe": lambda x=x, out=out: w8a8(q, x, qsum, out),
               "quantize+transpose": lambda x=x, xt=xt, sx=sx: _quant_t(x, xt, sx),
               "w8a8 kernel alone": lambda xt=xt, sx=sx, out=out: _spmm_w8a8(q.indptr, q.indices, q.qdata, q.scales,
                                                                             qsum, bnd, xt, sx, out),
               "int8 weight-only": lambda x=x: na.linear(x, q), "fp32 CSR": lambda x=x: na.linear(x, c)}
        res = {k: [] for k in fns}
        for _ in range(7):
            for k, f in fns.items():
                res[k].append(_timed(f))
        for k, v in res.items():
            print(f"B={b} {k:18s} {np.median(v) * 1e3:.3f} ms [{min(v) * 1e3:.3f}-{max(v) * 1e3:.3f}]", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
