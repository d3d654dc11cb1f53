"""How a pruned-int8 product runs on this host.

The CSR planner's decisions (serial or parallel, row chunks, slab widths, AVX-512 tiles or portable
loops) applied to int8 codes with per-row or per-group scales (:mod:`numaccel._kernels.csr_int8_cpu`).
"""

from __future__ import annotations

import functools

import numpy as np

from .. import _config
from .._kernels import csr_cpu, csr_int8_cpu
from .._validate import frozen
from ..formats.csr_int8 import group_pointer
from . import csr
from . import int8 as _int8
from ._buffers import aligned_empty
from ._cache import PerWeight

__all__ = ["W8A8_MAX_GROUP", "linear", "matmul", "w8a8_groups"]

_NO_GROUPS = np.int64(2**62)

#: Longest group (stored values under one scale) whose W8A8 sum is exact in int32: activation codes in
#: [-127, 127] times weight codes in [-128, 127], so ``127 * 128 * L < 2**31``.
W8A8_MAX_GROUP = (2**31 - 1) // (127 * 128)
_W8A8_CHUNK = 131072  # rows with one scale and more stored values are summed in chunks this long

# AVX-512 VNNI for W8A8 where the host has it and NUMACCEL_NO_VNNI is unset, as for an Int8Weight (set False
# to force the portable kernel)
_USE_VNNI = _int8._USE_VNNI and _config.jit_enabled()


def _groups(w):
    """``(gptr, gs)`` for the kernels: the format's groups, or one group per row."""
    if w.group_size is None:
        return np.arange(w.shape[0] + 1, dtype=np.int64), _NO_GROUPS
    return group_pointer(w.indptr, w.group_size), np.int64(w.group_size)


_groups_of = PerWeight(_groups)


def _w8a8(w):
    """Return ``(gptr, gs, scales, corr)`` for W8A8, or None when a group of the format is too long.

    Groups of at most ``W8A8_MAX_GROUP`` stored values, their scales (float32) and ``128 * sum q`` over
    each group (int32, modulo 2**32 as the VNNI kernel computes).
    """
    counts = np.diff(w.indptr.astype(np.int64))
    longest = int(counts.max()) if counts.size else 0
    if w.group_size is None:
        if longest <= W8A8_MAX_GROUP:
            gptr, gs, scales = np.arange(w.shape[0] + 1, dtype=np.int64), _NO_GROUPS, w.scales
        else:  # one scale per row, the long rows cut into chunks that share it
            gptr = group_pointer(w.indptr, _W8A8_CHUNK)
            gs, scales = np.int64(_W8A8_CHUNK), np.repeat(w.scales, np.diff(gptr))
    elif min(w.group_size, longest) <= W8A8_MAX_GROUP:
        gptr, gs, scales = group_pointer(w.indptr, w.group_size), np.int64(w.group_size), w.scales
    else:
        return None
    sums = np.zeros(int(gptr[-1]), dtype=np.int64)
    csr_int8_cpu._group_code_sums(w.indptr, w.qdata, gptr, gs, sums)
    corr = (128 * sums).astype(np.int32)  # wraps modulo 2**32
    return gptr, gs, scales, corr


_w8a8_of = PerWeight(_w8a8)


def w8a8_groups(w):
    """Return the W8A8 grouping of the CSRInt8Weight ``w``: ``(gptr, gs, scales, corr)``.

    ``ValueError`` when a group of the format is too long for an exact int32 sum.
    """
    g = _w8a8_of(w)
    if g is None:
        raise ValueError(
            f"activation_quant='int8' sums each group in int32, exact for groups of up to {W8A8_MAX_GROUP} "
            f"stored values; this weight has group_size={w.group_size} and rows of up to "
            f"{int(np.diff(w.indptr.astype(np.int64)).max())} stored values; use group_size <= "
            f"{W8A8_MAX_GROUP}, one scale per row (group_size=None: long rows are split automatically) or "
            f"activation_quant=None"
        )
    return g


