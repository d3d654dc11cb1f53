"""Pruned-int8 kernels: CSR structure, int8 codes, float32 scales per row or per group of a row's stored values.

``y[b, i] = sum_g scales[g] * sum_{p in group g} q[p] * x[b, indices[p]]``: every code is read once, as
int8, converted exactly to float32 and multiplied into a float32 accumulation; each group's (or row's) sum
is scaled once. Groups of row ``i`` are ``gptr[i]:gptr[i + 1]``, each ``gs`` consecutive stored values (the
last one shorter); per-row scales are passed as ``gptr = arange(N + 1)`` and ``gs`` at least the longest
row. The AVX-512 paths reuse the CSR register-tile and 16-lane intrinsics of :mod:`.csr_cpu` on int8 codes;
the portable paths are plain Numba. Rows are split among threads by ``bounds`` (chunks of about equal
nonzeros), each chunk owned by one thread: a row's result does not depend on the thread count.

W8A8 (``activation_quant="int8"``): ``_quantize_t_u8`` codes the activations per row and transposes them
into slabs; ``_w8a8_rows`` is the portable product (int64 sums), bitwise the result of the VNNI kernel in
:mod:`.csr_int8_vnni_x86`; ``_group_code_sums`` gives the VNNI kernel's correction terms.

Contract (validated by the caller, nothing checked here): CSR arrays valid, ``x`` (K,) / slabs as for
:mod:`.csr_cpu`, ``out`` C-contiguous and fully overwritten.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import FASTMATH
from .csr_cpu import _row_dot16_variant, _store_row, _tile_row
from .int8_cpu import _abs_max


# --------------------------------------------------------------------------------------------------
# batch 1
@njit(inline="always", fastmath=FASTMATH)
def _qdot(indices, q, start, end, x):
    """``sum_p q[p] * x[indices[p]]`` over ``[start, end)`` in x's dtype, four accumulators."""
    f = x.dtype.type
    zero = f(0)
    a0 = zero
    a1 = zero
    a2 = zero
    a3 = zero
    m = start + (end - start) // 4 * 4
    for p in range(start, m, 4):
        a0 += f(q[p]) * x[indices[p]]
        a1 += f(q[p + 1]) * x[indices[p + 1]]
        a2 += f(q[p + 2]) * x[indices[p + 2]]
        a3 += f(q[p + 3]) * x[indices[p + 3]]
    for p in range(m, end):
        a0 += f(q[p]) * x[indices[p]]
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_q_range(indptr, indices, q, scales, gptr, gs, r0, r1, x, out):
    """Rows ``r0:r1`` at batch 1, portable (any float ``x``)."""
    for i in range(r0, r1):
        start = np.int64(indptr[i])
        end = np.int64(indptr[i + 1])
        acc = x.dtype.type(0)
        g = gptr[i]
        for s in range(start, end, gs):
            acc += scales[g] * _qdot(indices, q, s, min(s + gs, end), x)
            g += 1
        out[i] = acc


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_q_vec_range(indptr, indices, q, scales, gptr, gs, r0, r1, x, variant, out):
    """Rows ``r0:r1`` at batch 1 for float32 ``x`` on AVX-512 (the 16-lane dot of ``.csr_cpu``, its
    ``variant`` one of ``csr_cpu.GEMV_*``)."""
    for i in range(r0, r1):
        start = np.int64(indptr[i])
        end = np.int64(indptr[i + 1])
        if end - start <= gs:  # one group (every row, with per-row scales): no group loop around the dot
            # (an empty row has no scale of its own)
            d = _row_dot16_variant(indices, q, start, end, x, variant)
            out[i] = scales[gptr[i]] * d if end > start else np.float32(0)
            continue
        acc = np.float32(0)
        g = gptr[i]
        for s in range(start, end, gs):
            acc += scales[g] * _row_dot16_variant(indices, q, s, min(s + gs, end), x, variant)
            g += 1
        out[i] = acc


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_q(indptr, indices, q, scales, gptr, gs, bounds, x, out):
    """``_spmv_q_range`` over the chunks ``bounds`` (one thread each)."""
    for c in prange(bounds.size - 1):
        _spmv_q_range(indptr, indices, q, scales, gptr, gs, bounds[c], bounds[c + 1], x, out)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_q_vec(indptr, indices, q, scales, gptr, gs, bounds, x, variant, out):
    """``_spmv_q_vec_range`` over the chunks ``bounds`` (one thread each)."""
    for c in prange(bounds.size - 1):
        _spmv_q_vec_range(indptr, indices, q, scales, gptr, gs, bounds[c], bounds[c + 1], x, variant, out)


