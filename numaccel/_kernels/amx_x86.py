"""W8A8 kernels on Intel AMX (``tdpbssd``: 16 x 16 int32 tiles += 16 x 64 int8 times 64 x 16 int8).

Only for hosts whose CPU has ``amx_tile`` and ``amx_int8``, whose kernel granted this process the tile
data permission, and for which Numba compiles for the host CPU: callers (``numaccel.plan.amx``) check all
three before the first call, so these kernels are never compiled, loaded from the cache or run elsewhere.
The tile configuration is per thread: every ``prange`` iteration loads it and releases the tiles at its end.

Layouts (inputs validated and padded by the caller; nothing is checked here):

* ``wp`` int8, flat ``(NB, KT, 1024)``: weight codes in 16-output blocks ``j`` and 64-feature steps ``t``,
  each a 16-row x 64-byte B tile in the VNNI layout: byte ``64 r + 4 c + i`` holds ``q[16 j + c, 64 t + 4 r + i]``
  (zeros past N and K). ``NB`` is even: output blocks go in pairs.
* ``qx`` int8, flat ``(Bp / 16, KT, 16, 64)``: the activations' codes in A tiles, each 16 rows x 64
  features contiguous (a tile read with a row stride of K bytes would put its 16 rows in one cache set
  when K is a multiple of 4096), zero padded (rows past B, features past K); ``Bp`` a multiple of 16.
* Segments: the reduction runs in segments of ``seg_t`` steps (a weight group, or for per-channel scales a
  chunk of at most ``MAX_SEG_STEPS`` steps, so that no int32 sum can overflow: ``127 * 128 * 64 * 2048 < 2**31``).
  ``sT`` float32 and ``zT`` int32 ``(S, 16 NB)``: scale and zero point of each segment and output;
  ``qxsum`` int32 ``(S, Bp)``: the sum of the codes of each row over each segment.
* ``out`` (B, N) float32, C-contiguous: ``out[b, n] = sx[b] * sum_s sT[s, n] * (acc_s[b, n] - zT[s, n] * qxsum[b, s])``,
  every element written; each ``prange`` iteration owns 32 output columns, so a result does not depend on
  the thread count.

Register blocking: tiles 0-3 accumulate a 32 x 32 block of the output (2 A tiles x 2 B tiles) over a whole
segment, tiles 4-5 hold 16 activation rows each, tiles 6-7 16 outputs each; a last group of 16 rows uses
one A tile.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import FASTMATH
from .int8_cpu import _abs_max

MAX_SEG_STEPS = 2048  # 131072 features: |sum of qx * q| <= 127 * 128 * 131072 = 2.13e9 < 2**31
TILE_BYTES = 1024

_I8, _I64 = ir.IntType(8), ir.IntType(64)
_PTR = ir.IntType(8).as_pointer()


def _declare(builder, name, argtypes):
    module = builder.module
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), argtypes), name)
    return fn


def _data_ptr(context, builder, aryty, ary):
    return builder.bitcast(context.make_array(aryty)(context, builder, ary).data, _PTR)


@intrinsic
def _load_config(typingctx, cfg):
    """``ldtilecfg`` from a 64-byte uint8 array."""

    def codegen(context, builder, sig, args):
        cfg_ptr = _data_ptr(context, builder, sig.args[0], args[0])
        builder.call(_declare(builder, "llvm.x86.ldtilecfg", [_PTR]), [cfg_ptr])

    return types.void(cfg), codegen


@intrinsic
def _release(typingctx):
    def codegen(context, builder, sig, args):
        builder.call(_declare(builder, "llvm.x86.tilerelease", []), [])

    return types.void(), codegen


def _memory_op(name: str, tile: int):
    """``tileloadd64`` / ``tilestored64`` of tile ``tile`` at byte ``off`` of a 1-D array, row stride ``stride``."""

    @intrinsic
    def op(typingctx, array, off, stride):
        def codegen(context, builder, sig, args):
            base = _data_ptr(context, builder, sig.args[0], args[0])
            ptr = builder.gep(base, [args[1]])
            builder.call(_declare(builder, name, [_I8, _PTR, _I64]), [ir.Constant(_I8, tile), ptr, args[2]])

        return types.void(array, types.int64, types.int64), codegen

    return op


@intrinsic
def _prefetch_l2(typingctx, array, off):
    """``prefetcht1`` of the cache line at byte ``off`` of a 1-D array (a hint: it never faults)."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        ptr = builder.gep(_data_ptr(context, builder, sig.args[0], args[0]), [args[1]])
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [_PTR, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])

    return types.void(array, types.int64), codegen


def _tile_op(name: str, *tiles: int):
    @intrinsic
    def op(typingctx):
        def codegen(context, builder, sig, args):
            builder.call(_declare(builder, name, [_I8] * len(tiles)), [ir.Constant(_I8, t) for t in tiles])

        return types.void(), codegen

    return op


