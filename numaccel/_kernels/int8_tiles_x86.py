"""LLVM-level micro-kernels for the int8 kernels, written as Numba ``@intrinsic`` functions.

Each micro-kernel computes one register tile of an outer-product GEMM over a range of the reduction axis,
with its accumulators in LLVM vector registers (allocas that LLVM promotes), which plain Numba code cannot
express. Two families:

* ``MK_I8F32[rb]``: float32 ``acc[b, :64] (+)= sum_k x[b, k] * w[k, :64]`` for ``rb`` activation rows,
  where ``w`` is an int8 panel converted on the fly (``sext``, ``sitofp``). Generic LLVM vector IR
  (``llvm.fma.v16f32``): portable to any target LLVM supports.
  Given a float32 block ``w`` (kn, 64) instead, the same intrinsics run the float32 tile on it: the codes
  of a block converted once (exactly: int8 to float32) and then reused by every activation tile of a
  large batch, instead of converted again in each tile.
* ``MK_VNNI[rb]``: exact int32 ``acc[b, :64] (+)= sum_k xu[b, k] * w[k, :64]`` for uint8 activations and
  an int8 panel stored as groups of 4 consecutive k per column (``(K/4, 64 * 4)``), through
  ``llvm.x86.avx512.vpdpbusd.512``. Only for hosts with AVX-512 VNNI (``HAVE_VNNI``); callers must not
  compile it elsewhere.

Contract of every micro-kernel (inputs validated by the caller, nothing checked here): ``w`` C-contiguous
2-D with 64 (int8, float32) or 256 (VNNI) elements per row, reading rows ``wr0 .. wr0 + kn``; ``x`` 2-D
C-contiguous (float32 (B, K) or uint8 (B, Kp)), reading rows ``b0 .. b0 + nb`` (``1 <= nb <= rb``; the rows
past ``nb`` repeat the last one) and columns ``k0 .. k0 + kn`` (VNNI: bytes ``4 * k0 .. 4 * (k0 + kn)``);
``acc`` C-contiguous (B, 64) float32 or int32, rows ``b0 .. b0 + nb`` overwritten when ``init`` else
accumulated into.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import cpu_features

# Whether the code Numba generates may use AVX-512 VNNI (the ``vpdpbusd`` intrinsic fails to compile
# elsewhere): numaccel._config.cpu_features() honours NUMBA_CPU_NAME / NUMBA_CPU_FEATURES.
HAVE_VNNI = {"avx512vnni", "avx512bw"} <= cpu_features()

LANES = 16
PANEL = 64  # output columns per panel: four 16-lane vectors
MAX_RB = 6  # activation rows per register tile (6 x 4 accumulators + 4 panel vectors fit 32 registers)

_i8 = ir.IntType(8)
_i32 = ir.IntType(32)
_i64 = ir.IntType(64)
_f32 = ir.FloatType()
_v16f = ir.VectorType(_f32, LANES)
_v16i = ir.VectorType(_i32, LANES)
_v16b = ir.VectorType(_i8, LANES)
_v64b = ir.VectorType(_i8, 64)


def _splat(builder, value, vecty):
    v = builder.insert_element(ir.Constant(vecty, ir.Undefined), value, ir.Constant(_i32, 0))
    mask = ir.Constant(ir.VectorType(_i32, LANES), [0] * LANES)
    return builder.shuffle_vector(v, ir.Constant(vecty, ir.Undefined), mask)


def _row_addr(context, builder, aryty, ary, row):
    """Integer address of ``ary[row, 0]`` and the row stride in bytes, for a 2-D array."""
    a = context.make_array(aryty)(context, builder, ary)
    stride = cgutils.unpack_tuple(builder, a.strides, 2)[0]
    base = builder.ptrtoint(a.data, _i64)
    return builder.add(base, builder.mul(row, stride)), stride


def _ptr(builder, addr, ty):
    return builder.inttoptr(addr, ty.as_pointer())


def _vload(builder, addr, offset, ty, align):
    return builder.load(_ptr(builder, builder.add(addr, ir.Constant(_i64, offset)), ty), align=align)


def _rows(builder, b0, nb, rb):
    last = builder.add(b0, builder.sub(nb, ir.Constant(_i64, 1)))
    out = []
    for i in range(rb):
        r = builder.add(b0, ir.Constant(_i64, i))
        out.append(builder.select(builder.icmp_signed("<", ir.Constant(_i64, i), nb), r, last))
    return out


def _accumulators(builder, init, aaddr, nv, vt):
    """Register accumulators (allocas) for the rows at ``aaddr``: zero when ``init``, else loaded."""
    accs = [[cgutils.alloca_once(builder, vt) for _ in range(nv)] for _ in aaddr]
    with builder.if_else(init) as (then, otherwise):
        with then:
            for row in accs:
                for a in row:
                    builder.store(ir.Constant(vt, None), a)
        with otherwise:
            for addr, row in zip(aaddr, accs, strict=True):
                for v, a in enumerate(row):
                    builder.store(_vload(builder, addr, 64 * v, vt, 4), a)
    return accs


def _store_accumulators(builder, accs, aaddr, vt):
    for addr, row in zip(aaddr, accs, strict=True):
        for v, a in enumerate(row):
            builder.store(builder.load(a), _ptr(builder, builder.add(addr, ir.Constant(_i64, 64 * v)), vt), align=4)


def _fma_and_prefetch(builder):
    """The ``llvm.fma.v16f32`` function, a prefetch call ``pf(addr)`` into L2, for a micro-kernel."""
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_v16f, [_v16f, _v16f, _v16f]), "llvm.fma.v16f32"
    )
    pfty = ir.FunctionType(ir.VoidType(), [_i8.as_pointer(), _i32, _i32, _i32])
    prefetch = cgutils.get_or_insert_function(builder.module, pfty, "llvm.prefetch.p0")
    pfargs = [ir.Constant(_i32, 0), ir.Constant(_i32, 2), ir.Constant(_i32, 1)]  # read, keep in L2, data

    def pf(addr):
        builder.call(prefetch, [_ptr(builder, addr, _i8)] + pfargs)

    return fma, pf


def _tile_codegen(kind, rb):
    """Code generator of one micro-kernel; ``kind`` is "i8f32", "f32" or "vnni"."""
    nv = PANEL // LANES
    acc_vt = _v16i if kind == "vnni" else _v16f
    acc_et = _i32 if kind == "vnni" else _f32

    def codegen(context, builder, sig, args):
        wty, _, xty, _, _, _, _, accty, _ = sig.args
        w, wr0, x, b0, nb, k0, kn, acc, init = args
        ints = (wr0, b0, nb, k0, kn)
        itys = (sig.args[1],) + sig.args[3:7]
        wr0, b0, nb, k0, kn = (context.cast(builder, v, t, types.int64)
                               for v, t in zip(ints, itys, strict=True))
        init = context.cast(builder, init, sig.args[8], types.boolean)
        rows = _rows(builder, b0, nb, rb)
        xaddr = []
        aaddr = []
        for r in rows:
            xa, _ = _row_addr(context, builder, xty, x, r)
            step = 4  # float32 x: 4 bytes per column; VNNI: 4 uint8 per step
            xaddr.append(builder.add(xa, builder.mul(k0, ir.Constant(_i64, step))))
            aa, _ = _row_addr(context, builder, accty, acc, r)
            aaddr.append(aa)
        waddr, wstride = _row_addr(context, builder, wty, w, wr0)

        accs = _accumulators(builder, init, aaddr, nv, acc_vt)

        if kind == "vnni":
            dp = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_v16i, [_v16i, _v16i, _v16i]), "llvm.x86.avx512.vpdpbusd.512"
            )
        fma, pf = _fma_and_prefetch(builder)
        ahead = builder.mul(kn, wstride)  # the same step of the next weight block
        row_bytes = 16 * nv if kind == "i8f32" else 64 * nv  # bytes of weights per step
        with cgutils.for_range(builder, kn) as loop:
            k = loop.index
            wrow = builder.add(waddr, builder.mul(k, wstride))
            # Keep the memory stream going while this block is re-read from cache by the other tiles: touch
            # the next block. A prefetch past the end of the array is harmless. (A float32 block is a
            # buffer in L1 that the caller refills; its stream is the caller's.)
            for line in range(0, row_bytes if kind != "f32" else 0, 64):
                addr = builder.add(builder.add(wrow, ahead), ir.Constant(_i64, line))
                pf(addr)
            wv = []
            for v in range(nv):
                if kind == "i8f32":
                    b = _vload(builder, wrow, 16 * v, _v16b, 1)
                    wv.append(builder.sitofp(builder.sext(b, _v16i), _v16f))
                elif kind == "f32":
                    wv.append(_vload(builder, wrow, 64 * v, _v16f, 4))
                else:
                    wv.append(builder.bitcast(_vload(builder, wrow, 64 * v, _v64b, 1), _v16i))
            koff = builder.mul(k, ir.Constant(_i64, 4))
            for i in range(rb):
                xs = builder.load(_ptr(builder, builder.add(xaddr[i], koff), acc_et), align=4)
                xv = _splat(builder, xs, acc_vt)
                for v in range(nv):
                    a = builder.load(accs[i][v])
                    if kind == "vnni":
                        a = builder.call(dp, [a, xv, wv[v]])
                    else:
                        a = builder.call(fma, [xv, wv[v], a])
                    builder.store(a, accs[i][v])
        _store_accumulators(builder, accs, aaddr, acc_vt)
        return context.get_dummy_value()

    return codegen


def _make_tile(kind, rb):
    codegen = _tile_codegen(kind, rb)
    # the float32 tile takes a float32 weight block: the same intrinsic, chosen by the weight's dtype
    f32 = _tile_codegen("f32", rb) if kind == "i8f32" else None

    def typer(typingctx, w, wr0, x, b0, nb, k0, kn, acc, init):
        gen = f32 if f32 is not None and w.dtype == types.float32 else codegen
        return types.void(w, wr0, x, b0, nb, k0, kn, acc, init), gen

    typer.__name__ = f"_mk_{kind}_{rb}"
    return intrinsic(typer)


# One intrinsic per (kind, tile height), built once at import.
MK_I8F32 = tuple(_make_tile("i8f32", rb) for rb in range(1, MAX_RB + 1))
MK_VNNI = tuple(_make_tile("vnni", rb) for rb in range(1, MAX_RB + 1))


def _streams_codegen(ns, kind="i8f32"):
    """Code generator of ``MK_I8F32_STREAMS[ns - 1]`` (``kind`` "i8f32") or ``MK_VNNI_STREAMS[ns - 1]``
    ("vnni"): the one-row tile of that kind over ``ns`` panels at once."""
    nv = PANEL // LANES
    vnni = kind == "vnni"
    acc_vt = _v16i if vnni else _v16f
    acc_et = _i32 if vnni else _f32

    def codegen(context, builder, sig, args):
        pty, _, _, xty, _, _, accty, _ = sig.args
        panels, p0, wr0, x, k0, kn, acc, init = args
        p0, wr0, k0, kn = (context.cast(builder, v, t, types.int64)
                           for v, t in zip((p0, wr0, k0, kn), (sig.args[1], sig.args[2]) + sig.args[4:6],
                                           strict=True))
        init = context.cast(builder, init, sig.args[7], types.boolean)
        pa = context.make_array(pty)(context, builder, panels)
        pstride, wstride, _ = cgutils.unpack_tuple(builder, pa.strides, 3)
        pbase = builder.add(builder.ptrtoint(pa.data, _i64), builder.mul(wr0, wstride))
        waddr = [builder.add(pbase, builder.mul(builder.add(p0, ir.Constant(_i64, i)), pstride))
                 for i in range(ns)]
        xa, _ = _row_addr(context, builder, xty, x, ir.Constant(_i64, 0))
        xaddr = builder.add(xa, builder.mul(k0, ir.Constant(_i64, 4)))
        aaddr = [_row_addr(context, builder, accty, acc, ir.Constant(_i64, i))[0] for i in range(ns)]

        accs = _accumulators(builder, init, aaddr, nv, acc_vt)
        fma, pf = _fma_and_prefetch(builder)
        if vnni:
            dp = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_v16i, [_v16i, _v16i, _v16i]), "llvm.x86.avx512.vpdpbusd.512"
            )
        ahead = builder.mul(kn, wstride)  # the same step of the next weight block
        with cgutils.for_range(builder, kn) as loop:
            k = loop.index
            koff = builder.mul(k, wstride)
            xs = builder.load(_ptr(builder, builder.add(xaddr, builder.mul(k, ir.Constant(_i64, 4))), acc_et),
                              align=4)
            xv = _splat(builder, xs, acc_vt)
            for i in range(ns):
                wrow = builder.add(waddr[i], koff)
                for line in range(0, 64 * nv if vnni else 64, 64):  # a step: 256 bytes (VNNI) or 64
                    pf(builder.add(builder.add(wrow, ahead), ir.Constant(_i64, line)))
                for v in range(nv):
                    if vnni:
                        wv = builder.bitcast(_vload(builder, wrow, 64 * v, _v64b, 1), _v16i)
                        a = builder.call(dp, [builder.load(accs[i][v]), xv, wv])
                    else:
                        b = _vload(builder, wrow, 16 * v, _v16b, 1)
                        wv = builder.sitofp(builder.sext(b, _v16i), _v16f)
                        a = builder.call(fma, [xv, wv, builder.load(accs[i][v])])
                    builder.store(a, accs[i][v])
        _store_accumulators(builder, accs, aaddr, acc_vt)
        return context.get_dummy_value()

    return codegen


def _make_streams(ns, kind="i8f32"):
    codegen = _streams_codegen(ns, kind)

    def typer(typingctx, panels, p0, wr0, x, k0, kn, acc, init):
        return types.void(panels, p0, wr0, x, k0, kn, acc, init), codegen

    typer.__name__ = f"_mk_{kind}_streams_{ns}"
    return intrinsic(typer)


# One-row int8 tiles over several panels at once (batch 1), ``MK_I8F32_STREAMS[ns - 1]`` for ``ns`` panels:
# ``acc[i, :64] (+)= sum_k x[0, k0 + k] * panels[p0 + i, wr0 + k, :64]`` for ``i < ns``, ``k < kn``, each
# panel's sum in the order ``MK_I8F32[0]`` takes on that panel alone (the same results bit for bit). Reading
# ``ns`` panels side by side keeps ``ns`` memory streams in flight on one core, where one panel at a time is
# one stream. ``panels`` int8 (P, K, 64) C-contiguous, ``x`` float32 2-D (row 0), ``acc`` float32 (>= ns, 64).
MAX_STREAMS = 4
MK_I8F32_STREAMS = tuple(_make_streams(ns) for ns in range(1, MAX_STREAMS + 1))
# The same for W8A8 (``vpdpbusd``): ``acc[i, :64] (+)= sum_t dot4(x[0, 4(k0 + t):][:4], panels4[p0 + i,
# wr0 + t, :256])``, exact int32 sums as ``MK_VNNI[0]`` gives per panel; ``panels`` int8 (P, K4, 256), ``x``
# uint8 2-D (row 0, four per step), ``acc`` int32 (>= ns, 64).
MK_VNNI_STREAMS = tuple(_make_streams(ns, "vnni") for ns in range(1, MAX_STREAMS + 1))
