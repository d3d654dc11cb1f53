"""The int8 weight format: integer codes with per-channel or per-group scales (data and validation only).

How it is executed lives in :mod:`numaccel.plan.int8`; :func:`numaccel.quantize` makes one from floats.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_positive_int, check_finite, check_row_range, frozen, plain_array
from ._registry import WeightFormat, spec_for

__all__ = ["Int8Weight"]


def _as_group_size(group_size):
    """None or a positive integer below 2**62 (a group longer than the row is one group per row)."""
    group_size = as_positive_int(group_size, "group_size", allow_none=True)
    if group_size is not None and group_size >= 2**62:
        raise ValueError(f"group_size must be below 2**62, got {group_size}; use group_size=None for one "
                         f"group per row")
    return group_size


def _ngroups(k: int, group_size) -> int:
    return 1 if group_size is None else -(-k // group_size)


def group_length(k: int, group_size) -> int:
    """Return the number of features per group as the kernels see it.

    That is ``group_size``, or the whole row (at least 1) for per-channel scales and for a group longer
    than the row.
    """
    return max(k, 1) if group_size is None else min(group_size, max(k, 1))


class Int8Weight(WeightFormat):
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

    ``linear`` computes straight from the codes (weight-only, or W8A8 with ``activation_quant="int8"``);
    which kernel runs, and the packed copies of the codes it keeps beside the weight (not counted in
    ``nbytes``), is decided by :mod:`numaccel.plan.int8`.

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

    __slots__ = ("_q", "_scales", "_zps", "_group_size", "__weakref__")

    untrainable_hint = ("train or fine-tune the dense or CSR model first, then quantize it "
                        "(numaccel.compress(model, int8=True))")

    def __init__(self, qweight, scales, zero_points=None, *, group_size=None):
        qweight = plain_array(qweight, "qweight")
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
        a = plain_array(a, name)
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
        """Take ownership of validated arrays (no copies)."""
        self._q = frozen(q)
        self._scales = frozen(scales)
        self._zps = None if zps is None else frozen(zps)
        self._group_size = group_size

    def __reduce__(self):
        """Pickle as the format's arrays only (codes, scales, zero points and group size).

        Used by Dask and multiprocessing: packed copies a planner keeps and any device copy are rebuilt
        where the weight is used, so a used weight travels at its own size.
        """
        return (type(self)._trusted, (self._q, self._scales, self._zps, self._group_size))

    @classmethod
    def _trusted(cls, q, scales, zps, group_size) -> Int8Weight:
        """Wrap arrays numaccel built itself, already valid, without checks.

        The arrays (C-contiguous int8 codes, float32 scales, int8 zero points or None) are taken over
        (made read-only).
        """
        self = cls.__new__(cls)
        self._init(q, scales, zps, group_size)
        return self

    # ----------------------------------------------------------------------------------------------
    # attributes and conversions
    @property
    def qweight(self) -> np.ndarray:
        """Integer codes as stored (read-only, no copy): C-contiguous int8, shape ``(N, K)``."""
        return self._q

    @property
    def scales(self) -> np.ndarray:
        """Scales as stored (read-only, no copy): float32, shape ``(N,)`` or ``(N, ceil(K / group_size))``."""
        return self._scales

    @property
    def zero_points(self):
        """Zero points as stored (read-only, no copy): int8, same shape as ``scales``; None if symmetric."""
        return self._zps

    @property
    def group_size(self):
        """Group length along the input features; None for per-channel scales."""
        return self._group_size

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, K)`` = ``(out_features, in_features)``."""
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
        g = _ngroups(k, self._group_size)
        gs = group_length(k, self._group_size)
        q = self._q.astype(np.float32)
        if self._zps is not None:
            q -= np.repeat(self._zps.reshape(n, g).astype(np.float32), gs, axis=1)[:, :k]
        q *= np.repeat(self._scales.reshape(n, g), gs, axis=1)[:, :k]
        return q

    def to_dense(self) -> np.ndarray:
        """Return the same as :meth:`dequantize`."""
        return self.dequantize()

    def row_block(self, start: int, stop: int) -> Int8Weight:
        """Rows ``start:stop`` with their scales and zero points, as a new Int8Weight (copies)."""
        start, stop = check_row_range(start, stop, self._q.shape[0])
        zps = None if self._zps is None else self._zps[start:stop].copy()
        return type(self)._trusted(self._q[start:stop].copy(), self._scales[start:stop].copy(), zps,
                                   self._group_size)

    def to_arrays(self):
        """``qweight``, ``scales`` (and ``zero_points``), read-only, and ``{"group_size": ...}``."""
        arrays = {"qweight": self._q, "scales": self._scales}
        if self._zps is not None:
            arrays["zero_points"] = self._zps
        return arrays, {"group_size": self._group_size}

    @classmethod
    def from_arrays(cls, arrays, params) -> Int8Weight:
        """Rebuild from :meth:`to_arrays`'s arrays and params, validated completely."""
        extra = set(arrays) - {"qweight", "scales", "zero_points"}
        if extra:
            raise ValueError(f"an int8 weight has arrays qweight, scales and zero_points, got also {sorted(extra)}")
        missing = {"qweight", "scales"} - set(arrays)
        if missing:
            raise ValueError(f"an int8 weight needs the arrays {sorted(missing)}")
        return cls(arrays["qweight"], arrays["scales"], arrays.get("zero_points"),
                   group_size=params.get("group_size"))

    def to_device(self):
        """Return a copy of this weight resident on the GPU (see ``numaccel.linear(..., device="cuda")``)."""
        return spec_for(self).to_device(self)

    def __repr__(self) -> str:
        """Return a short description: the shape, the group size and whether the codes are symmetric."""
        n, k = self.shape
        kind = "asymmetric" if self._zps is not None else "symmetric"
        return f"Int8Weight(shape=({n}, {k}), group_size={self._group_size}, {kind})"