# --------------------------------------------------------------------------------------------------
# batched, AVX-512 register tiles (float32)
@njit(inline="always", fastmath=FASTMATH)
def _q_row_tile(indptr, indices, q, scales, gptr, gs, i, xs, tmp, acc, W):
    """``acc[:W] = row i of W @ xs`` (scaled), through unscaled tiles of each group in ``tmp``.

    The tile kernel converts each code to float32 as it broadcasts it, with its prefetch of the code
    stream ahead (widening a row's codes into a float buffer first measured slower: docs/performance.md,
    "Pruned int8").
    """
    start = np.int64(indptr[i])
    end = np.int64(indptr[i + 1])
    g = gptr[i]
    if end - start <= gs:  # at most one group: scale the tile once (an empty row has no scale of its own)
        _tile_row(indices, q, start, end, xs, acc, W)
        if end > start:
            s = scales[g]
            for j in range(W):
                acc[j] *= s
        return
    for j in range(W):
        acc[j] = 0
    for s0 in range(start, end, gs):
        _tile_row(indices, q, s0, min(s0 + gs, end), xs, tmp, W)
        s = scales[g]
        for j in range(W):
            acc[j] += s * tmp[j]
        g += 1


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_q_tiles_chunk(indptr, indices, q, scales, gptr, gs, r0, r1, slabs, buf, transposed, out):
    """Rows ``r0:r1``; ``buf`` (G + 1, W) float32: G rows' tiles stored together (transposed ``out``, as
    :func:`.csr_cpu._spmm_tiles_chunk` does) and one row of group scratch."""
    T = slabs.shape[0]
    W = slabs.shape[2]
    G = buf.shape[0] - 1
    tmp = buf[G]
    P = out.shape[0] if transposed else out.shape[1]
    for t in range(T):
        xs = slabs[t]
        b0 = t * W
        nb = min(W, P - b0)
        if transposed:
            for g0 in range(r0, r1, G):
                g1 = min(g0 + G, r1)
                for i in range(g0, g1):
                    _q_row_tile(indptr, indices, q, scales, gptr, gs, i, xs, tmp, buf[i - g0], W)
                for j in range(nb):
                    orow = out[b0 + j, g0:g1]
                    for r in range(g1 - g0):
                        orow[r] = buf[r, j]
        else:
            acc = buf[0]
            for i in range(r0, r1):
                _q_row_tile(indptr, indices, q, scales, gptr, gs, i, xs, tmp, acc, W)
                orow = out[i]
                for j in range(nb):
                    orow[b0 + j] = acc[j]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_q_tiles(indptr, indices, q, scales, gptr, gs, bounds, slabs, scratch, transposed, out):
    """``W @ X`` with X as float32 slabs (T, K, W); scratch (chunks, G + 1, W); ``out`` (N, P) or (P, N)."""
    for c in prange(bounds.size - 1):
        _spmm_q_tiles_chunk(indptr, indices, q, scales, gptr, gs, bounds[c], bounds[c + 1], slabs, scratch[c],
                            transposed, out)


# --------------------------------------------------------------------------------------------------
# batched, portable
@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_q_rows_range(indptr, indices, q, scales, gptr, gs, r0, r1, b, acc, transposed, out):
    """Rows ``r0:r1`` of ``W @ b`` for C-contiguous ``b`` (K, P); ``acc`` (2, P) of b's dtype."""
    P = b.shape[1]
    f = b.dtype.type
    tot = acc[0]
    part = acc[1]
    for i in range(r0, r1):
        start = np.int64(indptr[i])
        end = np.int64(indptr[i + 1])
        for j in range(P):
            tot[j] = 0
        g = gptr[i]
        for s0 in range(start, end, gs):
            e = min(s0 + gs, end)
            for j in range(P):
                part[j] = 0
            m = s0 + (e - s0) // 2 * 2
            for p in range(s0, m, 2):
                v0 = f(q[p])
                v1 = f(q[p + 1])
                ra = b[indices[p]]
                rb = b[indices[p + 1]]
                for j in range(P):
                    part[j] += v0 * ra[j] + v1 * rb[j]
            for p in range(m, e):
                v = f(q[p])
                r = b[indices[p]]
                for j in range(P):
                    part[j] += v * r[j]
            s = scales[g]
            for j in range(P):
                tot[j] += s * part[j]
            g += 1
        _store_row(tot, i, P, transposed, out)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_q_rows(indptr, indices, q, scales, gptr, gs, bounds, b, scratch, transposed, out):
    """``_spmm_q_rows_range`` over the chunks ``bounds``; scratch (chunks, 2, P)."""
    for c in prange(bounds.size - 1):
        _spmm_q_rows_range(indptr, indices, q, scales, gptr, gs, bounds[c], bounds[c + 1], b, scratch[c],
                           transposed, out)