_load_a0 = _memory_op("llvm.x86.tileloadd64", 4)
_load_a1 = _memory_op("llvm.x86.tileloadd64", 5)
_load_b0 = _memory_op("llvm.x86.tileloadd64", 6)
_load_b1 = _memory_op("llvm.x86.tileloadd64", 7)
_store_c0 = _memory_op("llvm.x86.tilestored64", 0)
_store_c1 = _memory_op("llvm.x86.tilestored64", 1)
_store_c2 = _memory_op("llvm.x86.tilestored64", 2)
_store_c3 = _memory_op("llvm.x86.tilestored64", 3)
_zero_c0 = _tile_op("llvm.x86.tilezero", 0)
_zero_c1 = _tile_op("llvm.x86.tilezero", 1)
_zero_c2 = _tile_op("llvm.x86.tilezero", 2)
_zero_c3 = _tile_op("llvm.x86.tilezero", 3)
_dot_00 = _tile_op("llvm.x86.tdpbssd", 0, 4, 6)
_dot_01 = _tile_op("llvm.x86.tdpbssd", 1, 4, 7)
_dot_10 = _tile_op("llvm.x86.tdpbssd", 2, 5, 6)
_dot_11 = _tile_op("llvm.x86.tdpbssd", 3, 5, 7)


