"""Int8-weight kernels for CUDA (``numba.cuda``), twins of ``int8_cpu``: weight-only GEMV and tiled GEMM,
and the W8A8 path (activations quantized per row on the device, integer products through ``dp4a``).

Contract shared by every kernel here (inputs validated and laid out by ``numaccel._cuda.api`` and
``numaccel._cuda.formats``, launched by ``numaccel._cuda.launch``):

- ``qwords`` int32 (N, G * gw): the int8 codes of each row packed four to a word, little-endian (byte
  ``t`` of word ``w`` is the code at position ``4 * w + t``), in the *group-padded* layout: every group of
  ``gs`` input features starts on a word boundary and is padded with zero codes to ``gw = ceil(gs / 4)``
  words, so no word straddles two groups. Word ``w`` holds group ``w // gw``; its byte ``t`` is input
  feature ``k = (w // gw) * gs + 4 * (w % gw) + t`` when ``4 * (w % gw) + t < gs`` and ``k < K``, and
  padding otherwise. Per-channel scales are the case G = 1, gs = K.
- ``kmap`` int32 (G * gw * 4,): that map, computed once on the host: the input feature ``k`` of every
  code position of a row, -1 on padding (so kernels need no integer division to find it).
- ``scales`` float32 (N, G); ``zps`` int32 (N, G) (zeros for symmetric codes).
- float activations ``x`` float32 (B, K), any strides; ``out`` float32 (B, N) or (N,), every element
  written once; ``bias`` float32 (N,) read only when ``has_bias`` is 1.

No kernel raises or allocates. Reductions across threads go through shared memory (warp shuffles do not
exist in Numba's CUDA simulator). Tile sizes are module constants so shared-array shapes are compile-time
constants.

``dp4a`` (four int8 products summed into an int32) has no ``numba.cuda`` binding: on a GPU it is one PTX
instruction emitted through a small inline-assembly intrinsic; under the simulator, where intrinsics cannot
run, a NumPy stand-in with the same arithmetic is bound instead. The choice is made once, when this module
is imported; the kernels only ever call ``_dp4a``.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, float64, int32
from numba.cuda.core import config as _cuda_config

from .csr_cuda import _store_lane_sum

# Weight-only GEMV (B = 1): one warp per output row, GEMV_WARPS rows per block; the activations are staged
# in shared memory GEMV_CHUNK_WORDS words (4 features each) at a time; each lane has GEMV_UNROLL word
# loads in flight.
GEMV_LANES = 32
GEMV_WARPS = 8
GEMV_THREADS = GEMV_LANES * GEMV_WARPS
GEMV_CHUNK_WORDS = 512
GEMV_CHUNK = GEMV_CHUNK_WORDS * 4
GEMV_UNROLL = 4
# Tiled GEMMs: GEMM_SIDE x GEMM_SIDE threads compute a GEMM_TILE x GEMM_TILE output tile, each thread a
# GEMM_MICRO x GEMM_MICRO micro-tile of outputs spaced GEMM_SIDE apart.
GEMM_SIDE = 16
GEMM_MICRO = 4
GEMM_MICRO2 = GEMM_MICRO * GEMM_MICRO
GEMM_TILE = GEMM_SIDE * GEMM_MICRO
# Weight-only GEMM: K step of GEMM_KW words = GEMM_K features, shared tiles padded by one column.
GEMM_KW = 4
GEMM_K = GEMM_KW * 4
GEMM_K_PAD = GEMM_K + 1
# W8A8 GEMM: K step of W8A8_KW words (4 int8 codes each), shared tiles padded by one column.
W8A8_KW = 8
W8A8_KW_PAD = W8A8_KW + 1
# Activation quantization: one block of QUANT_THREADS threads per row.
QUANT_THREADS = 128


@cuda.jit(device=True)
def _sbyte(w, t):
    """Byte ``t`` (0..3) of the int32 word ``w`` as a signed value in [-128, 127]."""
    v = (w >> (8 * t)) & 0xFF
    return v - ((v & 0x80) << 1)


def _dp4a_numpy(a, b, c):
    """Stand-in for PTX ``dp4a.s32.s32`` on Python/NumPy integers: ``c + sum_t sbyte(a, t) * sbyte(b, t)``,
    wrapped to int32 as the instruction's 32-bit sum is."""
    a = int(a)
    b = int(b)
    total = int(c)
    for shift in (0, 8, 16, 24):
        u = (a >> shift) & 0xFF
        v = (b >> shift) & 0xFF
        total += (u - ((u & 0x80) << 1)) * (v - ((v & 0x80) << 1))
    return np.int32(((total + 2**31) & 0xFFFFFFFF) - 2**31)


