"""``quantize``: float weights to the int8 format, per channel or per group, symmetric or asymmetric."""

from __future__ import annotations

import numpy as np

from ._validate import as_weight_matrix
from .formats.csr import CSRWeight
from .formats.csr_int8 import CSRInt8Weight, group_pointer
from .formats.int8 import Int8Weight, _as_group_size, _ngroups, group_length

__all__ = ["quantize"]

# Rows of W quantized per step (bounds the float64 temporaries to a few MiB).
_QUANTIZE_ROWS = 256
_F32_MAX = float(np.finfo(np.float32).max)


def _round_scales(edge: np.ndarray, span: np.ndarray) -> np.ndarray:
    """float32 scales for groups whose largest magnitude is ``edge`` and whose exact step is ``span``.

    Within a step of float32's maximum (only such groups: ``|w| > 0.99 * max``), the code nearest the
    group's edge can dequantize past it, to inf: such a group gets the step that puts the edge exactly
    on a whole code (127 symmetric; asymmetric, the whole steps the edge holds, so the range still fits
    255 steps), rounded down. A subnormal scale keeps only a few significant bits: rounded down, the
    group's range no longer fits the codes and the clipped ones miss the ``scale / 2`` bound by many
    steps, so those are rounded up (which also keeps a span below the smallest subnormal from becoming
    scale 0). Normal scales are off by at most 6e-8 relative, far inside the bound, and stay as rounded.
    """
    span = span.copy()
    big = edge > 0.99 * _F32_MAX
    if big.any():
        span[big] = edge[big] / np.floor(edge[big] / span[big] + 1e-9)
    s32 = span.astype(np.float32)  # finite: |W| <= float32 max
    s32[big] = np.where(s32[big].astype(np.float64) > span[big], np.nextafter(s32[big], np.float32(0)), s32[big])
    low = (s32 < np.finfo(np.float32).tiny) & (s32.astype(np.float64) < span)
    s32[low] = np.nextafter(s32[low], np.float32(np.inf))
    return s32


