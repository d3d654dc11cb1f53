"""Pruned-int8 W8A8 with AVX-512 VNNI: int8 activations times the int8 codes of a CSR row, int32 sums.

The activations come quantized and transposed, ``xt`` (T, K, W) uint8 slabs holding ``qx + 128`` (codes in
[-127, 127] offset for ``vpdpbusd``, whose first operand is unsigned), so that a column id selects one row
of ``W`` batch columns (placed within each slab by :func:`slab_positions`). For each four nonzeros of a
weight row, their four activation rows are interleaved by in-lane unpacks (four of bytes, four of 16-bit
words: one uop each, where a two-source byte permute costs more), so that each dword holds one batch
column's four activations ``xt[k0, b], xt[k1, b], xt[k2, b], xt[k3, b]``; one ``vpdpbusd`` per ``W / 4``
columns then adds the four products with the four codes, broadcast as one dword. The sums wrap in
int32; ``sum (qx + 128) * q - 128 * sum q`` is exact while the true sum fits in int32 (the caller keeps
each group at most ``W8A8_MAX_GROUP`` nonzeros long).

Only for hosts with AVX-512 VNNI (``int8_tiles_x86.HAVE_VNNI``); the portable twin is
:func:`.csr_int8_cpu._w8a8_rows`, whose results are bitwise the same.

Contract (validated by the caller): CSR arrays valid, ``xt`` C-contiguous (T, K, W),
``scales``/``corr`` one per group (``gptr``, ``gs`` as in :mod:`.csr_int8_cpu`), ``out`` (B, N) C-contiguous
and fully overwritten, ``B <= T * W``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .csr_cpu import _emit_prefetch

_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V16I = ir.VectorType(_I32, 16)

#: how far ahead (in nonzeros) the code and column-id streams are prefetched
PREFETCH_NNZ = 2048


def slab_positions(width: int) -> np.ndarray:
    """Where batch column ``b`` of a slab of ``width`` goes in ``xt`` (``pos[b]``, int64): the kernel's
    in-lane interleave leaves dword ``e`` of its ``v``-th vector holding the bytes at ``16 L + 4 v + j``
    (``e = 4 L + j``), so storing column ``width / 4 * v + e`` there makes the sums come out in order."""
    b = np.arange(width)
    v, e = np.divmod(b, width // 4)
    lane, j = np.divmod(e, 4)
    return (16 * lane + 4 * v + j).astype(np.int64)


def _make_row_vnni(width: int, nsets: int, prefetch: int = PREFETCH_NNZ):
    """Build ``row(indices, q, start, end, xs, acc)``: ``acc[0:W] = sum_p q[p] * xs[indices[p], 0:W]`` in
    wrapping int32 (``xs`` one (K, W) slab, ``W = width``, 16, 32 or 64 bytes: xmm, ymm or zmm rows), the
    columns of ``xs`` placed by :func:`slab_positions`. Four nonzeros at a time: their four rows
    interleaved by in-lane unpacks (four of bytes, four of words: single-uop shuffles), four
    ``vpdpbusd``. ``nsets`` sets of four accumulators take the groups of four in turn (independent chains
    hide the latency); the codes and column ids ``prefetch`` nonzeros ahead are prefetched once per
    ``4 * nsets`` nonzeros (0: never)."""
    nd = width // 4  # dwords per vector
    lanes = width // 16

    @intrinsic
    def row_vnni(typingctx, indices, q, start, end, xs, acc):
        if not (
            isinstance(indices, types.Array) and indices.ndim == 1 and isinstance(indices.dtype, types.Integer)
            and isinstance(q, types.Array) and q.ndim == 1 and q.dtype == types.int8
            and isinstance(xs, types.Array) and xs.ndim == 2 and xs.dtype == types.uint8
            and isinstance(acc, types.Array) and acc.ndim == 1 and acc.dtype == types.int32
        ):
            return None
        sig = types.void(indices, q, types.int64, types.int64, xs, acc)

        def codegen(context, builder, signature, args):
            it, qt, _, _, xst, at = signature.args
            ia = context.make_array(it)(context, builder, args[0])
            qa = context.make_array(qt)(context, builder, args[1])
            xa = context.make_array(xst)(context, builder, args[4])
            aa = context.make_array(at)(context, builder, args[5])
            start_v, end_v = args[2], args[3]
            stride = cgutils.unpack_tuple(builder, xa.strides, 2)[0]
            xbase = xa.data
            ext = builder.sext if it.dtype.signed else builder.zext
            vd = ir.VectorType(_I32, nd)
            dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vd, [vd, vd, vd]),
                                                f"llvm.x86.avx512.vpdpbusd.{32 * nd}")
            vrow = ir.VectorType(_I8, width)
            vw = ir.VectorType(_I16, width // 2)

            def unpack(a, b, per_lane, high):
                # vpunpck{l,h}{bw,wd} semantics: in each 128-bit lane, the low (high) half of a's and b's
                # elements, alternating
                total = lanes * per_lane
                half = per_lane // 2
                off = half if high else 0
                idx = [v for ln in range(lanes) for i in range(half)
                       for v in (per_lane * ln + off + i, total + per_lane * ln + off + i)]
                return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, total), idx))

            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vd, None)) for _ in range(4)]
                    for _ in range(nsets)]

            def rowvec(k):
                p = builder.gep(xbase, [builder.mul(k, stride)])
                return builder.load(builder.bitcast(p, vrow.as_pointer()), align=1)

            def four(ks, q4, slots):
                r = [rowvec(k) for k in ks]
                t = [builder.bitcast(unpack(r[a], r[a + 1], 16, h), vw) for a in (0, 2) for h in (False, True)]
                # t[0], t[1]: rows 0, 1 low and high bytes; t[2], t[3]: rows 2, 3
                u = [unpack(t[h], t[2 + h], 8, w) for h in (0, 1) for w in (False, True)]
                qv = builder.insert_element(ir.Constant(vd, ir.Undefined), q4, ir.Constant(_I32, 0))
                qv = builder.shuffle_vector(qv, ir.Constant(vd, ir.Undefined), ir.Constant(vd, [0] * nd))
                for v in range(4):
                    uv = builder.bitcast(u[v], vd)
                    builder.store(builder.call(dp, [builder.load(slots[v]), uv, qv]), slots[v])

            def column(p):
                return ext(builder.load(builder.gep(ia.data, [p])), _I64)

            def codes4(p):
                return builder.load(builder.bitcast(builder.gep(qa.data, [p]), _I32.as_pointer()), align=1)

            n = builder.sub(end_v, start_v)
            per = 4 * nsets
            shift = ir.Constant(_I64, per.bit_length() - 1)
            iters = builder.ashr(n, shift)
            with cgutils.for_range(builder, iters) as loop:
                p = builder.add(start_v, builder.shl(loop.index, shift))
                if prefetch:
                    ahead = builder.add(p, ir.Constant(_I64, prefetch))
                    _emit_prefetch(builder, builder.gep(qa.data, [ahead]))
                    _emit_prefetch(builder, builder.gep(ia.data, [ahead]))
                for s in range(nsets):
                    ps = builder.add(p, ir.Constant(_I64, 4 * s))
                    four([column(builder.add(ps, ir.Constant(_I64, m))) for m in range(4)], codes4(ps), accs[s])
            p = builder.add(start_v, builder.shl(iters, shift))
            # whole groups of four left (fewer than nsets), into the first set
            fours = builder.ashr(builder.sub(end_v, p), ir.Constant(_I64, 2))
            with cgutils.for_range(builder, fours) as loop:
                ps = builder.add(p, builder.shl(loop.index, ir.Constant(_I64, 2)))
                four([column(builder.add(ps, ir.Constant(_I64, m))) for m in range(4)], codes4(ps), accs[0])
            p = builder.add(p, builder.shl(fours, ir.Constant(_I64, 2)))
            rest = builder.sub(end_v, p)
            with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(_I64, 0))):
                # the last one to three nonzeros: missing lanes read a valid row with code 0
                ks, q4 = [], ir.Constant(_I32, 0)
                for m in range(4):
                    have = builder.icmp_signed("<", ir.Constant(_I64, m), rest)
                    pm = builder.select(have, builder.add(p, ir.Constant(_I64, m)), p)
                    ks.append(column(pm))
                    qm = builder.zext(builder.load(builder.gep(qa.data, [pm])), _I32)
                    qm = builder.select(have, qm, ir.Constant(_I32, 0))
                    q4 = builder.or_(q4, builder.shl(qm, ir.Constant(_I32, 8 * m)))
                four(ks, q4, accs[0])
            for v in range(4):
                total = builder.load(accs[0][v])
                for s in range(1, nsets):
                    total = builder.add(total, builder.load(accs[s][v]))
                dst = builder.bitcast(builder.gep(aa.data, [ir.Constant(_I64, nd * v)]), vd.as_pointer())
                builder.store(total, dst, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return row_vnni


_row_vnni_16 = _make_row_vnni(16, 4)
_row_vnni_32 = _make_row_vnni(32, 2)
_row_vnni_64 = _make_row_vnni(64, 2)

#: Slab widths (batch columns per pass over a row), narrowest first.
WIDTHS = (16, 32, 64)
#: Rows every slab visits before the next block of rows starts (about 300 KB of codes at 90 % of K = 4096)
BLOCK_ROWS = 256


@njit(inline="always")
def _row(indices, q, start, end, xs, acc, W):
    if W == 64:
        _row_vnni_64(indices, q, start, end, xs, acc)
    elif W == 32:
        _row_vnni_32(indices, q, start, end, xs, acc)
    else:
        _row_vnni_16(indices, q, start, end, xs, acc)


@njit(cache=True, nogil=True)
def _w8a8_vnni_chunk(indptr, indices, q, scales, gptr, gs, corr, r0, r1, xt, sx, buf, iacc, out):
    """Rows ``r0:r1``: ``out[b, i] = sx[b] * sum_g scales[g] * (sum_p q[p] * qx[b, indices[p]])`` over the
    groups ``g`` of row ``i``, each group's int32 sum corrected by ``corr[g]`` (``128 * sum q``, modulo
    2**32) and scaled in float64.

    ``xt`` (T, K, W): the activation codes in slabs of W batch columns. Blocks of ``BLOCK_ROWS`` rows
    (their codes stay in L2) are visited by every slab in turn, so that the rows of one slab, not of all,
    are in use at a time (their pages fit the L1 TLB). ``buf`` (G, W) float64 holds G rows' results,
    stored together (G contiguous values per output row); ``iacc`` (W,) int32 scratch.
    """
    B = out.shape[0]
    T, _, W = xt.shape
    G = buf.shape[0]
    for a0 in range(r0, r1, BLOCK_ROWS):
        a1 = min(a0 + BLOCK_ROWS, r1)
        for t in range(T):
            xs = xt[t]
            b0 = t * W
            for g0 in range(a0, a1, G):
                g1 = min(g0 + G, a1)
                for i in range(g0, g1):
                    row = buf[i - g0]
                    for j in range(W):
                        row[j] = 0.0
                    start = np.int64(indptr[i])
                    end = np.int64(indptr[i + 1])
                    g = gptr[i]
                    for s0 in range(start, end, gs):
                        _row(indices, q, s0, min(s0 + gs, end), xs, iacc, W)
                        sc = np.float64(scales[g])
                        c = corr[g]
                        for j in range(W):
                            row[j] += sc * np.float64(np.int32(iacc[j] - c))
                        g += 1
                for j in range(min(W, B - b0)):
                    s = sx[b0 + j]
                    orow = out[b0 + j, g0:g1]
                    for r in range(g1 - g0):
                        orow[r] = s * buf[r, j]


@njit(parallel=True, cache=True, nogil=True)
def _w8a8_vnni(indptr, indices, q, scales, gptr, gs, corr, bounds, xt, sx, buf, iacc, out):
    """``_w8a8_vnni_chunk`` over the chunks ``bounds`` (one thread each); buf (chunks, G, W), iacc (chunks, W)."""
    for c in prange(bounds.size - 1):
        _w8a8_vnni_chunk(indptr, indices, q, scales, gptr, gs, corr, bounds[c], bounds[c + 1], xt, sx, buf[c],
                         iacc[c], out)