def _make_dp4a_ptx():
    """The ``dp4a.s32.s32`` PTX instruction as a ``numba.cuda`` intrinsic ``(int32, int32, int32) -> int32``.
    """
    from llvmlite import ir
    from numba import types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def dp4a(typingctx, a, b, c):
        sig = types.int32(types.int32, types.int32, types.int32)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            asm = ir.InlineAsm(ir.FunctionType(i32, [i32, i32, i32]), "dp4a.s32.s32 $0, $1, $2, $3;",
                               "=r,r,r,r")
            return builder.call(asm, args)

        return sig, codegen

    return dp4a


# Bound once, at import: the simulator runs kernels as Python and cannot execute an intrinsic.
_dp4a = _dp4a_numpy if _cuda_config.ENABLE_CUDASIM else _make_dp4a_ptx()


@cuda.jit(device=True)
def _store_tile(acc, b0, n0, bias, has_bias, out):
    """Write a thread's GEMM_MICRO x GEMM_MICRO register tile ``acc`` (+ ``bias[n]``) into ``out`` (B, N)
    at rows ``b0 + ty + i * GEMM_SIDE`` and columns ``n0 + tx + j * GEMM_SIDE`` that are in range."""
    nb, nn = out.shape
    for i in range(GEMM_MICRO):
        b = b0 + cuda.threadIdx.y + i * GEMM_SIDE
        for jj in range(GEMM_MICRO):
            n = n0 + cuda.threadIdx.x + jj * GEMM_SIDE
            if b < nb and n < nn:
                v = acc[i * GEMM_MICRO + jj]
                if has_bias:
                    v += bias[n]
                out[b, n] = v


@cuda.jit(cache=True)
def _gemv_int8_cuda(qwords, scales, zps, kmap, gw, x, bias, has_bias, out):
    """``out[n] = sum_k (q[n, k] - zp) * scale * x[k] (+ bias[n])``; ``x`` (K,), ``out`` (N,).

    Each lane reads whole 4-byte words of its row, GEMV_UNROLL of them before using any (a warp reads 128
    consecutive bytes per load); the block stages ``x`` in shared memory in the group-padded layout (zeros on
    padding), so padding needs no test. Each word's four products are scaled before they are summed, so
    the float32 sums stay finite while ``4 * 255 * max|x|`` and the result are. Launch: 1-D blocks of
    GEMV_THREADS, ``ceil(N / GEMV_WARPS)`` blocks.
    """
    sh_x = cuda.shared.array(GEMV_CHUNK, float32)
    partial = cuda.shared.array(GEMV_THREADS, float32)
    tid = cuda.threadIdx.x
    lane = tid % GEMV_LANES
    row = cuda.blockIdx.x * GEMV_WARPS + tid // GEMV_LANES
    n = out.shape[0]
    nwords = qwords.shape[1]
    npos = kmap.shape[0]
    acc = float32(0.0)
    words = cuda.local.array(GEMV_UNROLL, int32)
    for c0 in range(0, nwords, GEMV_CHUNK_WORDS):
        cuda.syncthreads()
        for e in range(tid, GEMV_CHUNK, GEMV_THREADS):
            p = c0 * 4 + e
            v = float32(0.0)
            if p < npos:
                k = kmap[p]
                if k >= 0:
                    v = x[k]
            sh_x[e] = v
        cuda.syncthreads()
        if row < n:
            c1 = min(c0 + GEMV_CHUNK_WORDS, nwords)
            # group of the lane's word, advanced as the word advances (no division per word)
            j = (c0 + lane) // gw
            g_end = (j + 1) * gw
            for wb in range(c0 + lane, c1, GEMV_LANES * GEMV_UNROLL):
                # issue GEMV_UNROLL independent loads before using any, to keep more bytes in flight
                for u in range(GEMV_UNROLL):
                    w = wb + u * GEMV_LANES
                    words[u] = qwords[row, w] if w < c1 else 0
                for u in range(GEMV_UNROLL):
                    w = wb + u * GEMV_LANES
                    if w >= c1:
                        break
                    while w >= g_end:
                        j += 1
                        g_end += gw
                    acc += _word_dot(words[u], sh_x, (w - c0) * 4, scales[row, j], zps[row, j])
    _store_lane_sum(partial, tid, lane, GEMV_LANES, acc, row, bias, has_bias, out)


