"""How an int8 product runs on this host: the kernels, the activation blocking and the packed copies.

Weight-only products run on panels or the portable loop, W8A8 on AMX, AVX-512 VNNI or the portable
loop; activations are blocked, and each path reads its own packed copy of the codes. Large weight-only
batches may instead run as float32 GEMMs in NumPy's OpenBLAS on blocks of the weight dequantized on
numaccel's threads (``"blas"``, see :func:`panels_default`): ``x @ w.dequantize().T``, the activations never
quantized.

The packed copies are made on first use and kept in caches keyed by the weight (made once, freed with it;
not counted in the weight's ``nbytes``): 64-row panels for weight-only float32, 4-feature VNNI panels for
W8A8, AMX tiles (:mod:`numaccel.plan.amx`).

The weight-only kernels read the codes in 64-row panels: the first float32 call makes a private copy of
the codes in that layout, the first W8A8 call another one with 4 features of each row together (for
AVX-512 VNNI ``vpdpbusd``); each costs ``N * K`` bytes. W8A8 uses VNNI when the CPU Numba compiles for has
it (decided at import); the environment variable ``NUMACCEL_NO_VNNI=1`` set before importing numaccel
forces the portable kernel. On Intel CPUs with AMX (``amx_int8``), W8A8 calls of at least
``numaccel._config.AMX_MIN_BATCH`` rows run on AMX tiles instead, for per-channel scales and for groups of
a multiple of 64 features (the first such call packs a third copy of the codes, in 16 x 64-byte tiles);
the process asks Linux for the tile permission on its first such call and stays on VNNI, with one
warning, if it is refused (see :mod:`numaccel.plan.amx`).
"""

from __future__ import annotations

import os

import numpy as np

from .. import _config
from .._kernels import int8_cpu, int8_tiles_x86
from .._validate import frozen
from ..formats.int8 import _ngroups, group_length
from . import amx, wisdom
from ._cache import PerWeight

__all__ = ["linear", "w8a8_groups", "w8a8_max_group", "panels_default"]

# W8A8 runs on AVX-512 VNNI (``vpdpbusd``) when Numba compiles for a CPU that has it, decided once at
# import. Setting the environment variable NUMACCEL_NO_VNNI=1 before import (or this flag to False) forces
# the portable path.
_USE_VNNI = int8_tiles_x86.HAVE_VNNI and os.environ.get("NUMACCEL_NO_VNNI", "0") in ("", "0")
# The panel kernels are built from LLVM intrinsics, which cannot run as Python: with NUMBA_DISABLE_JIT=1
# (coverage runs) every call takes the plain kernels instead.
_USE_PANELS = _config.jit_enabled()

# W8A8 sums each group's int8 products exactly in int32: the true sum of ``qx * (q - z)`` over n features
# is at most 127 * 255 * n with zero points (127 * 128 * n without: codes may be -128), which must not
# exceed this. A row whose one group is longer is summed in equal chunks of whole 4-feature steps, each
# converted to float before the next (see ``_w8a8_group_size``).
_W8A8_SUM_MAX = 2**31 - 1

class _Views:
    """What the int8 paths derive from one weight, each part made on first use."""

    __slots__ = ("gs", "s2", "z2", "has_zp", "panels", "panels4", "w8")

    def __init__(self, w):
        n, k = w.shape
        g = _ngroups(k, w.group_size)
        self.gs = group_length(k, w.group_size)
        self.s2 = frozen(np.ascontiguousarray(w.scales.reshape(n, g)))
        zps = w.zero_points
        z2 = np.zeros((n, g), dtype=np.int32) if zps is None else zps.reshape(n, g).astype(np.int32)
        self.z2 = frozen(z2)
        self.has_zp = bool(zps is not None and zps.any())
        self.panels = None
        self.panels4 = None
        self.w8 = None


_views_of = PerWeight(_Views)


def w8a8_max_group(has_zp: bool) -> int:
    """Longest group (features) whose W8A8 int32 sum is exact: 66 311 with zero points, 132 104 without."""
    return _W8A8_SUM_MAX // (127 * (255 if has_zp else 128))


