"""Shared argument checks. Each raises ``TypeError`` for a wrong type or dtype and ``ValueError`` for a
wrong value or shape, with a message that names the argument, the rule, what was seen and the fix."""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name: str, *, ndims=(1, 2)) -> np.ndarray:
    """Return ``x`` as an ndarray of float32 or float64 (no casting) with ``ndim`` in ``ndims``."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            raise TypeError(f"{name} is a device array; pass device='cuda' or copy it to the host first")
        if hasattr(x, "toarray") or hasattr(x, "tocsr"):
            raise TypeError(f"{name} must be a dense array, got {type(x).__name__}; use {name}.toarray()")
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - any failure to convert is a type problem
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}; use {name}.astype(np.float32)")
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got {x.ndim}-D with shape {x.shape}")
    return x


def as_weight_matrix(w, name: str = "W") -> np.ndarray:
    """Return a dense 2-D floating weight (any float dtype) as float32, rejecting NaN/inf and other dtypes."""
    if not isinstance(w, np.ndarray):
        if hasattr(w, "toarray"):
            w = w.toarray()
        else:
            w = np.asarray(w)
    if w.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got {w.dtype}; use {name}.astype(np.float32)")
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D (out_features, in_features), got {w.ndim}-D with shape {w.shape}")
    if w.dtype != np.float32:
        with np.errstate(over="ignore"):
            w = w.astype(np.float32)
    check_finite(w, name)
    return w


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first non-finite element of ``a``."""
    if a.size and not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        where = ", ".join(map(str, bad))
        raise ValueError(f"{name} must be finite, got {a[bad]} at {name}[{where}]")


def as_fraction(value, name: str) -> float:
    """A real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def as_positive_int(value, name: str, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    value = int(value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def check_out(out, shape: tuple, dtype: np.dtype, name: str = "out") -> np.ndarray:
    """Validate a caller-supplied output array: exact shape and dtype, C-contiguous, writable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; allocate it with np.empty({tuple(shape)}, dtype=np.{dtype})")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable")
    return out


def check_device(device) -> str:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device
