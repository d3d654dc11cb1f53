"""Entry points of the CUDA side: :func:`to_device`, :func:`linear`, :func:`spmm`, and :func:`call`, the handler
registered for the device weights (``numaccel.linear`` passes it the whole call).

Activations may be NumPy arrays (copied to the device, the result copied back into a NumPy array) or device
arrays: Numba device arrays or anything exposing ``__cuda_array_interface__`` (CuPy, PyTorch). With device
activations the result stays on the device and ``out`` must be a device array too.

dtype policy (the CPU's too): no silent downcast. The kernels compute in float32, so ``x``, ``B``, ``bias``
and ``out`` must be float32; any other dtype (float64 included) is a ``TypeError`` that names the
conversion, which the caller makes (``x.astype(np.float32)``), never this module.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_out, is_scipy_sparse
from ..formats.csr import CSRWeight
from ..formats.csr_int8 import CSRInt8Weight
from .formats import DeviceCSRInt8Weight, DeviceCSRWeight, device_copy
from .launch import (
    _launch_spmm_csr_cuda,
    _launch_spmm_csr_int8_cuda,
    _launch_spmv_csr_cuda,
    _launch_spmv_csr_int8_cuda,
    _linear_csr,
    _linear_csr_int8,
    _linear_int8,
    _scratch,
)
from .runtime import _require_cuda

__all__ = ["call", "linear", "spmm", "to_device"]

_F32 = np.dtype(np.float32)
_state: dict = {}


def to_device(weight):
    """Return ``weight`` (a CSRWeight, Int8Weight or CSRInt8Weight) resident on the GPU, copied there once.

    Parameters
    ----------
    weight : CSRWeight, Int8Weight or CSRInt8Weight
        A device weight is returned as it is.

    Returns
    -------
    DeviceCSRWeight, DeviceInt8Weight or DeviceCSRInt8Weight
        ``on_device`` is True; ``shape`` and the format's metadata are the host weight's. Pass it to
        :func:`numaccel.linear` (or :func:`numaccel.spmm`): a device weight runs on the GPU by itself.

    Raises
    ------
    RuntimeError
        CUDA cannot run here (no numba-cuda, no driver, no NVVM or no GPU); the message says which.
    TypeError
        ``weight`` is not a CSRWeight, Int8Weight or CSRInt8Weight.

    Notes
    -----
    The device copy is cached per host weight (weights are immutable) in a ``weakref.WeakKeyDictionary``
    of ``numaccel._cuda``, so calling ``to_device`` again, or ``linear(x, weight, device="cuda")`` with the
    host weight, does not copy it again; the cache keeps no host weight alive.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> w = na.prune(np.eye(3, dtype=np.float32), 0.5)
    >>> try:
    ...     dw = w.to_device()
    ... except RuntimeError:  # no GPU here
    ...     dw = None
    >>> dw is None or (dw.on_device and dw.shape == (3, 3))
    True
    """
    return device_copy(weight, _require_cuda())


# --------------------------------------------------------------------------------------------------
# arguments
def _as_device_array(a, cuda):
    """``a`` as a Numba device array when it lives on the device, else None."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    return None


def _float32_only(dtype, name: str, where: str) -> None:
    if dtype != _F32:
        raise TypeError(
            f"{name} must be float32 for device='cuda', got {dtype}; {where} (the GPU computes in float32 "
            f"and never converts silently)"
        )


def _check_device_operand(a, name: str, ndims, size: int, what: str):
    _float32_only(a.dtype, name, "convert it on the device")
    if a.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want} as a device array, got {a.ndim}-D with shape {tuple(a.shape)}")
    if a.shape[0 if what == "rows" else a.ndim - 1] != size:  # device shapes refuse negative indices
        raise ValueError(f"{name} must have {size} {what}, got shape {tuple(a.shape)}")


def _host_array(a, name: str) -> np.ndarray:
    """A host operand as a float32 ndarray (no conversion of the dtype)."""
    if not isinstance(a, np.ndarray):
        if is_scipy_sparse(a):
            raise TypeError(f"{name} must be a dense array, got {type(a).__name__}; use {name}.toarray()")
        try:
            a = np.asarray(a)
        except Exception as exc:  # noqa: BLE001 - any failure to convert is a type problem
            raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from exc
    _float32_only(a.dtype, name, f"use {name}.astype(np.float32)")
    return a