def quantize(W, *, group_size=None, symmetric: bool = True) -> Int8Weight | CSRInt8Weight:
    """Quantize float weights to int8 codes with per-channel or per-group scales.

    Parameters
    ----------
    W : array_like, shape (N, K), or CSRWeight
        Floating-point weights, finite (converted to float32, the working precision). Rows are output
        channels. A :class:`CSRWeight` (a pruned weight) gives a :class:`CSRInt8Weight`: the same pattern,
        int8 codes and symmetric scales (``symmetric=False`` is refused), ``group_size`` counting a row's
        consecutive stored values.
    group_size : int, optional, keyword-only
        Scale every ``group_size`` consecutive input features of a row separately (the last group of a row
        may be shorter); None for one scale per row.
    symmetric : bool, keyword-only
        True: ``scale = max|w| / 127``, codes in [-127, 127], no zero points. False:
        ``scale = (max - min) / 255`` over the group's range widened to include 0, and an int8 zero point.

    Returns
    -------
    Int8Weight or CSRInt8Weight

    Raises
    ------
    TypeError
        ``W`` not a floating-point array, ``group_size`` not an integer.
    ValueError
        ``W`` not 2-D or holding NaN/inf (the first bad position is named), ``group_size`` below 1.

    See Also
    --------
    Int8Weight : the format, and wrapping codes quantized elsewhere.
    linear : ``x @ W.T`` straight from the codes, weight-only or W8A8 (``activation_quant="int8"``).

    Notes
    -----
    Symmetric: ``q = clip(rint(w / scale), -127, 127)``. Asymmetric: with ``lo = min(min(w), 0)`` and
    ``hi = max(max(w), 0)``, ``scale = (hi - lo) / 255``, ``zero_point = rint(-128 - lo / scale)`` and
    ``q = clip(rint(w / scale) + zero_point, -128, 127)``. Widening the range to include 0 keeps the zero
    point inside int8 (so it is exact) and makes 0 exactly representable. A group whose values are all 0 gets
    scale 0, codes 0 and dequantizes to exact zeros. Scales are rounded to float32 first and the codes
    computed against the rounded scale in float64, so ``|dequantize - W| <= scale / 2`` elementwise, up to
    float rounding. A scale that falls among float32's subnormals (max |w| below about 1e-36) is rounded up
    rather than to nearest, so that the group's range still fits the codes; a nonzero group never gets
    scale 0. At the other end, a group reaching within 1 % of float32's maximum (3.4e38) gets the scale
    that puts its largest magnitude exactly on a code (``max|w| / 127`` symmetric; asymmetric, that
    magnitude over the whole steps it spans), rounded down, so that no code dequantizes past float32's
    range to inf.

    For the range of activations and weights the int8 kernels of :func:`linear` handle exactly, see
    the Notes of :class:`Int8Weight`.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> qw = na.quantize(np.array([[1.0, -0.5, 0.25]], np.float32))
    >>> qw.qweight
    array([[127, -64,  32]], dtype=int8)
    >>> qw = na.quantize(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), group_size=2, symmetric=False)
    >>> qw.zero_points
    array([[-128, -128]], dtype=int8)
    """
    if isinstance(W, CSRWeight):
        return _quantize_csr(W, group_size, symmetric)
    W = as_weight_matrix(W, "W")
    group_size = _as_group_size(group_size)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    n, k = W.shape
    g = _ngroups(k, group_size)
    gs = group_length(k, group_size)
    q = np.empty((n, k), dtype=np.int8)
    scales = np.empty((n, g), dtype=np.float32)
    zps = None if symmetric else np.empty((n, g), dtype=np.int8)
    for r0 in range(0, n, _QUANTIZE_ROWS):
        r1 = min(r0 + _QUANTIZE_ROWS, n)
        # zero padding to whole groups changes neither max|w| nor the 0-including range
        blk = np.zeros((r1 - r0, g * gs), dtype=np.float64)
        blk[:, :k] = W[r0:r1]
        blk = blk.reshape(r1 - r0, g, gs)
        if symmetric:
            edge = np.abs(blk).max(axis=2, initial=0.0)
            span = edge / 127.0
        else:
            lo = blk.min(axis=2, initial=0.0)
            hi = blk.max(axis=2, initial=0.0)
            edge = np.maximum(-lo, hi)
            span = (hi - lo) / 255.0
        s32 = _round_scales(edge, span)
        s = s32.astype(np.float64)[:, :, None]
        nz = s > 0
        safe = np.where(nz, s, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(nz, np.rint(blk / safe), 0.0)
            if symmetric:
                c = np.clip(c, -127, 127)
            else:
                z = np.where(nz, np.clip(np.rint(-128.0 - lo[:, :, None] / safe), -128, 127), 0.0)
                c = np.clip(c + z, -128, 127)
                zps[r0:r1] = z[:, :, 0]
        q[r0:r1] = c.reshape(r1 - r0, g * gs)[:, :k]
        scales[r0:r1] = s32
    if group_size is None:
        scales = scales[:, 0].copy()
        zps = None if zps is None else zps[:, 0].copy()
    return Int8Weight._trusted(q, scales, zps, group_size)


def _quantize_csr(sw: CSRWeight, group_size, symmetric) -> CSRInt8Weight:
    """Quantize a pruned weight: the same pattern, int8 codes, symmetric scales.

    One scale per row, or per group of a row's consecutive stored values.
    """
    group_size = _as_group_size(group_size)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if not symmetric:
        raise ValueError("a pruned weight is quantized symmetrically (scale = max|w| / 127, no zero point), so "
                         "that its zeros stay exact; use symmetric=True")
    n = sw.shape[0]
    indptr = sw.indptr.astype(np.int64)
    nnz = sw.nnz
    gptr = group_pointer(indptr, group_size)
    counts = np.diff(indptr)
    row_of = np.repeat(np.arange(n, dtype=np.int64), counts)
    if group_size is None:
        gid = row_of
    else:
        gid = gptr[row_of] + (np.arange(nnz, dtype=np.int64) - indptr[row_of]) // group_size
    mag = np.abs(sw.data.astype(np.float64))
    edge = np.zeros(int(gptr[-1]), dtype=np.float64)
    if nnz:
        first = np.flatnonzero(np.concatenate(([True], gid[1:] != gid[:-1])))
        edge[gid[first]] = np.maximum.reduceat(mag, first)
    s32 = _round_scales(edge, edge / 127.0)
    s = s32.astype(np.float64)[gid]
    nz = s > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = np.where(nz, np.clip(np.rint(sw.data / np.where(nz, s, 1.0)), -127, 127), 0.0)
    return CSRInt8Weight._trusted(sw.indptr, sw.indices, codes.astype(np.int8), s32, sw.shape, group_size)
