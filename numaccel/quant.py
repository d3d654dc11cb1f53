"""Int8 weights with per-channel or per-group scales: the ``Int8Weight`` format and ``quantize``.

Validates, coerces, allocates and dispatches; the arithmetic lives in ``numaccel._kernels.int8_cpu``.
"""

from __future__ import annotations

import os

import numba
import numpy as np

from . import _amx, _config
from ._kernels import int8_cpu, vnni_x86
from ._validate import as_positive_int, as_weight_matrix, check_finite

__all__ = ["Int8Weight", "quantize"]

# Rows of W quantized per step in ``quantize`` (bounds the float64 temporaries to a few MiB).
_QUANTIZE_ROWS = 256
_F32_MAX = float(np.finfo(np.float32).max)

# W8A8 runs on AVX-512 VNNI (``vpdpbusd``) when the host CPU has it, decided once at import. Setting the
# environment variable NUMACCEL_NO_VNNI=1 before import (or this flag to False) forces the portable path.
_USE_VNNI = vnni_x86.HAVE_VNNI and os.environ.get("NUMACCEL_NO_VNNI", "0") in ("", "0")
# The panel kernels are built from LLVM intrinsics, which cannot run as Python: with NUMBA_DISABLE_JIT=1
# (coverage runs) every call takes the plain kernels instead.
_USE_PANELS = not numba.config.DISABLE_JIT

# Reduction blocks (features) of the panel kernels: the weight block stays in L1, the activations' in L2.
_KC_I8F32 = 256
_KC_VNNI = 512
# Larger batches of activations are copied into blocks of about _KX features (rows _KX apart rather than
# K): many rows K apart fall into the same cache sets and evict each other (measured: 2x at B = 256; no
# difference up to B = 12, where the float32 path skips the copy and its extra thread-team start). The
# W8A8 path always writes its quantized activations in blocks.
_PACK_MIN_B = 8
_KX_F32 = 256
_KX_U8 = 512

# W8A8 sums each group's int8 products exactly in int32: the true sum of ``qx * (q - z)`` over n features
# is at most 127 * 255 * n with zero points (127 * 128 * n without: codes may be -128), which must not
# exceed this. A row whose one group is longer is summed in equal chunks of whole 4-feature steps, each
# converted to float before the next (see ``_w8a8_group_size``).
_W8A8_SUM_MAX = 2**31 - 1


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _as_group_size(group_size):
    """None or a positive integer below 2**62 (a group longer than the row is one group per row)."""
    group_size = as_positive_int(group_size, "group_size", allow_none=True)
    if group_size is not None and group_size >= 2**62:
        raise ValueError(f"group_size must be below 2**62, got {group_size}; use group_size=None for one "
                         f"group per row")
    return group_size