def _features(x, k: int, cuda):
    """Validate ``x`` (..., K) and return ``(device x (K,) or (M, K), result shape, on_device)``."""
    dev = _as_device_array(x, cuda)
    if dev is not None:
        _check_device_operand(dev, "x", (1, 2), k, "features")
        return dev, None, True
    x = _host_array(x, "x")
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"x must have {k} features (shape (..., {k})), got shape {x.shape}")
    lead = x.shape[:-1]
    x = np.ascontiguousarray(x)
    if x.ndim > 2:  # leading batch dimensions: (M, K) rows, the result reshaped back
        x = x.reshape(-1, k)
    return cuda.to_device(x), lead, False


def _rows_operand(b, k: int, cuda):
    """Validate ``B`` (K,) or (K, P) and return ``(device B, on_device)``."""
    dev = _as_device_array(b, cuda)
    if dev is not None:
        _check_device_operand(dev, "B", (1, 2), k, "rows")
        return dev, True
    b = _host_array(b, "B")
    if b.ndim not in (1, 2):
        raise ValueError(f"B must be 1-D or 2-D, got {b.ndim}-D with shape {b.shape}")
    if b.shape[0] != k:
        raise ValueError(f"B must have {k} rows (A.shape[1]), got shape {b.shape}")
    return cuda.to_device(np.ascontiguousarray(b)), False


def _bias(bias, n: int, cuda):
    """``(device_bias, has_bias)``; a one-element placeholder when there is no bias."""
    if bias is None:
        dummy = _state.get("dummy")
        if dummy is None:
            dummy = _state["dummy"] = cuda.to_device(np.zeros(1, dtype=np.float32))
        return dummy, 0
    dev = _as_device_array(bias, cuda)
    if dev is not None:
        _check_device_operand(dev, "bias", (1,), n, "entries (out_features)")
        return dev, 1
    bias = _host_array(bias, "bias")
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},) (out_features), got {bias.shape}")
    return cuda.to_device(np.ascontiguousarray(bias)), 1


def _output(out, shape: tuple, on_device: bool, cuda, result_shape: tuple | None = None):
    """The device array ``shape`` the kernels write, after checking a caller's ``out`` (of ``result_shape``
    for host activations: ``x.shape[:-1] + (N,)``, which the kernels' (M, N) rows are copied into)."""
    if not on_device:  # copied back to the host before the call returns
        if out is not None:
            shape_out = shape if result_shape is None else result_shape
            if isinstance(out, np.ndarray) and out.dtype != _F32:
                raise TypeError(
                    f"out must have dtype float32 for device='cuda', got {out.dtype}; allocate it with "
                    f"np.empty({tuple(shape_out)}, dtype=np.float32)"
                )
            check_out(out, shape_out, _F32)
        return _scratch("out", shape, np.float32, cuda)
    if out is None:
        return cuda.device_array(shape, dtype=np.float32)
    dev = _as_device_array(out, cuda)
    if dev is None:
        raise TypeError(
            f"out must be a device array when the activations are on the device, got {type(out).__name__}"
        )
    _float32_only(dev.dtype, "out", f"allocate it with cuda.device_array({tuple(shape)}, np.float32)")
    if tuple(dev.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(dev.shape)}")
    if not dev.is_c_contiguous():
        raise ValueError(
            f"out must be C-contiguous; allocate it with cuda.device_array({tuple(shape)}, np.float32)"
        )
    return dev


def _finish(dout, out, on_device: bool, shape: tuple):
    """The result: ``dout`` itself for device activations, else copied into ``out`` or a new array."""
    if on_device:
        return dout
    if out is None:
        return dout.copy_to_host().reshape(shape)
    dout.copy_to_host(out.reshape(dout.shape))  # out is C-contiguous: the reshape is a view
    return out


def _check_quant(w, quant) -> None:
    if isinstance(w, DeviceCSRWeight):
        if quant is not None:
            raise ValueError(f"activation_quant must be None for a CSRWeight, got {quant!r}")
        return
    if isinstance(w, DeviceCSRInt8Weight):
        if quant is not None:
            raise ValueError(
                f"activation_quant must be None for a CSRInt8Weight on device='cuda' (weight-only int8: the "
                f"codes are scaled in float32; W8A8 runs on the CPU), got {quant!r}"
            )
        return
    if quant not in (None, "int8"):
        raise ValueError(f"activation_quant must be None or 'int8' for an Int8Weight, got {quant!r}")
    if quant is not None and w._w8a8_error is not None:
        raise ValueError(w._w8a8_error)


