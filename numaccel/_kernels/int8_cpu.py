"""Int8-weight kernels for the CPU: weight-only (fused dequantization) and W8A8.

Inputs are validated by the caller; every kernel writes each element of a C-contiguous ``out`` (B, N) of
the activations' dtype, and each ``prange`` iteration owns whole output columns (weight rows): an output's
reduction order depends only on the weight and the kernel, never on the thread count, so results are
bitwise the same whatever the number of threads or processes that computed them (on one host).

* Plain kernels (``_qmm_int8_simple``, ``_w8a8_simple``): ``q`` int8 (N, K) C-contiguous codes, ``scales``
  float32 (N, G) and ``zps`` int32 (N, G), one entry per group of ``gs`` consecutive input features (the
  last group of a row may be shorter; G = 1 and gs = K for per-channel scales). They serve float64
  activations, the portable W8A8 path and runs with NUMBA_DISABLE_JIT.
* Panel kernels (``_qmm_int8_panels``, ``_w8a8_vnni_panels``): the codes packed in 64-row panels and the
  activations in blocks of the reduction axis (layouts in their docstrings), multiplied in register tiles
  of up to 6 activation rows x 64 outputs by the micro-kernels of ``int8_tiles_x86``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import FASTMATH
from .int8_tiles_x86 import MAX_RB, MK_I8F32, MK_I8F32_STREAMS, MK_VNNI, MK_VNNI_STREAMS, PANEL

_I1, _I2, _I3, _I4, _I5, _I6 = MK_I8F32
_S1, _S2, _S3, _S4 = MK_I8F32_STREAMS
_U1, _U2, _U3, _U4 = MK_VNNI_STREAMS
_V1, _V2, _V3, _V4, _V5, _V6 = MK_VNNI


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _qmm_int8_simple(q, scales, zps, gs, x, xsum, out):
    """``out[b, n] = sum_g scales[n, g] * (x[b, g] . q[n, g] - zps[n, g] * xsum[b, g])``.

    ``xsum`` (B, G) holds the sums of ``x`` over each group (used only for the zero points). The dot
    products are accumulated unscaled in x's dtype: finite while ``sum |x| * 128`` (and ``|z * xsum|``)
    over a group is.
    """
    N, K = q.shape
    B = x.shape[0]
    G = scales.shape[1]
    zero = x.dtype.type(0)
    for n in prange(N):
        qn = q[n]
        for b in range(B):
            xb = x[b]
            acc = zero
            for g in range(G):
                k0 = g * gs
                k1 = min(k0 + gs, K)
                xs = xb[k0:k1]
                qs = qn[k0:k1]
                d = zero
                for k in range(xs.size):
                    d += xs[k] * qs[k]
                acc += scales[n, g] * (d - zps[n, g] * xsum[b, g])
            out[b, n] = acc


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _w8a8_simple(q, scales, zps, gs, xu, sx, qxsum, out):
    """Portable W8A8 with ``qx = xu[0] - 128`` (``xu`` (1, B, K) from ``_quantize_rows_u8``), dot products
    exact in int32:
    ``out[b, n] = sx[b] * sum_g scales[n, g] * (qx[b, g] . q[n, g] - zps[n, g] * qxsum[b, g])``.

    The int32 sums wrap; a group's corrected sum is exact when its true value fits in int32, i.e.
    127 * max|q - z| * gs < 2**31 (the caller chooses ``gs`` so). Scaled in float32: finite while
    ``scales * |sum|`` is."""
    N, K = q.shape
    B = xu.shape[1]
    G = scales.shape[1]
    for n in prange(N):
        qn = q[n]
        for b in range(B):
            xb = xu[0, b]
            acc = np.float32(0)
            for g in range(G):
                k0 = g * gs
                k1 = min(k0 + gs, K)
                xs = xb[k0:k1]
                qs = qn[k0:k1]
                d = np.int32(0)
                for k in range(xs.size):
                    d = np.int32(d + (np.int32(xs[k]) - np.int32(128)) * np.int32(qs[k]))
                acc += scales[n, g] * np.float32(np.int32(d - zps[n, g] * qxsum[b, g]))
            out[b, n] = acc * sx[b]


@njit(inline="always")
def _abs_max(xb):
    """``max|xb|`` as float64 (inf when ``xb`` holds inf or NaN), from the bit patterns with the sign bit
    cleared: an integer max reduction vectorises without fast-math, and NaN sorts above inf."""
    if xb.itemsize == 4:
        b32 = xb.view(np.uint32)
        m32 = np.uint32(0)
        for k in range(b32.size):
            m32 = max(m32, b32[k] & np.uint32(0x7FFFFFFF))
        t32 = np.empty(1, np.uint32)
        t32[0] = min(m32, np.uint32(0x7F800000))
        return np.float64(t32.view(np.float32)[0])
    b64 = xb.view(np.uint64)
    m64 = np.uint64(0)
    for k in range(b64.size):
        m64 = max(m64, b64[k] & np.uint64(0x7FFFFFFFFFFFFFFF))
    t64 = np.empty(1, np.uint64)
    t64[0] = min(m64, np.uint64(0x7FF0000000000000))
    return t64.view(np.float64)[0]


@njit(inline="always")
def _quantize_rows_u8_body(x, gs, xu, sx, qxsum):
    """Symmetric per-row activation quantization for W8A8, written in blocks of the reduction axis.

    ``x`` float32 or float64 (B, K) C-contiguous; ``sx[b] = max|x[b]| / 127`` (float64) and codes
    ``qx = rint(x[b] * (1 / sx[b]))`` (in [-127, 127]) in float64 (zeros for an all-zero row), stored
    offset as ``xu[kb, b, :] = qx[kb * KX:(kb + 1) * KX] + 128`` (uint8, for ``vpdpbusd``; ``xu``
    (NKB, B, KX), the tail past K filled with 128, i.e. code 0). ``qxsum[b, g]`` (int32) is the sum of the
    codes of group ``g`` (``gs`` features; a group never straddles two blocks unless G = 1); exact while
    127 * K (G = 1) or 127 * gs stays below 2**31, which the caller's grouping guarantees.
    A row holding NaN or inf gets ``sx[b] = nan`` and zero codes, so its outputs are NaN. Float64 rows whose
    ``1 / sx`` overflows (max|x| < 7.1e-307) are coded as ``clip(rint(x / sx), -127, 127)``; rows whose
    ``sx`` underflows to 0 (max|x| below about 3e-322) are coded as all-zero rows.
    """
    B, K = x.shape
    NKB, _, KX = xu.shape
    G = qxsum.shape[1]
    for b in prange(B):
        xb = x[b]
        amax = _abs_max(xb)
        finite = amax < np.inf
        s = amax / 127.0
        inv = 1.0 / s if s > 0 else 0.0
        for kb in range(NKB):
            k0 = kb * KX
            src = xb[k0:min(k0 + KX, K)]
            dst = xu[kb, b]
            if finite and s > 0 and inv < np.inf:
                for k in range(src.size):
                    # |x| <= amax, so |x * inv| <= 127 (1 + 3 eps) rounds into [-127, 127]: no clip needed
                    dst[k] = np.uint8(np.int32(np.rint(np.float64(src[k]) * inv)) + 128)
                dst[src.size:] = 128
            elif finite and s > 0:
                # s below 1 / (float64 max), i.e. float64 rows with max|x| < 7.1e-307: 1 / s is inf and
                # s has lost bits, so divide and clip
                for k in range(src.size):
                    c = min(max(np.rint(np.float64(src[k]) / s), -127.0), 127.0)
                    dst[k] = np.uint8(np.int32(c) + 128)
                dst[src.size:] = 128
            else:
                dst[:] = 128
        sx[b] = s if finite else np.nan
        if G == 1:
            t = np.int32(0)
            for kb in range(NKB):
                seg = xu[kb, b]
                for k in range(seg.size):
                    t += np.int32(seg[k])
            qxsum[b, 0] = np.int32(t - 128 * NKB * KX)
        else:
            for g in range(G):
                kb = (g * gs) // KX
                off = g * gs - kb * KX
                seg = xu[kb, b, off:off + min(gs, K - g * gs)]
                t = np.int32(0)
                for k in range(seg.size):
                    t += np.int32(seg[k])
                qxsum[b, g] = np.int32(t - 128 * seg.size)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _quantize_rows_u8(x, gs, xu, sx, qxsum):
    """``_quantize_rows_u8_body``, rows split among threads."""
    _quantize_rows_u8_body(x, gs, xu, sx, qxsum)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _quantize_rows_u8_serial(x, gs, xu, sx, qxsum):
    """``_quantize_rows_u8_body`` on the calling thread: for one or two rows, where starting the thread team
    costs more than the work (and, when a core is busy elsewhere, waits for it)."""
    _quantize_rows_u8_body(x, gs, xu, sx, qxsum)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _pack_blocks(x, xp):
    """``xp[kb, b, :] = x[b, kb * KX:(kb + 1) * KX]`` (zero tail): blocks of activations whose rows are
    KX apart, so that a register tile's rows do not collide in the caches as rows K apart can."""
    B, K = x.shape
    NKB, _, KX = xp.shape
    for b in prange(B):
        for kb in range(NKB):
            k0 = kb * KX
            src = x[b, k0:min(k0 + KX, K)]
            dst = xp[kb, b]
            for k in range(src.size):
                dst[k] = src[k]
            dst[src.size:] = 0