def _w8a8_linear(w, x: np.ndarray, out: np.ndarray) -> None:
    """W8A8 ``out = x @ w.T``: rows of ``x`` quantized to int8 (per row), int32 sums over each group."""
    B = x.shape[0]
    n, k = w.shape
    gptr, gs, scales, corr = w8a8_groups(w)
    bounds = _bounds(w, B)
    nchunks = 1 if bounds is None else bounds.size - 1
    vnni = _USE_VNNI
    if vnni:
        from .._kernels import csr_int8_vnni_x86 as kv

        width = next((t for t in kv.WIDTHS if t >= B), kv.WIDTHS[-1])
        bp = -(-B // width) * width
        pos = (np.arange(0, bp, width)[:, None] + _slab_positions(width)[None, :]).ravel()
    else:
        bp = width = B
        pos = np.arange(B, dtype=np.int64)
    xt = aligned_empty((bp // width, k, width), np.uint8)  # a line-straddling slab row costs 1.5x at B = 64
    sx = np.empty(B, dtype=np.float64)
    q = (w.indptr, w.indices, w.qdata, scales, gptr, gs)
    with _config.kernel_guard():
        (csr_int8_cpu._quantize_t_u8 if B * k > 65536 else csr_int8_cpu._quantize_t_u8_serial)(x, pos, xt, sx)
        if vnni:
            buf = np.empty((nchunks, _config.CSR_STORE_ROWS, width), dtype=np.float64)
            iacc = np.empty((nchunks, width), dtype=np.int32)
            if bounds is None:
                kv._w8a8_vnni_chunk(*q, corr, 0, n, xt, sx, buf[0], iacc[0], out)
            else:
                kv._w8a8_vnni(*q, corr, bounds, xt, sx, buf, iacc, out)
        else:
            acc = np.empty((nchunks, B), dtype=np.int64)
            tot = np.empty((nchunks, B), dtype=np.float64)
            if bounds is None:
                csr_int8_cpu._w8a8_rows_range(*q, 0, n, xt[0], sx, acc[0], tot[0], out)
            else:
                csr_int8_cpu._w8a8_rows(*q, bounds, xt[0], sx, acc, tot, out)


@functools.cache
def _slab_positions(width: int) -> np.ndarray:
    from .._kernels import csr_int8_vnni_x86

    return frozen(csr_int8_vnni_x86.slab_positions(width))


def _bounds(w, p: int):
    return None if csr.serial(w.nnz, w.shape, p) else csr.chunk_bounds(w)


def _vector(w, b: np.ndarray, out: np.ndarray) -> None:
    gptr, gs = _groups_of(w)
    name = csr.gemv_variant(w.shape, w.nnz, b.dtype, w.qdata.dtype)
    bounds = _bounds(w, 1)
    args = (w.indptr, w.indices, w.qdata, w.scales, gptr, gs)
    if bounds is None:
        if name == "scalar":
            csr_int8_cpu._spmv_q_range(*args, 0, w.shape[0], b, out)
        else:
            csr_int8_cpu._spmv_q_vec_range(*args, 0, w.shape[0], b, csr._GEMV_KERNEL[name], out)
        return
    with _config.kernel_guard():
        if name == "scalar":
            csr_int8_cpu._spmv_q(*args, bounds, b, out)
        else:
            csr_int8_cpu._spmv_q_vec(*args, bounds, b, csr._GEMV_KERNEL[name], out)


def _batched(w, b: np.ndarray, out: np.ndarray, *, transposed: bool) -> None:
    """``W @ b`` for ``b`` (K, P) (``out`` (N, P)) or, ``transposed``, x (P, K) (``out`` (P, N))."""
    p = b.shape[0] if transposed else b.shape[1]
    n, k = w.shape
    gptr, gs = _groups_of(w)
    args = (w.indptr, w.indices, w.qdata, w.scales, gptr, gs)
    bounds = _bounds(w, p)
    nchunks = 1 if bounds is None else bounds.size - 1
    if b.dtype == np.float32 and _config.CSR_USE_TILES:
        widths = [t for t in csr_cpu.TILE_WIDTHS if t <= _config.CSR_TILE_MAX_WIDTH] or [8]
        width = next((t for t in widths if t >= p), widths[-1])
        slabs = csr._slab_array((-(-p // width), k, width))
        group = _config.CSR_STORE_ROWS if transposed and width > 8 else 1
        scratch = np.empty((nchunks, group + 1, width), dtype=np.float32)
        if bounds is None:
            (csr_cpu._pack_rows_tiles_serial if transposed else csr_cpu._pack_cols_tiles_serial)(b, slabs)
            csr_int8_cpu._spmm_q_tiles_chunk(*args, 0, n, slabs, scratch[0], transposed, out)
            return
        with _config.kernel_guard():
            (csr_cpu._pack_rows_tiles if transposed else csr_cpu._pack_cols_tiles)(b, slabs)
            csr_int8_cpu._spmm_q_tiles(*args, bounds, slabs, scratch, transposed, out)
        return
    if transposed:
        b = np.ascontiguousarray(b.T)
    scratch = np.empty((nchunks, 2, p), dtype=out.dtype)
    if bounds is None:
        csr_int8_cpu._spmm_q_rows_range(*args, 0, n, b, scratch[0], transposed, out)
        return
    with _config.kernel_guard():
        csr_int8_cpu._spmm_q_rows(*args, bounds, b, scratch, transposed, out)


def matmul(w, b: np.ndarray, out: np.ndarray) -> None:
    """Compute ``out = w @ b`` for a CSRInt8Weight and C-contiguous ``b`` (K,) or (K, P) of ``out``'s dtype."""
    if b.ndim == 1:
        _vector(w, b, out)
    else:
        _batched(w, b, out, transposed=False)


def linear(w, x: np.ndarray, out: np.ndarray, quant) -> None:
    """Compute ``out = x @ w.T`` for a CSRInt8Weight, validated C-contiguous ``x`` (B, K), ``out`` (B, N)."""
    if quant not in (None, "int8"):
        raise ValueError(f"activation_quant must be None or 'int8' for a CSRInt8Weight, got {quant!r}")
    if quant is not None:
        _w8a8_linear(w, x, out)
    elif x.shape[0] == 1:
        _vector(w, x[0], out[0])
    else:
        _batched(w, x, out, transposed=True)