@cuda.jit(device=True)
def _word_dot(word, sh_x, e, scale, zp):
    """``scale * sum_t (sbyte(word, t) - zp) * sh_x[e + t]`` over the four codes of one word."""
    x0 = sh_x[e]
    x1 = sh_x[e + 1]
    x2 = sh_x[e + 2]
    x3 = sh_x[e + 3]
    dot = (float32(_sbyte(word, 0)) * x0 + float32(_sbyte(word, 1)) * x1
           + float32(_sbyte(word, 2)) * x2 + float32(_sbyte(word, 3)) * x3)
    dot -= float32(zp) * ((x0 + x1) + (x2 + x3))
    return scale * dot


@cuda.jit(cache=True)
def _gemm_int8_cuda(qwords, scales, zps, kmap, gw, x, bias, has_bias, out):
    """``out[b, n] = sum_k x[b, k] * (q[n, k] - zp) * scale (+ bias[n])``; ``x`` (B, K), ``out`` (B, N).

    Shared-memory tiling: per K step the block stages GEMM_TILE activation rows and GEMM_TILE weight rows
    (dequantized once, while staging) of GEMM_K features each, then every thread updates its
    GEMM_MICRO x GEMM_MICRO register tile. Launch: blocks of (GEMM_SIDE, GEMM_SIDE), grid
    ``(ceil(N / GEMM_TILE), ceil(B / GEMM_TILE))``.
    """
    sh_x = cuda.shared.array((GEMM_TILE, GEMM_K_PAD), float32)
    sh_w = cuda.shared.array((GEMM_TILE, GEMM_K_PAD), float32)
    acc = cuda.local.array(GEMM_MICRO2, float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * GEMM_SIDE + tx
    n0 = cuda.blockIdx.x * GEMM_TILE
    b0 = cuda.blockIdx.y * GEMM_TILE
    nb, nn = out.shape
    nwords = qwords.shape[1]
    npos = kmap.shape[0]
    for i in range(GEMM_MICRO2):
        acc[i] = 0
    for w0 in range(0, nwords, GEMM_KW):
        # activations: GEMM_TILE rows x GEMM_K features, zero outside the matrix and on padding
        for e in range(tid, GEMM_TILE * GEMM_K, GEMM_SIDE * GEMM_SIDE):
            r = e // GEMM_K
            kk = e % GEMM_K
            p = w0 * 4 + kk
            v = float32(0.0)
            if b0 + r < nb and p < npos:
                k = kmap[p]
                if k >= 0:
                    v = x[b0 + r, k]
            sh_x[r, kk] = v
        # weights: GEMM_TILE rows x GEMM_KW words, dequantized into floats
        for e in range(tid, GEMM_TILE * GEMM_KW, GEMM_SIDE * GEMM_SIDE):
            r = e // GEMM_KW
            kw = e % GEMM_KW
            w = w0 + kw
            word = int32(0)
            s = float32(0.0)
            z = int32(0)
            if n0 + r < nn and w < nwords:
                word = qwords[n0 + r, w]
                s = scales[n0 + r, w // gw]
                z = zps[n0 + r, w // gw]
            for t in range(4):
                sh_w[r, kw * 4 + t] = float32(_sbyte(word, t) - z) * s
        cuda.syncthreads()
        for kk in range(GEMM_K):
            for i in range(GEMM_MICRO):
                xv = sh_x[ty + i * GEMM_SIDE, kk]
                for jj in range(GEMM_MICRO):
                    acc[i * GEMM_MICRO + jj] += xv * sh_w[tx + jj * GEMM_SIDE, kk]
        cuda.syncthreads()
    _store_tile(acc, b0, n0, bias, has_bias, out)


@cuda.jit(cache=True)
def _quantize_rows_cuda(x, kmap, gs, qx, sx, qsum):
    """Symmetric per-row quantization of activations for W8A8, as ``int8_cpu._quantize_rows_u8``:
    ``sx[b] = max|x[b]| / 127`` (float64), codes ``clip(rint(x / sx[b]), -127, 127)`` (zeros for an
    all-zero row) packed into ``qx`` int32 (B, G * gw) in the group-padded layout, and ``qsum`` int32
    (B, G) the sum of the codes of each group (for zero points; exact as 127 * gs < 2**31). A row holding
    NaN or inf gets ``sx[b] = nan`` and zero codes, so its outputs are NaN. Launch: B blocks of
    QUANT_THREADS.
    """
    red = cuda.shared.array(QUANT_THREADS, float32)
    tid = cuda.threadIdx.x
    b = cuda.blockIdx.x
    k_total = x.shape[1]
    nwords = qx.shape[1]
    ngroups = qsum.shape[1]
    # max |x| with NaN kept (a NaN compares false, so test it explicitly): inf or NaN marks the row
    amax = float32(0.0)
    for k in range(tid, k_total, QUANT_THREADS):
        v = abs(x[b, k])
        if v > amax or v != v:
            amax = v
    red[tid] = amax
    cuda.syncthreads()
    step = QUANT_THREADS // 2
    while step > 0:
        if tid < step:
            v = red[tid + step]
            if v > red[tid] or v != v:
                red[tid] = v
        cuda.syncthreads()
        step //= 2
    finite = red[0] < np.inf
    s = float64(red[0]) / 127.0 if finite else 0.0
    if tid == 0:
        sx[b] = s if finite else np.nan
    for w in range(tid, nwords, QUANT_THREADS):
        word = 0
        for t in range(4):
            k = kmap[4 * w + t]
            c = 0
            if k >= 0 and s > 0:
                c = min(max(round(float64(x[b, k]) / s), -127), 127)
            if t < 3:
                word |= (c & 0xFF) << (8 * t)
            else:
                word |= c << 24
        qx[b, w] = word
    for j in range(tid, ngroups, QUANT_THREADS):
        total = 0
        for o in range(gs):
            k = j * gs + o
            if k < k_total and s > 0:
                total += min(max(round(float64(x[b, k]) / s), -127), 127)
        qsum[b, j] = total


@cuda.jit(cache=True)
def _w8a8_int8_cuda(qwords, scales, zps, gw, qx, sx, qsum, bias, has_bias, out):
    """W8A8: ``out[b, n] = sum_g sx[b] * scales[n, g] * (qx[b, g] . q[n, g] - zps[n, g] * qsum[b, g])``
    (+ ``bias[n]``); ``qx`` int32 (B, G * gw) packed codes from ``_quantize_rows_cuda``.

    The integer products run through ``dp4a`` (four int8 products per instruction) into int32 register
    tiles, one group at a time; each group's sum is scaled into float accumulators. The int32 sums of
    ``qx * q`` (at most 127 * 128 * gs) and ``qx * (q - z)`` (127 * 255 * gs) are exact for the groups the
    caller lays out (``numaccel._cuda.formats.DeviceInt8Weight`` splits a long row into chunks of at most
    66 311 features with zero points, 132 104 without); the scaled sum ``corr * scale`` is float32, finite while
    ``max|W| * 127 * gs`` is. Launch: blocks of (GEMM_SIDE, GEMM_SIDE), grid
    ``(ceil(N / GEMM_TILE), ceil(B / GEMM_TILE))``.
    """
    sh_a = cuda.shared.array((GEMM_TILE, W8A8_KW_PAD), int32)
    sh_w = cuda.shared.array((GEMM_TILE, W8A8_KW_PAD), int32)
    iacc = cuda.local.array(GEMM_MICRO2, int32)
    facc = cuda.local.array(GEMM_MICRO2, float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * GEMM_SIDE + tx
    n0 = cuda.blockIdx.x * GEMM_TILE
    b0 = cuda.blockIdx.y * GEMM_TILE
    nb, nn = out.shape
    ngroups = scales.shape[1]
    for i in range(GEMM_MICRO2):
        facc[i] = 0
    for j in range(ngroups):
        for i in range(GEMM_MICRO2):
            iacc[i] = 0
        g_end = (j + 1) * gw
        for w0 in range(j * gw, g_end, W8A8_KW):
            for e in range(tid, GEMM_TILE * W8A8_KW, GEMM_SIDE * GEMM_SIDE):
                r = e // W8A8_KW
                kw = e % W8A8_KW
                w = w0 + kw
                va = int32(0)
                vw = int32(0)
                if w < g_end:
                    if b0 + r < nb:
                        va = qx[b0 + r, w]
                    if n0 + r < nn:
                        vw = qwords[n0 + r, w]
                sh_a[r, kw] = va
                sh_w[r, kw] = vw
            cuda.syncthreads()
            for kw in range(W8A8_KW):
                for i in range(GEMM_MICRO):
                    av = sh_a[ty + i * GEMM_SIDE, kw]
                    for jj in range(GEMM_MICRO):
                        iacc[i * GEMM_MICRO + jj] = _dp4a(av, sh_w[tx + jj * GEMM_SIDE, kw],
                                                          iacc[i * GEMM_MICRO + jj])
            cuda.syncthreads()
        for i in range(GEMM_MICRO):
            b = b0 + ty + i * GEMM_SIDE
            for jj in range(GEMM_MICRO):
                n = n0 + tx + jj * GEMM_SIDE
                if b < nb and n < nn:
                    corr = iacc[i * GEMM_MICRO + jj] - zps[n, j] * qsum[b, j]
                    facc[i * GEMM_MICRO + jj] += float32(sx[b] * (float32(corr) * scales[n, j]))
    _store_tile(facc, b0, n0, bias, has_bias, out)