# --------------------------------------------------------------------------------------------------
# W8A8: int8 activations, quantized per row and transposed
@njit(inline="always")
def _quantize_t_body(x, pos, xt, sx, kb):
    """Features ``64 kb : 64 kb + 64`` of every row ``b`` into column ``pos[b]`` of the slabs ``xt`` (T, K, W)
    (slab ``pos[b] // W``, column ``pos[b] % W``: 64 rows of each slab, which stay in L1 while each
    activation row passes); the columns ``pos[B:]`` get 128 (code 0)."""
    B, K = x.shape
    W = xt.shape[2]
    k0 = kb * 64
    k1 = min(K, k0 + 64)
    for b in range(B):
        s = sx[b]
        xb = x[b]
        xs = xt[pos[b] // W]
        c = pos[b] % W
        if s > 0:  # False for NaN: a row holding NaN or inf gets code 0 and sx NaN, so NaN outputs
            inv = 1.0 / s
            if inv < np.inf:
                for k in range(k0, k1):
                    # |x| <= max|x|, so |x * inv| <= 127 (1 + 3 eps) rounds into [-127, 127]
                    xs[k, c] = np.uint8(np.int32(np.rint(np.float64(xb[k]) * inv)) + 128)
            else:  # float64 rows with max|x| < 7.1e-307: 1 / s overflows, so divide and clip
                for k in range(k0, k1):
                    v = min(max(np.rint(np.float64(xb[k]) / s), -127.0), 127.0)
                    xs[k, c] = np.uint8(np.int32(v) + 128)
        else:
            for k in range(k0, k1):
                xs[k, c] = 128
    for b in range(B, pos.size):
        xs = xt[pos[b] // W]
        c = pos[b] % W
        for k in range(k0, k1):
            xs[k, c] = 128


@njit(inline="always")
def _row_scale(xb):
    amax = _abs_max(xb)
    return amax / 127.0 if amax < np.inf else np.nan


@njit(parallel=True, cache=True, nogil=True)
def _quantize_t_u8(x, pos, xt, sx):
    """W8A8 activation codes: ``sx[b] = max|x[b]| / 127`` (float64; NaN for a row holding NaN or inf) and
    ``xt[k, pos[b]] = rint(x[b, k] / sx[b]) + 128`` (uint8; the rounding of ``int8_cpu._quantize_rows_u8``),
    transposed into slabs: x (B, K) float32/float64, ``pos`` (Bp,) int64 a permutation of ``range(Bp)``,
    Bp >= B, xt (T, K, W) with T * W == Bp, sx (B,)."""
    B, K = x.shape
    for b in prange(B):
        sx[b] = _row_scale(x[b])
    for kb in prange((K + 63) // 64):
        _quantize_t_body(x, pos, xt, sx, kb)


@njit(cache=True, nogil=True)
def _quantize_t_u8_serial(x, pos, xt, sx):
    """``_quantize_t_u8`` on the calling thread (small inputs)."""
    B, K = x.shape
    for b in range(B):
        sx[b] = _row_scale(x[b])
    for kb in range((K + 63) // 64):
        _quantize_t_body(x, pos, xt, sx, kb)


@njit(cache=True, nogil=True)
def _w8a8_rows_range(indptr, indices, q, scales, gptr, gs, r0, r1, xt, sx, acc, tot, out):
    """Rows ``r0:r1`` of the portable W8A8 product, bitwise the result of the VNNI kernel
    (:mod:`.csr_int8_vnni_x86`): each group's sum exact in int64, scaled in float64 in the same order.
    ``xt`` (K, B) the codes + 128 (one slab of ``_quantize_t_u8``), ``acc`` (B,) int64, ``tot`` (B,)
    float64 scratch; ``out`` (B, N)."""
    B = out.shape[0]
    for i in range(r0, r1):
        for j in range(B):
            tot[j] = 0.0
        start = np.int64(indptr[i])
        end = np.int64(indptr[i + 1])
        g = gptr[i]
        for s0 in range(start, end, gs):
            for j in range(B):
                acc[j] = 0
            for p in range(s0, min(s0 + gs, end)):
                v = np.int64(q[p])
                xr = xt[indices[p]]
                for j in range(B):
                    acc[j] += v * (np.int64(xr[j]) - 128)
            sc = np.float64(scales[g])
            for j in range(B):
                tot[j] += sc * np.float64(acc[j])
            g += 1
        for j in range(B):
            out[j, i] = sx[j] * tot[j]


@njit(cache=True, nogil=True)
def _group_code_sums(indptr, q, gptr, gs, out):
    """``out[g] = sum of the codes of group g`` (int64; groups as ``gptr``, ``gs``), for the W8A8 correction."""
    for i in range(indptr.size - 1):
        g = gptr[i]
        end = np.int64(indptr[i + 1])
        for s0 in range(np.int64(indptr[i]), end, gs):
            t = np.int64(0)
            for p in range(s0, min(s0 + gs, end)):
                t += q[p]
            out[g] = t
            g += 1


@njit(parallel=True, cache=True, nogil=True)
def _w8a8_rows(indptr, indices, q, scales, gptr, gs, bounds, xt, sx, acc, tot, out):
    """``_w8a8_rows_range`` over the chunks ``bounds``; acc, tot (chunks, B)."""
    for c in prange(bounds.size - 1):
        _w8a8_rows_range(indptr, indices, q, scales, gptr, gs, bounds[c], bounds[c + 1], xt, sx, acc[c], tot[c],
                         out)
