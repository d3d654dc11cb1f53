"""``linear``: one entry point for every weight format, dispatched on the weight's type and device."""

from __future__ import annotations

import numpy as np

from ._validate import FLOAT_DTYPES, as_float_array, check_device, check_out

__all__ = ["linear"]

# (predicate, handler) pairs registered by higher layers (numaccel.parallel registers Dask arrays and
# sharded weights). A predicate sees (x, weight, client); the first match handles the call.
_HOOKS: list = []


def register_hook(predicate, handler) -> None:
    """Route ``linear`` calls for which ``predicate(x, weight, client)`` is true to ``handler``."""
    _HOOKS.append((predicate, handler))


def check_bias(bias, n: int):
    if bias is None:
        return None
    bias = as_float_array(bias, "bias", ndims=(1,))
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},) (out_features), got {bias.shape}")
    return bias


def check_activations(x, k: int) -> np.ndarray:
    x = as_float_array(x, "x")
    if x.shape[-1] != k:
        raise ValueError(f"x must have {k} features (weight.shape[1]) in its last axis, got shape {x.shape}")
    return x


def _dense_weight(weight: np.ndarray, x: np.ndarray) -> np.ndarray:
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"weight must be float32 or float64, got {weight.dtype}; use weight.astype(np.float32)")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if weight.dtype == np.float64 and x.dtype == np.float32:
        raise TypeError("weight is float64 but x is float32; use weight.astype(np.float32) or x.astype(np.float64)")
    return weight


def linear(x, weight, bias=None, *, out=None, device: str = "cpu", activations=None, client=None):
    """A linear layer: ``y = x @ W.T + bias``.

    Parameters
    ----------
    x : ndarray, shape (K,) or (B, K), float32 or float64
        Activations, any memory layout (copied at the boundary when a kernel needs another one). A
        ``dask.array`` chunked along the batch gives a ``dask.array`` (see :mod:`numaccel.parallel`).
    weight : ndarray (N, K) | CSRWeight | Int8Weight | sharded or device weight
        A dense ndarray goes to BLAS; the compressed formats run numaccel's kernels.
    bias : ndarray, shape (N,), optional
    out : ndarray, optional, keyword-only
        C-contiguous, shape (N,) or (B, N), dtype of ``x``; every element is overwritten.
    device : {"cpu", "cuda"}, keyword-only
    activations : {None, "int8"}, keyword-only
        ``"int8"`` quantizes each row of ``x`` on the fly (W8A8) for an :class:`Int8Weight`: exact int32 sums
        of int8 products on AVX-512 VNNI, or on AMX tiles where the CPU has them and the batch is large
        enough (see :class:`Int8Weight`).
    client : dask.distributed.Client, optional, keyword-only
        Run a sharded weight's shards on this cluster's workers.

    Returns
    -------
    y : ndarray, shape (N,) or (B, N), dtype of ``x``

    Raises
    ------
    TypeError
        ``x`` not float32/float64, an unknown weight type.
    ValueError
        ``x.shape[-1] != K``, a bad ``bias`` or ``out`` (wrong shape, not C-contiguous, read-only, or sharing
        memory with ``x``); ``activations="int8"`` on an Int8Weight with several groups per row longer than
        66 311 features (with zero points) or 132 104 (without).

    See Also
    --------
    spmm, prune, quantize

    Notes
    -----
    ``y[b, n] = sum_k x[b, k] * W[n, k] + bias[n]``, accumulated in the dtype of ``x``. Compressed weights
    are never expanded to dense: the CSR kernel visits only the stored nonzeros, the int8 kernels scale
    the integer codes inside the reduction (``y = x @ (scale * q).T``).

    Numeric range of an :class:`Int8Weight` (``q`` the codes, ``z`` the zero points, ``L`` the group
    length: ``group_size``, or K for per-channel scales). Past these bounds a result may be inf or NaN
    where ``x @ weight.dequantize().T`` is finite; it is never a wrong finite number.

    - Weight-only: the CPU kernels form each group's ``sum_k x[b, k] * (q[n, k] - z)`` before scaling
      it, in the dtype of ``x``, so ``255 * sum_k |x[b, k]|`` over a group must stay below that dtype's
      maximum (float32: ``max|x| * 255 * L < 3.4e38``). The CUDA kernels scale every 4 features:
      ``max|x| * 1020 < 3.4e38``.
    - W8A8 (``activations="int8"``): activations are quantized per row, ``qx = rint(x / s_x)`` with
      ``s_x = max|x[b]| / 127``, and each group's ``sum qx * (q - z)`` is exact in int32 for groups of
      up to 66 311 features with zero points, 132 104 without. A row with a single, longer group (per-
      channel scales and a larger K) is summed in equal chunks below that length, so any K is exact;
      several groups per row longer than that raise ``ValueError``. The sums are scaled in float32 by
      the weight scale, then by ``s_x``: ``max|W| * 127 * L`` (``L`` the chunk length for long rows)
      must stay below 3.4e38. A float64 row whose ``s_x`` underflows to 0 (``max|x[b]|`` below about
      3e-322) is taken as all zeros.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> W = np.array([[1., 0., 2.], [0., 3., 0.]], dtype=np.float32)
    >>> na.linear(np.ones(3, dtype=np.float32), na.prune(W, 0.5), bias=np.array([0.5, 0.5], np.float32))
    array([3.5, 3.5], dtype=float32)
    """
    for predicate, handler in _HOOKS:
        if predicate(x, weight, client):
            return handler(x, weight, bias, out=out, device=device, activations=activations, client=client)
    if client is not None:
        raise TypeError(f"client= needs a sharded weight (na.shard) or a dask array x; got {type(weight).__name__}")
    device = check_device(device)
    if device == "cuda" or getattr(weight, "on_device", False):
        from . import _cuda

        return _cuda.linear(x, weight, bias, out=out, activations=activations)

    if isinstance(weight, np.ndarray):
        k = weight.shape[-1] if weight.ndim == 2 else -1
        x = check_activations(x, k) if weight.ndim == 2 else as_float_array(x, "x")
        weight = _dense_weight(weight, x)
        if activations is not None:
            raise ValueError(f"activations={activations!r} needs an Int8Weight; dense weights use None")
    elif hasattr(weight, "_linear") and hasattr(weight, "shape"):
        x = check_activations(x, weight.shape[1])
    else:
        raise TypeError(
            f"weight must be a numpy.ndarray, CSRWeight or Int8Weight, got {type(weight).__name__}"
        )
    n = weight.shape[0]
    bias = check_bias(bias, n)
    x2 = x if x.ndim == 2 else x[None, :]
    shape = (x2.shape[0], n) if x.ndim == 2 else (n,)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    else:
        check_out(out, shape, x.dtype, inputs={"x": x})
    out2 = out if out.ndim == 2 else out[None, :]
    if out2.size:
        if isinstance(weight, np.ndarray):
            np.matmul(x2, weight.T, out=out2)
        else:
            weight._linear(x2, out2, activations=activations)
    if bias is not None and out.size:
        out += bias
    return out