@njit(inline="always")
def _tile_rows(B):
    """Rows per register tile: the fewest tiles of at most MAX_RB rows, balanced (8 rows: 4 + 4, not 6 + 2;
    a short second tile costs nearly as much as a full one)."""
    ntiles = max(1, -(-B // MAX_RB))
    return -(-B // ntiles)


def _make_tile(t1, t2, t3, t4, t5, t6):
    """A register tile of ``nb`` activation rows (1 to 6) for the intrinsics ``t1 .. t6`` of 1 to 6 rows."""

    @njit(inline="always")
    def tile(w, wr0, x, b0, nb, k0, kn, acc, init):
        if nb >= 6:
            t6(w, wr0, x, b0, 6, k0, kn, acc, init)
        elif nb == 5:
            t5(w, wr0, x, b0, 5, k0, kn, acc, init)
        elif nb == 4:
            t4(w, wr0, x, b0, 4, k0, kn, acc, init)
        elif nb == 3:
            t3(w, wr0, x, b0, 3, k0, kn, acc, init)
        elif nb == 2:
            t2(w, wr0, x, b0, 2, k0, kn, acc, init)
        else:
            t1(w, wr0, x, b0, 1, k0, kn, acc, init)

    return tile


_tile_i8f32 = _make_tile(_I1, _I2, _I3, _I4, _I5, _I6)
_tile_vnni = _make_tile(_V1, _V2, _V3, _V4, _V5, _V6)


@njit(inline="always")
def _i8f32_steps(w, xb, ga, gb, off, kc, B, acc, fresh):
    """float32 sums over the features ``ga .. gb`` into ``acc`` (``off`` = first feature held by the
    activation block ``xb``), overwriting ``acc`` first when ``fresh``."""
    rt = _tile_rows(B)
    for k0 in range(ga, gb, kc):
        kn = min(kc, gb - k0)
        for b0 in range(0, B, rt):
            _tile_i8f32(w, k0, xb, b0, min(rt, B - b0), k0 - off, kn, acc, fresh and k0 == ga)


@njit(inline="always")
def _converted_steps(w, buf, xb, ga, gb, off, kc, B, acc, fresh):
    """``_i8f32_steps`` with each block of ``kc`` features of the codes converted once into ``buf``
    (float32 (kc, 64)) and then multiplied by every activation tile: the same products, in the same order."""
    rt = _tile_rows(B)
    for k0 in range(ga, gb, kc):
        kn = min(kc, gb - k0)
        for k in range(kn):
            src = w[k0 + k]
            dst = buf[k]
            for j in range(PANEL):
                dst[j] = np.float32(src[j])
        for b0 in range(0, B, rt):
            _tile_i8f32(buf, 0, xb, b0, min(rt, B - b0), k0 - off, kn, acc, fresh and k0 == ga)


@njit(inline="always")
def _weight_only_steps(w, buf, xb, ga, gb, off, kc, B, acc, fresh, convert):
    if convert:
        _converted_steps(w, buf, xb, ga, gb, off, kc, B, acc, fresh)
    else:
        _i8f32_steps(w, xb, ga, gb, off, kc, B, acc, fresh)


@njit(inline="always")
def _group_blocks(g, G, gs, NKB, KX):
    """``(kb0, kb1)``: the activation blocks ``kb0 .. kb1 - 1`` (``KX`` steps each) that hold group ``g`` of
    ``G`` groups of ``gs`` steps: all ``NKB`` blocks for one group, else the one block holding it."""
    if G == 1:
        return 0, NKB
    kb = (g * gs) // KX
    return kb, kb + 1


@njit(inline="always")
def _block_steps(kb, g, G, gs, KX, K):
    """``(ga, gb, off, fresh)`` for group ``g`` in activation block ``kb`` (of ``_group_blocks``): its steps
    ``ga .. gb - 1`` of ``K``, the first step ``off`` the block holds, and whether the sums start afresh."""
    if G == 1:
        ga = kb * KX
        return ga, min(ga + KX, K), ga, kb == 0
    ga = g * gs
    return ga, min(ga + gs, K), kb * KX, True


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _qmm_int8_panels(panels, sT, zT, gs, xp, xsum, kc, convert, out):
    """Weight-only: ``out = x @ ((q - z) * s).T`` from packed panels, float32 activations, the codes
    converted to float32 inside the register tile (6 rows x 64 outputs).

    ``panels`` int8 (P, K, 64): panel ``p`` holds weight rows ``64p .. 64p + 63`` transposed (zero rows past
    N); ``sT``/``zT`` float32 (G, 64P): scales and zero points per group (transposed); ``gs`` the group
    length; ``xp`` the activations in blocks (NKB, B, KX) (see ``_pack_blocks``; a block holds whole groups
    when G > 1); ``xsum`` float32 (B, G) the sums of x over each group (for the zero points); ``kc`` the
    weight block. Per group: ``s * (x . q - z * xsum)``, summed over the groups in float32; the unscaled
    ``x . q`` is finite while ``sum |x| * 128`` over a group is. ``convert``: convert each weight block to
    float32 once (``_converted_steps``, for large batches) instead of inside every register tile; the
    results are the same bit for bit.
    """
    P, K, _ = panels.shape
    NKB, B, KX = xp.shape
    G = sT.shape[0]
    N = out.shape[1]
    for p in prange(P):
        n0 = p * PANEL
        acc = np.empty((B, PANEL), np.float32)
        fac = np.zeros((B, PANEL), np.float32)
        buf = np.empty((kc if convert else 1, PANEL), np.float32)
        w = panels[p]
        for g in range(G):
            kb0, kb1 = _group_blocks(g, G, gs, NKB, KX)
            for kb in range(kb0, kb1):
                ga, gb, off, fresh = _block_steps(kb, g, G, gs, KX, K)
                _weight_only_steps(w, buf, xp[kb], ga, gb, off, kc, B, acc, fresh, convert)
            s = sT[g, n0:n0 + PANEL]
            z = zT[g, n0:n0 + PANEL]
            for b in range(B):
                t = xsum[b, g]
                a = acc[b]
                f = fac[b]
                for j in range(PANEL):
                    f[j] += s[j] * (a[j] - z[j] * t)
        for b in range(B):
            o = out[b, n0:min(n0 + PANEL, N)]
            f = fac[b]
            for j in range(o.size):
                o[j] = f[j]


def _make_stream_steps(steps1, steps2, steps3, steps4, doc: str):
    """Steps ``ga .. gb`` (in blocks of ``kc``) at batch 1 over the ``ns`` panels ``p0 ..`` side by side
    (``acc`` row i: panel p0 + i), with ``stepsS`` the intrinsic running ``S`` panels at once."""

    @njit(inline="always")
    def stream_steps(panels, p0, ns, xb, ga, gb, off, kc, acc, fresh):
        for k0 in range(ga, gb, kc):
            kn = min(kc, gb - k0)
            init = fresh and k0 == ga
            if ns >= 4:
                steps4(panels, p0, k0, xb, k0 - off, kn, acc, init)
            elif ns == 3:
                steps3(panels, p0, k0, xb, k0 - off, kn, acc, init)
            elif ns == 2:
                steps2(panels, p0, k0, xb, k0 - off, kn, acc, init)
            else:
                steps1(panels, p0, k0, xb, k0 - off, kn, acc, init)

    stream_steps.__doc__ = doc
    return stream_steps


_stream_steps = _make_stream_steps(_S1, _S2, _S3, _S4, "``_i8f32_steps`` at batch 1 over neighbouring panels.")


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _qmm_int8_panels_streams(panels, sT, zT, gs, xp, xsum, kc, S, out):
    """``_qmm_int8_panels`` for one activation row (``xp`` (NKB, 1, KX)), ``S`` (1 to 4) panels at a time.

    Each ``prange`` iteration multiplies ``S`` neighbouring panels side by side, so each core keeps ``S``
    streams of codes in flight instead of one; every panel's products, their order and the scaling are
    those of ``_qmm_int8_panels``, so the results are the same bit for bit.
    """
    P, K, _ = panels.shape
    NKB, _, KX = xp.shape
    G = sT.shape[0]
    N = out.shape[1]
    for pg in prange(-(-P // S)):
        p0 = pg * S
        ns = min(S, P - p0)
        acc = np.empty((S, PANEL), np.float32)
        fac = np.zeros((S, PANEL), np.float32)
        for g in range(G):
            kb0, kb1 = _group_blocks(g, G, gs, NKB, KX)
            for kb in range(kb0, kb1):
                ga, gb, off, fresh = _block_steps(kb, g, G, gs, KX, K)
                _stream_steps(panels, p0, ns, xp[kb], ga, gb, off, kc, acc, fresh)
            t = xsum[0, g]
            for i in range(ns):
                n0 = (p0 + i) * PANEL
                s = sT[g, n0:n0 + PANEL]
                z = zT[g, n0:n0 + PANEL]
                a = acc[i]
                f = fac[i]
                for j in range(PANEL):
                    f[j] += s[j] * (a[j] - z[j] * t)
        for i in range(ns):
            n0 = (p0 + i) * PANEL
            o = out[0, n0:min(n0 + PANEL, N)]
            f = fac[i]
            for j in range(o.size):
                o[j] = f[j]


@njit(inline="always")
def _vnni_steps(w, xb, ga, gb, off, kc4, B, acc, fresh):
    """int32 sums over the steps ``ga .. gb`` of 4 features into ``acc`` (``off`` = first step held by the
    activation block ``xb``), overwriting ``acc`` first when ``fresh``."""
    rt = _tile_rows(B)
    for k0 in range(ga, gb, kc4):
        kn = min(kc4, gb - k0)
        for b0 in range(0, B, rt):
            _tile_vnni(w, k0, xb, b0, min(rt, B - b0), k0 - off, kn, acc, fresh and k0 == ga)


_vnni_stream_steps = _make_stream_steps(_U1, _U2, _U3, _U4, "``_vnni_steps`` at batch 1 over neighbouring panels.")


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _w8a8_vnni_panels_streams(panels4, corrT, sT, zT, gs4, xu, sx, qxsum, kc4, S, out):
    """``_w8a8_vnni_panels`` for one activation row (``xu`` (NKB, 1, KX)), ``S`` (1 to 4) panels at a time.

    Each ``prange`` iteration multiplies ``S`` neighbouring panels side by side, so each core keeps ``S``
    streams of codes in flight instead of one. The int32 group sums are exact in any order and the float32
    scaling is that of ``_w8a8_vnni_panels``, so the results are the same bit for bit.
    """
    P, K4, _ = panels4.shape
    NKB, _, KX = xu.shape
    KX4 = KX // 4
    G = sT.shape[0]
    N = out.shape[1]
    for pg in prange(-(-P // S)):
        p0 = pg * S
        ns = min(S, P - p0)
        acc = np.empty((S, PANEL), np.int32)
        fac = np.zeros((S, PANEL), np.float32)
        for g in range(G):
            kb0, kb1 = _group_blocks(g, G, gs4, NKB, KX4)
            for kb in range(kb0, kb1):
                ga, gb, off, fresh = _block_steps(kb, g, G, gs4, KX4, K4)
                _vnni_stream_steps(panels4, p0, ns, xu[kb], ga, gb, off, kc4, acc, fresh)
            t = qxsum[0, g]
            for i in range(ns):
                n0 = (p0 + i) * PANEL
                c = corrT[g, n0:n0 + PANEL]
                s = sT[g, n0:n0 + PANEL]
                z = zT[g, n0:n0 + PANEL]
                a = acc[i]
                f = fac[i]
                for j in range(PANEL):
                    f[j] += s[j] * np.float32(np.int32(a[j] - c[j] - z[j] * t))
        sb = sx[0]
        for i in range(ns):
            n0 = (p0 + i) * PANEL
            o = out[0, n0:min(n0 + PANEL, N)]
            f = fac[i]
            for j in range(o.size):
                o[j] = f[j] * sb


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _w8a8_vnni_panels(panels4, corrT, sT, zT, gs4, xu, sx, qxsum, kc4, out):
    """W8A8 with ``vpdpbusd``: exact int32 group sums of ``(qx + 128) * q``, corrected and scaled per group.

    ``panels4`` int8 (P, K4, 256): panel ``p``, step ``t`` holds ``q[64p + j, 4t + i]`` at ``4j + i``;
    ``corrT`` int32 (G, 64P) = ``128 * sum of q over the group``; ``sT`` float32 and ``zT`` int32 (G, 64P);
    ``gs4`` the group length in steps of 4 features (a block of ``xu`` holds whole groups when G > 1);
    ``xu`` uint8 (NKB, B, KX), ``sx`` (B,), ``qxsum`` int32 (B, G) from ``_quantize_rows_u8``. Per group:
    ``sum_k qx (q - z) = acc - corr - z * qxsum`` (exact, int32 wrap-around included, when that true sum
    fits in int32: 127 * max|q - z| * group length < 2**31, which the caller's grouping guarantees; ``acc``
    itself, up to 255 * 128 per product, and ``corr`` may wrap), times ``s``, summed in float32, times
    ``sx`` at the end.
    """
    P, K4, _ = panels4.shape
    NKB, B, KX = xu.shape
    KX4 = KX // 4
    G = sT.shape[0]
    N = out.shape[1]
    for p in prange(P):
        n0 = p * PANEL
        acc = np.empty((B, PANEL), np.int32)
        fac = np.zeros((B, PANEL), np.float32)
        w = panels4[p]
        for g in range(G):
            kb0, kb1 = _group_blocks(g, G, gs4, NKB, KX4)
            for kb in range(kb0, kb1):
                ga, gb, off, fresh = _block_steps(kb, g, G, gs4, KX4, K4)
                _vnni_steps(w, xu[kb], ga, gb, off, kc4, B, acc, fresh)
            c = corrT[g, n0:n0 + PANEL]
            s = sT[g, n0:n0 + PANEL]
            z = zT[g, n0:n0 + PANEL]
            for b in range(B):
                t = qxsum[b, g]
                a = acc[b]
                f = fac[b]
                for j in range(PANEL):
                    f[j] += s[j] * np.float32(np.int32(a[j] - c[j] - z[j] * t))
        for b in range(B):
            o = out[b, n0:min(n0 + PANEL, N)]
            f = fac[b]
            sb = sx[b]
            for j in range(o.size):
                o[j] = f[j] * sb