# --------------------------------------------------------------------------------------------------
# entry points
def linear(x, weight, bias=None, *, out=None, activation_quant=None):
    """``numaccel.linear`` on the GPU: ``y = x @ W.T + bias`` in float32.

    Parameters
    ----------
    x : ndarray (..., K) or device array (K,) or (M, K), float32
        A NumPy ``x`` gives a NumPy result; a device ``x`` a device result.
    weight : CSRWeight, Int8Weight, CSRInt8Weight or their device copies
        A host weight is copied to the device once (cached, see :func:`to_device`).
    bias : ndarray or device array (N,), float32, optional
    out : ndarray (..., N) or device array, float32, optional, keyword-only
        On the host for a NumPy ``x``, on the device for a device ``x``; C-contiguous.
    activation_quant : {None, "int8"}, keyword-only
        ``"int8"`` (Int8Weight only; None for the others): W8A8, rows of ``x`` quantized on the device,
        integer products through ``dp4a``.

    Returns
    -------
    ndarray or device array, float32, shape ``x.shape[:-1] + (N,)``

    Raises
    ------
    RuntimeError
        CUDA cannot run here.
    TypeError
        A weight that is not a CSRWeight, Int8Weight or CSRInt8Weight; ``x``, ``bias`` or ``out`` not
        float32 (float64 included: convert with ``.astype(np.float32)``); a host ``out`` for device
        activations.
    ValueError
        Mismatched shapes; an ``activation_quant`` the weight does not support; W8A8 on an Int8Weight
        whose groups are too long for exact int32 sums.

    See Also
    --------
    numaccel.linear : the public entry point (dispatches device weights and ``device="cuda"`` here).
    """
    cuda = _require_cuda()
    w = device_copy(weight, cuda)
    _check_quant(w, activation_quant)
    n, k = w.shape
    dx, lead, on_device = _features(x, k, cuda)
    dbias, has_bias = _bias(bias, n, cuda)
    shape = (n,) if dx.ndim == 1 else (dx.shape[0], n)
    result_shape = shape if on_device else lead + (n,)
    dout = _output(out, shape, on_device, cuda, result_shape)
    if dout.size:
        if isinstance(w, DeviceCSRWeight):
            _linear_csr(w, dx, dbias, has_bias, dout, cuda)
        elif isinstance(w, DeviceCSRInt8Weight):
            _linear_csr_int8(w, dx, dbias, has_bias, dout, cuda)
        else:
            _linear_int8(w, dx, dbias, has_bias, dout, activation_quant, cuda)
    return _finish(dout, out, on_device, result_shape)


def spmm(A, B, *, out=None):
    """``numaccel.spmm`` on the GPU: ``C = A @ B`` in float32 for a CSRWeight or CSRInt8Weight (or its device
    copy) ``A``.

    NumPy ``B`` (K,) or (K, P) gives a NumPy result; a device ``B`` gives a device result. ``B`` and ``out``
    must be float32 (``TypeError`` otherwise, naming the conversion). See :func:`numaccel.spmm`.
    """
    if not isinstance(A, (CSRWeight, DeviceCSRWeight, CSRInt8Weight, DeviceCSRInt8Weight)):
        raise TypeError(
            f"A must be a CSRWeight or CSRInt8Weight (or its device copy) for device='cuda', got "
            f"{type(A).__name__}; convert a scipy.sparse matrix with CSRWeight.from_scipy"
        )
    cuda = _require_cuda()
    w = device_copy(A, cuda)
    m, k = w.shape
    db, on_device = _rows_operand(B, k, cuda)
    dbias, _ = _bias(None, m, cuda)
    shape = (m,) + tuple(db.shape[1:])
    dout = _output(out, shape, on_device, cuda)
    if dout.size:
        if isinstance(w, DeviceCSRInt8Weight):
            launch = _launch_spmv_csr_int8_cuda if db.ndim == 1 else _launch_spmm_csr_int8_cuda
        else:
            launch = _launch_spmv_csr_cuda if db.ndim == 1 else _launch_spmm_csr_cuda
        launch(w, db, dbias, 0, dout)
    return _finish(dout, out, on_device, shape)


def call(x, weight, bias=None, *, out=None, device=None, quant=None, client=None):
    """The registered ``call`` of the device weights: the whole ``numaccel.linear(x, weight, ...)`` call.

    ``device`` None or ``"cuda"`` runs on the GPU (:func:`linear`); ``"cpu"`` is a ``ValueError`` (the
    weight is on the GPU: ``weight.to_host()`` for the CPU); ``client`` must be None (``TypeError``).
    """
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        raise ValueError(
            f"device='cpu' was asked for a weight resident on the GPU ({type(weight).__name__}); use "
            f"weight.to_host() to run on the CPU, or device=None (follow the weight) to run on the GPU"
        )
    if client is not None:
        raise TypeError(
            f"client= is for sharded weights and dask arrays, got a GPU-resident {type(weight).__name__}; "
            f"drop client= to run on this process's GPU, or shard the host weight (weight.to_host())"
        )
    return linear(x, weight, bias, out=out, activation_quant=quant)