def _w8a8_group_size(k: int, gs: int, g: int, has_zp: bool):
    """Group length for the W8A8 kernels' int32 sums.

    That is ``gs`` when its sums are exact; for a single group per row (``g == 1``) longer than that, the
    length of ``ceil(k / limit)`` equal chunks rounded up to a multiple of 4 (never above the limit: the
    VNNI layout takes whole 4-feature steps); None when a row holds several groups that are too long.
    """
    limit = w8a8_max_group(has_zp)
    if min(gs, k) <= limit:
        return gs
    if g > 1:
        return None
    limit4 = limit - limit % 4
    chunks = -(-k // limit4)
    per = -(-k // chunks)
    return per + (-per) % 4


def _transposed(a: np.ndarray, dtype=None) -> np.ndarray:
    """Per-group parameters (N, G) as (G, 64P), zero past N: one row of a panel's 64 values per group."""
    n, g = a.shape
    npad = -(-n // int8_tiles_x86.PANEL) * int8_tiles_x86.PANEL
    t = np.zeros((g, npad), dtype=dtype or a.dtype)
    t[:, :n] = a.T
    return frozen(t)


def _panels(w, v: _Views):
    """Weight-only layout, made once on first use.

    The codes as (P, K, 64) panels of 64 transposed rows (zero rows past N), scales and zero points
    transposed to (G, 64P) float32.
    """
    pk = v.panels
    if pk is None:
        n, k = w.shape
        panel = int8_tiles_x86.PANEL
        npad = -(-n // panel) * panel
        qp = np.zeros((npad, k), dtype=np.int8)
        qp[:n] = w.qweight
        panels = np.ascontiguousarray(qp.reshape(-1, panel, k).transpose(0, 2, 1))
        pk = v.panels = (frozen(panels), _transposed(v.s2), _transposed(v.z2, np.float32))
    return pk


def _w8a8_grouping(w, v: _Views):
    """W8A8 grouping, made once: ``(gs, scales (N, G), zero points (N, G))``.

    Every group is short enough for an exact int32 sum: the format's own when it is, else the row split
    into equal chunks, each with the row's scale and zero point; None when the format has several groups
    per row that are too long.
    """
    w8 = v.w8
    if w8 is None:
        n, k = w.shape
        g = v.s2.shape[1]
        gs = _w8a8_group_size(k, v.gs, g, v.has_zp)
        if gs is None:
            return None
        if gs == v.gs:
            w8 = (gs, v.s2, v.z2)
        else:
            g8 = -(-k // gs)
            w8 = (gs, frozen(np.repeat(v.s2, g8, axis=1)), frozen(np.repeat(v.z2, g8, axis=1)))
        v.w8 = w8
    return w8


def w8a8_groups(w):
    """Return the W8A8 grouping of the Int8Weight ``w``: ``(gs, scales (N, G), zero points (N, G) int32)``.

    Every group's int32 sum is exact; ``ValueError`` saying why when W8A8 cannot sum this weight's groups
    exactly.
    """
    v = _views_of(w)
    w8 = _w8a8_grouping(w, v)
    if w8 is None:
        limit = w8a8_max_group(v.has_zp)
        kind = "with zero points" if v.has_zp else "without zero points"
        raise ValueError(
            f"activation_quant='int8' sums each group in int32, exact for groups of up to {limit} features "
            f"{kind}; this weight has group_size={w.group_size} with {v.s2.shape[1]} groups per row; use "
            f"group_size <= {limit}, per-channel scales (group_size=None, long rows are split "
            f"automatically) or activation_quant=None"
        )
    return w8


def _panels4(w, v: _Views):
    """VNNI layout, made once on first use.

    (P, ceil(K/4), 256) panels holding, for each step of 4 features, the 4 codes of each of 64 rows
    together; ``128 * group sums of q`` (int32, modulo 2**32), scales (float32) and zero points (int32)
    as (G, 64P), for the W8A8 grouping.
    """
    pk = v.panels4
    if pk is None:
        gs8, s8, z8 = w8a8_groups(w)
        n, k = w.shape
        panel = int8_tiles_x86.PANEL
        npad = -(-n // panel) * panel
        k4 = -(-k // 4)
        qp = np.zeros((npad, 4 * k4), dtype=np.int8)
        qp[:n, :k] = w.qweight
        panels = frozen(np.ascontiguousarray(qp.reshape(-1, panel, k4, 4).transpose(0, 2, 1, 3)))
        panels = panels.reshape(-1, k4, 4 * panel)  # a view of the frozen array: frozen as well, no copy
        # 128 * sum can pass 2**31 (-128 * 128 * 132 104): kept modulo 2**32, as the kernel's int32
        # arithmetic is, whose corrected group sum is exact.
        sums = _group_sums(w.qweight.astype(np.int32), gs8, s8.shape[1]).astype(np.int64)
        corr = (128 * sums).astype(np.int32)
        pk = v.panels4 = (frozen(panels), _transposed(corr), _transposed(s8), _transposed(z8))
    return pk


def _block(k: int, gs: int, g: int, target: int) -> int:
    """Length of the activation blocks.

    About ``target`` features, whole groups when there are several, never more than ``k``.
    """
    kx = target if g == 1 else gs * max(1, target // gs)
    return min(kx, k)


def _group_sums(x: np.ndarray, gs: int, g: int) -> np.ndarray:
    """Return the sums of ``x`` (B, K) over each group of ``gs`` features, shape (B, g), in x's dtype."""
    B, k = x.shape
    pad = g * gs - k
    xp = np.pad(x, ((0, 0), (0, pad))) if pad else x
    return xp.reshape(B, g, gs).sum(axis=2)


def panels_default(batch: int, n: int | None = None) -> str:
    """Return the host default of choice ``int8-panels`` for ``batch`` rows and ``n`` output features.

    ``"blas"`` (blocks dequantized to float32, multiplied in OpenBLAS) from ``_config.INT8_BLAS_MIN_B`` rows
    on Intel CPUs where :func:`blas_possible`, for weights of at least 16 output features per thread (the
    blocks are whole multiples of 16 features, so fewer would leave threads idle). Else ``"convert"`` (each
    block of codes converted once) from ``_config.INT8_CONVERT_MIN_B`` rows, ``"tiles"`` below. Measured in
    docs/performance.md, "int8 at large batches through BLAS"; the AMD hosts measured keep ``"convert"``,
    which ran at dense fp32's speed there.
    """
    wide = n is None or n >= 16 * _config.num_threads()
    if batch >= _config.INT8_BLAS_MIN_B and wide and _config.cpu_vendor() == "GenuineIntel" and blas_possible():
        return "blas"
    return "convert" if batch >= _config.INT8_CONVERT_MIN_B else "tiles"


def blas_possible() -> bool:
    """Return whether variant ``"blas"`` of ``int8-panels`` can run.

    That needs NumPy's OpenBLAS callable from Numba's threads (:mod:`numaccel._kernels.dense_blas`, with
    ``_config.DENSE_SPLIT_BLAS``) and a compiling JIT.
    """
    if not (_config.DENSE_SPLIT_BLAS and _USE_PANELS):
        return False
    from .._kernels import dense_blas

    return dense_blas.available()


def _can_run(variant: str) -> bool:
    return variant != "blas" or blas_possible()


def gemv_default() -> str:
    """Return the host default of choice ``int8-gemv`` (weight-only float32, one activation row).

    ``"streams"`` (four panels side by side on each thread) on Intel CPUs, where a core reaches more memory
    bandwidth with four streams in flight than with one; ``"panels"`` elsewhere (measured on AMD Zen 4 and
    Zen 5 before the streams existed). See docs/performance.md, "int8 weight-only at batch 1".
    """
    return "streams" if _config.cpu_vendor() == "GenuineIntel" else "panels"


def _streams(npanels: int) -> int:
    """Return the panels side by side per thread at batch 1.

    Up to ``MAX_STREAMS``, but never so many that a thread is left without a group of panels (256 rows on
    two threads run as two groups of two, not one of four).
    """
    return max(1, min(int8_tiles_x86.MAX_STREAMS, npanels // max(1, _config.num_threads())))


def _gemv_variant(w) -> str:
    """Return the batch-1 weight-only variant: the default unless the wisdom measured otherwise."""
    return wisdom.choose("int8-gemv", lambda: wisdom.case_key("int8", w.shape, 1), gemv_default())


def _w8a8_gemv_variant(w) -> str:
    """Return the batch-1 W8A8 VNNI variant: the default unless the wisdom measured otherwise."""
    return wisdom.choose("w8a8-gemv", lambda: wisdom.case_key("int8", w.shape, 1), gemv_default())


def _panels_variant(w, batch: int) -> str:
    """Return the weight-only float32 panel variant: the default unless the wisdom measured otherwise."""
    return wisdom.choose("int8-panels", lambda: wisdom.case_key("int8", w.shape, batch),
                         panels_default(batch, w.shape[0]), _can_run)


def linear(w, x: np.ndarray, out: np.ndarray, quant) -> None:
    """Compute ``out = x @ w.dequantize().T`` (``quant`` None) or its W8A8 form (``quant == "int8"``).

    For an Int8Weight ``w``, validated C-contiguous ``x`` (B, K) and ``out`` (B, N) of x's dtype.
    """
    if quant not in (None, "int8"):
        raise ValueError(f"activation_quant must be None or 'int8' for an Int8Weight, got {quant!r}")
    B, k = x.shape
    if k == 0:
        out[...] = 0
        return
    v = _views_of(w)
    if quant is not None:
        gs8, s8, z8 = w8a8_groups(w)  # ValueError for groups too long for exact int32 sums
        if amx.eligible(w, B):
            amx.linear_w8a8(w, x, out)
            return
    g = v.s2.shape[1]
    with _config.kernel_guard():
        if quant is None and x.dtype == np.float32 and _USE_PANELS:
            variant = _panels_variant(w, B)
            if variant == "blas" and B > 0 and w.shape[0] > 0 and out.dtype == np.float32 and out.flags.c_contiguous:
                from .._kernels import dense_blas

                dense_blas.int8_gemm(w.qweight, v.s2, v.z2, v.gs, x, out, _config.num_threads(),
                                     _config.INT8_BLAS_SCRATCH_BYTES)
                return
            panels, sT, zT = _panels(w, v)
            convert = variant == "convert"
            kc = _config.INT8_KC_CONVERT if convert else _config.INT8_KC_F32
            kx = _block(k, v.gs, g, _config.INT8_KX_F32)
            for r0, r1 in _row_passes(B, _config.INT8_ROWS_PER_PASS):
                xr, nb = x[r0:r1], r1 - r0
                if nb > _config.INT8_PACK_MIN_B:
                    xp = np.empty((-(-k // kx), nb, kx), dtype=np.float32)
                    int8_cpu._pack_blocks(xr, xp)
                else:
                    xp = xr.reshape(1, nb, k)
                xsum = _group_sums(xr, v.gs, g) if v.has_zp else np.zeros((nb, g), dtype=np.float32)
                if nb == 1 and _gemv_variant(w) == "streams":
                    int8_cpu._qmm_int8_panels_streams(panels, sT, zT, v.gs, xp, xsum, kc,
                                                      _streams(panels.shape[0]), out[r0:r1])
                else:
                    int8_cpu._qmm_int8_panels(panels, sT, zT, v.gs, xp, xsum, kc, convert, out[r0:r1])
        elif quant is None:
            xsum = _group_sums(x, v.gs, g) if v.has_zp else np.zeros((B, g), dtype=x.dtype)
            int8_cpu._qmm_int8_simple(w.qweight, v.s2, v.z2, v.gs, x, xsum, out)
        else:
            g8 = s8.shape[1]
            vnni = _USE_VNNI and _USE_PANELS and (g8 == 1 or gs8 % 4 == 0)
            kp = -(-k // 4) * 4 if vnni else k  # vpdpbusd takes 4 features at a time
            kx = _block(kp, gs8, g8, _config.INT8_KX_U8) if vnni and B > 1 else kp
            if vnni:
                panels4, corrT, sT, zT = _panels4(w, v)
                gs4 = panels4.shape[1] if g8 == 1 else gs8 // 4
            for r0, r1 in _row_passes(B, _config.INT8_ROWS_PER_PASS_U8 if vnni else B):  # portable: one pass
                nb = r1 - r0
                xu = np.empty((-(-kp // kx), nb, kx), dtype=np.uint8)
                sx = np.empty(nb, dtype=np.float64)
                qxsum = np.empty((nb, g8), dtype=np.int32)
                quantize_rows = int8_cpu._quantize_rows_u8 if nb > 2 else int8_cpu._quantize_rows_u8_serial
                quantize_rows(x[r0:r1], gs8, xu, sx, qxsum)
                if vnni and nb == 1 and _w8a8_gemv_variant(w) == "streams":
                    int8_cpu._w8a8_vnni_panels_streams(panels4, corrT, sT, zT, gs4, xu, sx, qxsum,
                                                       _config.INT8_KC_VNNI // 4, _streams(panels4.shape[0]),
                                                       out[r0:r1])
                elif vnni:
                    int8_cpu._w8a8_vnni_panels(panels4, corrT, sT, zT, gs4, xu, sx, qxsum,
                                               _config.INT8_KC_VNNI // 4, out[r0:r1])
                else:
                    int8_cpu._w8a8_simple(w.qweight, s8, z8, gs8, xu, sx, qxsum, out[r0:r1])


def _row_passes(b: int, rows: int) -> list:
    """Return ``[(r0, r1), ...]``: ``b`` rows in balanced passes of at most ``rows`` rows.

    300 rows at most 256 at a time run as 150 + 150, not 256 + 44.

    Every panel kernel reads all the activation rows it is given once per panel; passes that fit in the
    last-level cache, each re-reading the (compressed) weight, cost less than one pass over a batch that
    does not (docs/performance.md, "Batches in passes").
    """
    passes = max(1, -(-b // max(1, rows)))
    step = max(1, -(-b // passes))
    return [(r0, min(r0 + step, b)) for r0 in range(0, b, step)]