@njit(inline="always")
def _tile_config():
    """Palette 1, tiles 0-7 of 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    for t in range(8):
        cfg[16 + 2 * t] = 64
        cfg[48 + t] = 16
    return cfg


@njit(inline="always")
def _tile_values(acc, zv, t, has_zp, vals):
    """``vals[c] = acc[c] - zv[c] * t`` for one 16-column tile row as float32, the correction formed in
    int64 (a segment's corrected sum may pass 2**31 with zero points) and skipped without zero points."""
    if has_zp:
        for c in range(16):
            vals[c] = np.float32(np.int64(acc[c]) - np.int64(zv[c]) * t)
    else:
        for c in range(16):
            vals[c] = np.float32(acc[c])


@njit(inline="always")
def _scale_group(acc, sv, zv, qs, has_zp, rows, first, fac, vals):
    """``fac[r, c] (+)= sv[c] * (acc - zv[c] * qs[r])`` for the ``rows`` (16 or 32) rows of one group and
    its 32 columns (tiles 0, 1 for rows 0-15, tiles 2, 3 for rows 16-31)."""
    for r in range(rows):
        h = r // 16
        t = np.int64(qs[r])
        f = fac[r]
        for side in range(2):
            _tile_values(acc[2 * h + side, r % 16], zv[16 * side:16 * side + 16], t, has_zp, vals)
            fs = f[16 * side:16 * side + 16]
            ss = sv[16 * side:16 * side + 16]
            if first:
                for c in range(16):
                    fs[c] = ss[c] * vals[c]
            else:
                for c in range(16):
                    fs[c] += ss[c] * vals[c]


@njit(inline="always")
def _prefetch_ahead(wp, t, pf):
    """Prefetch into L2 the ``pf[1]`` bytes of the next weight pair that step ``t`` is due to bring in
    (``pf = (first byte of this segment's share, bytes per step, end)``; ``pf[1] == 0``: none)."""
    o = pf[0] + t * pf[1]
    for line in range(o, min(o + pf[1], pf[2]), 64):
        _prefetch_l2(wp, line)


@njit(inline="always")
def _steps_2x2(wp, wb0, wb1, qx, a0, a1, t0, t1, pf):
    """Each tile load placed just before the first ``tdpbssd`` that needs it, so loads overlap the products
    (Intel Xeon host, 4096 x 4096: 4-11 % faster than four loads then four products, in interleaved runs),
    then the prefetch of this step's share of the next pair's weights."""
    for t in range(t0, t1):
        _load_a0(qx, a0 + t * TILE_BYTES, 64)
        _load_b0(wp, wb0 + t * TILE_BYTES, 64)
        _dot_00()
        _load_b1(wp, wb1 + t * TILE_BYTES, 64)
        _dot_01()
        _load_a1(qx, a1 + t * TILE_BYTES, 64)
        _dot_10()
        _dot_11()
        _prefetch_ahead(wp, t - t0, pf)


@njit(inline="always")
def _steps_1x2(wp, wb0, wb1, qx, a0, t0, t1, pf):
    for t in range(t0, t1):
        _load_a0(qx, a0 + t * TILE_BYTES, 64)
        _load_b0(wp, wb0 + t * TILE_BYTES, 64)
        _dot_00()
        _load_b1(wp, wb1 + t * TILE_BYTES, 64)
        _dot_01()
        _prefetch_ahead(wp, t - t0, pf)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _w8a8_amx(wp, kt, seg_t, sT, zT, has_zp, qx, sx, qxsum, out):
    """W8A8 with AMX tiles; layouts in the module docstring, ``kt`` steps of 64 features.

    One ``prange`` iteration per pair of 16-output blocks; for each group of 32 activation rows and each
    segment, the four accumulator tiles run the whole segment, are stored, scaled into a 32 x 32 float32
    block, and the block is written out after the last segment.

    With two or more row groups the steps also prefetch the next pair's weights into L2, spread evenly over
    the pair's steps, so that a cold pair does not wait for DRAM in its first group (Intel Xeon host with a
    105 MiB L3, 4096 x 4096 cold, 2 threads, 11 interleaved rounds: batch 256 3.12 against 3.48 ms, batch 64
    1.38 against 1.48 ms; with one group, batch 16, the prefetches cost more than they saved: 0.97 against
    0.83 ms).
    """
    B, N = out.shape
    S, Bp = qxsum.shape
    npairs = sT.shape[1] // 32
    ngroups = (Bp + 31) // 32
    pair_bytes = 2 * kt * TILE_BYTES
    pf_step = 64 * -(-(pair_bytes // 64) // (ngroups * kt)) if ngroups > 1 else 0
    for jp in prange(npairs):
        cfg = _tile_config()
        _load_config(cfg)
        acc = np.empty((4, 16, 16), np.int32)
        ab = acc.reshape(-1).view(np.int8)
        fac = np.empty((32, 32), np.float32)
        vals = np.empty(16, np.float32)
        n0 = 32 * jp
        ncols = min(32, N - n0)
        wb0 = (2 * jp) * kt * TILE_BYTES
        wb1 = (2 * jp + 1) * kt * TILE_BYTES
        pf_end = min(wb0 + 2 * pair_bytes, wp.size)
        for gi in range(ngroups):
            b0 = 32 * gi
            two = b0 + 16 < Bp
            rows = 32 if two else 16
            a0 = (b0 // 16) * kt * TILE_BYTES
            for seg in range(S):
                t0 = seg * seg_t
                t1 = min(t0 + seg_t, kt)
                pf = (wb0 + pair_bytes + (gi * kt + t0) * pf_step, pf_step, pf_end)
                _zero_c0()
                _zero_c1()
                if two:
                    _zero_c2()
                    _zero_c3()
                    _steps_2x2(wp, wb0, wb1, qx, a0, a0 + kt * TILE_BYTES, t0, t1, pf)
                    _store_c2(ab, 2 * TILE_BYTES, 64)
                    _store_c3(ab, 3 * TILE_BYTES, 64)
                else:
                    _steps_1x2(wp, wb0, wb1, qx, a0, t0, t1, pf)
                _store_c0(ab, 0, 64)
                _store_c1(ab, TILE_BYTES, 64)
                _scale_group(acc, sT[seg, n0:n0 + 32], zT[seg, n0:n0 + 32], qxsum[seg, b0:b0 + rows], has_zp, rows,
                             seg == 0, fac, vals)
            for r in range(min(rows, B - b0)):
                s = sx[b0 + r]
                o = out[b0 + r, n0:n0 + ncols]
                f = fac[r]
                for c in range(ncols):
                    o[c] = f[c] * s
        _release()


@njit(inline="always")
def _quantize_rows_i8_body(x, seg_k, qx, sx, qxsum):
    """Symmetric per-row activation codes for the AMX kernel: ``sx[b] = max|x[b]| / 127`` and
    ``code = rint(x[b, k] * (1 / sx[b]))`` in float64 (as the VNNI path rounds), written into the A-tile
    layout ``qx`` (Bp / 16, KT, 16, 64), zero past K and for rows past B; ``qxsum[s, b]`` sums the codes of
    segment ``s`` (``seg_k`` features). A row holding NaN or inf gets ``sx[b] = nan`` and zero codes, so
    its outputs are NaN."""
    B, K = x.shape
    _, KT, _, _ = qx.shape
    S, Bp = qxsum.shape
    for b in prange(Bp):
        tiles = qx[b // 16]
        r = b % 16
        s = 0.0
        ok = False
        if b < B:
            xb = x[b]
            amax = _abs_max(xb)
            s = amax / 127.0
            ok = amax < np.inf and s > 0
            sx[b] = np.float32(s) if amax < np.inf else np.float32(np.nan)
        else:
            sx[b] = 0.0
        for g in range(S):
            qxsum[g, b] = 0
        if not ok:
            for t in range(KT):
                tiles[t, r, :] = 0
            continue
        inv = 1.0 / s
        for t in range(KT):
            row = tiles[t, r]
            k0 = 64 * t
            kn = min(64, K - k0)
            tot = np.int32(0)
            for i in range(kn):
                c = np.int32(np.rint(np.float64(xb[k0 + i]) * inv))
                row[i] = np.int8(c)
                tot += c
            row[kn:] = 0
            qxsum[k0 // seg_k, b] += tot


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _quantize_rows_i8(x, seg_k, qx, sx, qxsum):
    """``_quantize_rows_i8_body``, rows split among threads."""
    _quantize_rows_i8_body(x, seg_k, qx, sx, qxsum)