def _ngroups(k: int, group_size) -> int:
    return 1 if group_size is None else -(-k // group_size)


def _w8a8_max_group(has_zp: bool) -> int:
    """Longest group (features) whose W8A8 int32 sum is exact: 66 311 with zero points, 132 104 without."""
    return _W8A8_SUM_MAX // (127 * (255 if has_zp else 128))


def _w8a8_group_size(k: int, gs: int, g: int, has_zp: bool):
    """Group length for the W8A8 kernels' int32 sums: ``gs`` when its sums are exact; for a single group per
    row (``g == 1``) longer than that, the length of ``ceil(k / limit)`` equal chunks rounded up to a multiple
    of 4 (never above the limit: the VNNI layout takes whole 4-feature steps); None when a row holds
    several groups that are too long."""
    limit = _w8a8_max_group(has_zp)
    if min(gs, k) <= limit:
        return gs
    if g > 1:
        return None
    limit4 = limit - limit % 4
    chunks = -(-k // limit4)
    per = -(-k // chunks)
    return per + (-per) % 4


class Int8Weight:
    """An int8 weight ``W ~ (q - zero_point) * scale`` of shape ``(N, K)`` = ``(out_features, in_features)``.

    Parameters
    ----------
    qweight : ndarray of int8, shape (N, K)
        The integer codes.
    scales : ndarray of float, shape (N,) or (N, ceil(K / group_size))
        One non-negative, finite scale per output channel (``group_size=None``) or per group of
        ``group_size`` consecutive input features of a row (the last group of a row may be shorter).
        Stored as float32.
    zero_points : ndarray of int, same shape as ``scales``, optional
        Zero points in [-128, 127] (stored as int8); None for symmetric codes.
    group_size : int, optional, keyword-only
        Group length along the input features; None for per-channel scales.

    Raises
    ------
    TypeError
        ``qweight`` not int8, ``scales`` not floating point, ``zero_points`` not integer, ``group_size`` not
        an integer.
    ValueError
        A shape that does not match, a negative or non-finite scale, a zero point outside [-128, 127], a
        ``group_size`` below 1.

    See Also
    --------
    quantize : make an Int8Weight from float weights.

    Notes
    -----
    Dequantization is ``W[n, k] = (qweight[n, k] - zero_points[n, g]) * scales[n, g]`` with
    ``g = k // group_size`` (``g`` dropped for per-channel scales). The arrays are validated once, copied and
    made read-only, so a kernel call costs O(1) in checks. Codes made elsewhere can be wrapped directly:
    GGML's Q8_0 blocks are ``Int8Weight(q, d, group_size=32)``.

    The kernels read the codes in 64-row panels: the first float32 call makes a private copy of the codes
    in that layout, the first W8A8 call (``linear(..., activations="int8")``) another one with 4 features of
    each row together (for AVX-512 VNNI ``vpdpbusd``); each costs ``N * K`` bytes, is made once and is not
    counted in ``nbytes``. W8A8 uses VNNI when the CPU has it (decided at import); set the environment
    variable ``NUMACCEL_NO_VNNI=1`` before importing numaccel to force the portable kernel. On Intel CPUs
    with AMX (``amx_int8``), W8A8 calls of at least ``numaccel._config.AMX_MIN_BATCH`` rows run on AMX tiles
    instead, for per-channel scales and for groups of a multiple of 64 features (the first such call packs
    a third copy of the codes, in 16 x 64-byte tiles); the process asks Linux for the tile permission on its
    first such call and stays on VNNI, with one warning, if it is refused (see ``numaccel._amx``).

    Numeric range. W8A8 sums each group's integer products exactly in int32, which holds groups of up to
    66 311 features with zero points and 132 104 without; a row with one group (per-channel scales) that
    is longer is summed in equal chunks below that length, any K. Several groups per row longer than the
    limit are refused with ``ValueError``. The integer sums are scaled in float32 (weight scale first,
    activation scale last), so ``max|W| * 127 * L`` must stay below the float32 maximum (3.4e38), ``L``
    being the group length (the chunk length for per-channel scales). The weight-only kernels sum
    ``x * (q - zero_point)`` over a group before scaling, in the activations' dtype: ``sum |x| * 255``
    over a group must stay below that dtype's maximum (float32: ``max|x| * 255 * L < 3.4e38``). Past
    either bound a result can be inf or NaN where ``x @ dequantize().T`` is finite; see
    :func:`numaccel.linear`.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> w = na.Int8Weight(np.array([[1, -2], [127, 0]], np.int8), np.array([0.5, 0.25], np.float32))
    >>> w.dequantize()
    array([[ 0.5 , -1.  ],
           [31.75,  0.  ]], dtype=float32)
    """

    __slots__ = (
        "_q", "_scales", "_zps", "_group_size", "_gs", "_s2", "_z2", "_has_zp", "_pk", "_pk4", "_w8",
        "_device", "__weakref__",
    )

    def __init__(self, qweight, scales, zero_points=None, *, group_size=None):
        if not isinstance(qweight, np.ndarray):
            qweight = np.asarray(qweight)
        if qweight.dtype != np.int8:
            raise TypeError(
                f"qweight must be int8, got {qweight.dtype}; use qweight.astype(np.int8) after checking "
                f"the codes fit in [-128, 127]"
            )
        if qweight.ndim != 2:
            raise ValueError(
                f"qweight must be 2-D (out_features, in_features), got shape {qweight.shape}"
            )
        group_size = _as_group_size(group_size)
        n, k = qweight.shape
        want = (n,) if group_size is None else (n, _ngroups(k, group_size))
        scales = self._check_params(scales, "scales", want, group_size, "f")
        with np.errstate(over="ignore"):
            scales32 = scales.astype(np.float32)  # always a copy
        if scales32.size:
            check_finite(scales32, "scales")
            if scales32.min() < 0:
                bad = tuple(int(i) for i in np.argwhere(scales32 < 0)[0])
                where = ", ".join(map(str, bad))
                raise ValueError(f"scales must be non-negative, got {scales32[bad]} at scales[{where}]")
        zps8 = None
        if zero_points is not None:
            zero_points = self._check_params(zero_points, "zero_points", want, group_size, "iu")
            if zero_points.size and (zero_points.min() < -128 or zero_points.max() > 127):
                bad = tuple(int(i) for i in np.argwhere((zero_points < -128) | (zero_points > 127))[0])
                raise ValueError(f"zero_points must be in [-128, 127], got {zero_points[bad]} at "
                                 f"zero_points[{', '.join(map(str, bad))}]")
            zps8 = zero_points.astype(np.int8)
        self._init(np.array(qweight, dtype=np.int8, order="C"), scales32, zps8, group_size)

    @staticmethod
    def _check_params(a, name, want, group_size, kinds):
        if not isinstance(a, np.ndarray):
            a = np.asarray(a)
        if a.dtype.kind not in kinds or a.dtype == np.bool_:
            what, fix = ("floating-point", "float32") if kinds == "f" else ("integer", "int8")
            raise TypeError(f"{name} must be a {what} array, got {a.dtype}; use {name}.astype(np.{fix})")
        if a.shape != want:
            rule = "(N,) for group_size=None" if group_size is None else f"(N, ceil(K / {group_size}))"
            raise ValueError(f"{name} must have shape {want} ({rule}), got {a.shape}")
        return a

    def _init(self, q, scales, zps, group_size):
        """Take ownership of validated arrays (no copies) and build the kernels' views."""
        n, k = q.shape
        self._q = _frozen(q)
        self._scales = _frozen(scales)
        self._zps = None if zps is None else _frozen(zps)
        self._group_size = group_size
        self._gs = max(k, 1) if group_size is None else min(group_size, max(k, 1))  # a longer group is the row
        g = _ngroups(k, group_size)
        self._s2 = _frozen(np.ascontiguousarray(scales.reshape(n, g)))
        z2 = np.zeros((n, g), dtype=np.int32) if zps is None else zps.reshape(n, g).astype(np.int32)
        self._z2 = _frozen(z2)
        self._has_zp = bool(zps is not None and zps.any())
        self._pk = None
        self._pk4 = None
        self._w8 = None
        self._device = None

    def __reduce__(self):
        # Pickled (by Dask, multiprocessing) as its public arrays only: the kernels' packed copies and any
        # device copy are rebuilt where the weight is used, so a used weight travels at its own size.
        return (type(self)._trusted, (self._q, self._scales, self._zps, self._group_size))

    @classmethod
    def _trusted(cls, q, scales, zps, group_size) -> Int8Weight:
        self = cls.__new__(cls)
        self._init(q, scales, zps, group_size)
        return self

    # ----------------------------------------------------------------------------------------------
    # attributes and conversions
    @property
    def qweight(self) -> np.ndarray:
        return self._q

    @property
    def scales(self) -> np.ndarray:
        return self._scales

    @property
    def zero_points(self):
        return self._zps

    @property
    def group_size(self):
        return self._group_size

    @property
    def shape(self) -> tuple[int, int]:
        return self._q.shape

    @property
    def nbytes(self) -> int:
        """Bytes of the format's arrays: codes + scales (+ zero points)."""
        return int(self._q.nbytes + self._scales.nbytes + (0 if self._zps is None else self._zps.nbytes))

    def dequantize(self) -> np.ndarray:
        """Return the float32 ``(N, K)`` weight ``(qweight - zero_point) * scale``.

        Examples
        --------
        >>> import numpy as np, numaccel as na
        >>> na.quantize(np.array([[0.5, -1.0]], np.float32)).dequantize()
        array([[ 0.503937, -1.      ]], dtype=float32)
        """
        n, k = self._q.shape
        q = self._q.astype(np.float32)
        if self._has_zp:
            q -= np.repeat(self._z2, self._gs, axis=1)[:, :k]
        q *= np.repeat(self._s2, self._gs, axis=1)[:, :k]
        return q

    def to_device(self):
        """Return a copy of this weight resident on the GPU (see ``numaccel.linear(..., device="cuda")``)."""
        from . import _cuda

        return _cuda.to_device(self)

    def __repr__(self) -> str:
        n, k = self.shape
        kind = "asymmetric" if self._zps is not None else "symmetric"
        return f"Int8Weight(shape=({n}, {k}), group_size={self._group_size}, {kind})"

    # ----------------------------------------------------------------------------------------------
    # kernels
    def _panels(self):
        """Weight-only layout, made once on first use: the codes as (P, K, 64) panels of 64 transposed rows
        (zero rows past N), scales and zero points transposed to (G, 64P) float32."""
        pk = self._pk
        if pk is None:
            n, k = self._q.shape
            npad = -(-n // vnni_x86.PANEL) * vnni_x86.PANEL
            qp = np.zeros((npad, k), dtype=np.int8)
            qp[:n] = self._q
            panels = np.ascontiguousarray(qp.reshape(-1, vnni_x86.PANEL, k).transpose(0, 2, 1))
            zT = self._transposed(self._z2, np.float32)
            pk = self._pk = (_frozen(panels), self._transposed(self._s2), zT)
        return pk

    def _transposed(self, a: np.ndarray, dtype=None) -> np.ndarray:
        """Per-group parameters (N, G) as (G, 64P), zero past N: one row of a panel's 64 values per group."""
        n, g = a.shape
        npad = -(-n // vnni_x86.PANEL) * vnni_x86.PANEL
        t = np.zeros((g, npad), dtype=dtype or a.dtype)
        t[:, :n] = a.T
        return _frozen(t)

    def _w8a8_groups(self):
        """W8A8 grouping, made once: ``(gs, scales (N, G), zero points (N, G))`` with every group short
        enough for an exact int32 sum (``_w8a8_group_size``): the format's own when it is, else the row
        split into equal chunks, each with the row's scale and zero point; None when the format has several
        groups per row that are too long."""
        w8 = self._w8
        if w8 is None:
            n, k = self._q.shape
            g = self._s2.shape[1]
            gs = _w8a8_group_size(k, self._gs, g, self._has_zp)
            if gs is None:
                return None
            if gs == self._gs:
                w8 = (gs, self._s2, self._z2)
            else:
                g8 = -(-k // gs)
                w8 = (gs, _frozen(np.repeat(self._s2, g8, axis=1)), _frozen(np.repeat(self._z2, g8, axis=1)))
            self._w8 = w8
        return w8

    def _w8a8_checked(self):
        """``_w8a8_groups()``, or ``ValueError`` saying why W8A8 cannot sum this weight's groups exactly."""
        w8 = self._w8a8_groups()
        if w8 is None:
            limit = _w8a8_max_group(self._has_zp)
            kind = "with zero points" if self._has_zp else "without zero points"
            raise ValueError(
                f"activations='int8' sums each group in int32, exact for groups of up to {limit} features "
                f"{kind}; this weight has group_size={self._group_size} with {self._s2.shape[1]} groups per "
                f"row; use group_size <= {limit}, per-channel scales (group_size=None, long rows are split "
                f"automatically) or activations=None"
            )
        return w8

    def _panels4(self):
        """VNNI layout, made once on first use: (P, ceil(K/4), 256) panels holding, for each step of 4
        features, the 4 codes of each of 64 rows together; ``128 * group sums of q`` (int32, modulo 2**32),
        scales (float32) and zero points (int32) as (G, 64P), for the W8A8 grouping (``_w8a8_groups``)."""
        pk = self._pk4
        if pk is None:
            gs8, s8, z8 = self._w8a8_checked()
            n, k = self._q.shape
            npad = -(-n // vnni_x86.PANEL) * vnni_x86.PANEL
            k4 = -(-k // 4)
            qp = np.zeros((npad, 4 * k4), dtype=np.int8)
            qp[:n, :k] = self._q
            panels = np.ascontiguousarray(
                qp.reshape(-1, vnni_x86.PANEL, k4, 4).transpose(0, 2, 1, 3)
            ).reshape(-1, k4, 4 * vnni_x86.PANEL)
            # 128 * sum can pass 2**31 (-128 * 128 * 132 104): kept modulo 2**32, as the kernel's int32
            # arithmetic is, whose corrected group sum is exact.
            sums = _group_sums(self._q.astype(np.int32), gs8, s8.shape[1]).astype(np.int64)
            corr = (128 * sums).astype(np.int32)
            pk = self._pk4 = (_frozen(panels), self._transposed(corr), self._transposed(s8),
                              self._transposed(z8))
        return pk

    def _linear(self, x: np.ndarray, out: np.ndarray, *, activations=None) -> None:
        """``out = x @ self.dequantize().T`` for validated ``x`` (B, K) and C-contiguous ``out`` (B, N)."""
        if activations not in (None, "int8"):
            raise ValueError(f"activations must be None or 'int8' for an Int8Weight, got {activations!r}")
        B, k = x.shape
        if k == 0:
            out[...] = 0
            return
        if activations is not None:
            # the W8A8 grouping: the format's, or a long single group per row split into chunks whose
            # int32 sums are exact
            gs8, s8, z8 = self._w8a8_checked()
            if _amx.eligible(self, B):
                _amx.linear_w8a8(self, x, out)
                return
        x = np.ascontiguousarray(x)
        g = self._s2.shape[1]
        with _config.kernel_guard():
            if activations is None and x.dtype == np.float32 and _USE_PANELS:
                panels, sT, zT = self._panels()
                if B > _PACK_MIN_B:
                    kx = _block(k, self._gs, g, _KX_F32)
                    xp = np.empty((-(-k // kx), B, kx), dtype=np.float32)
                    int8_cpu._pack_blocks(x, xp)
                else:
                    xp = x.reshape(1, B, k)
                xsum = _group_sums(x, self._gs, g) if self._has_zp else np.zeros((B, g), dtype=np.float32)
                int8_cpu._qmm_int8_panels(panels, sT, zT, self._gs, xp, xsum, _KC_I8F32, out)
            elif activations is None:
                if self._has_zp:
                    xsum = _group_sums(x, self._gs, g)
                else:
                    xsum = np.zeros((B, g), dtype=x.dtype)
                int8_cpu._qmm_int8_simple(self._q, self._s2, self._z2, self._gs, x, xsum, out)
            else:
                g8 = s8.shape[1]
                vnni = _USE_VNNI and _USE_PANELS and (g8 == 1 or gs8 % 4 == 0)
                kp = -(-k // 4) * 4 if vnni else k  # vpdpbusd takes 4 features at a time
                kx = _block(kp, gs8, g8, _KX_U8) if vnni and B > 1 else kp
                xu = np.empty((-(-kp // kx), B, kx), dtype=np.uint8)
                sx = np.empty(B, dtype=np.float64)
                qxsum = np.empty((B, g8), dtype=np.int32)
                quantize_rows = int8_cpu._quantize_rows_u8 if B > 2 else int8_cpu._quantize_rows_u8_serial
                quantize_rows(x, gs8, xu, sx, qxsum)
                if vnni:
                    panels4, corrT, sT, zT = self._panels4()
                    gs4 = panels4.shape[1] if g8 == 1 else gs8 // 4
                    int8_cpu._w8a8_vnni_panels(panels4, corrT, sT, zT, gs4, xu, sx, qxsum, _KC_VNNI // 4, out)
                else:
                    int8_cpu._w8a8_simple(self._q, s8, z8, gs8, xu, sx, qxsum, out)


def _block(k: int, gs: int, g: int, target: int) -> int:
    """Length of the activation blocks: about ``target`` features, whole groups when there are several,
    never more than ``k``."""
    kx = target if g == 1 else gs * max(1, target // gs)
    return min(kx, k)


def _group_sums(x: np.ndarray, gs: int, g: int) -> np.ndarray:
    """Sums of ``x`` (B, K) over each group of ``gs`` features, shape (B, g), in x's dtype."""
    B, k = x.shape
    pad = g * gs - k
    xp = np.pad(x, ((0, 0), (0, pad))) if pad else x
    return xp.reshape(B, g, gs).sum(axis=2)


def quantize(W, *, group_size=None, symmetric: bool = True) -> Int8Weight:
    """Quantize float weights to int8 codes with per-channel or per-group scales.

    Parameters
    ----------
    W : array_like, shape (N, K)
        Floating-point weights, finite (converted to float32, the working precision). Rows are output
        channels.
    group_size : int, optional, keyword-only
        Scale every ``group_size`` consecutive input features of a row separately (the last group of a row
        may be shorter); None for one scale per row.
    symmetric : bool, keyword-only
        True: ``scale = max|w| / 127``, codes in [-127, 127], no zero points. False:
        ``scale = (max - min) / 255`` over the group's range widened to include 0, and an int8 zero point.

    Returns
    -------
    Int8Weight

    Raises
    ------
    TypeError
        ``W`` not a floating-point array, ``group_size`` not an integer.
    ValueError
        ``W`` not 2-D or holding NaN/inf (the first bad position is named), ``group_size`` below 1.

    See Also
    --------
    Int8Weight : the format, and wrapping codes quantized elsewhere.
    linear : ``x @ W.T`` straight from the codes, weight-only or W8A8 (``activations="int8"``).

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
    W = as_weight_matrix(W, "W")
    group_size = _as_group_size(group_size)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    n, k = W.shape
    g = _ngroups(k, group_size)
    gs = max(k, 1) if group_size is None else min(group_size, max(k, 1))
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
        # Within a step of float32's maximum (only such groups: |w| > 0.99 * max), the code nearest the
        # group's edge can dequantize past it, to inf. Choose the step that puts the edge exactly on the
        # n-th code (n = 127 symmetric; asymmetric the whole steps the edge holds, so the range still
        # fits 255 steps), to be rounded down below.
        big = edge > 0.99 * _F32_MAX
        if big.any():
            span[big] = edge[big] / np.floor(edge[big] / span[big] + 1e-9)
        s32 = span.astype(np.float32)  # finite: |W| <= float32 max
        s32[big] = np.where(s32[big].astype(np.float64) > span[big],
                            np.nextafter(s32[big], np.float32(0)), s32[big])
        # A subnormal scale keeps only a few significant bits: rounded down, the group's range no longer
        # fits the codes and the clipped ones miss the scale / 2 bound by many steps. Round those up
        # (which also keeps a span below the smallest subnormal from becoming scale 0). Normal scales
        # are off by at most 6e-8 relative, far inside the bound, and stay as rounded.
        low = (s32 < np.finfo(np.float32).tiny) & (s32.astype(np.float64) < span)
        s32[low] = np.nextafter(s32[low], np.float32(np.inf))
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
