"""``linear`` and ``spmm``: validate the inputs, then dispatch on the weight's registered format.

Both validate the activations, bias and output, then make one explicit dispatch on the weight's
registered format (:mod:`numaccel.formats`).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from . import plan  # noqa: F401 - registers the execution side of numaccel's own formats
from ._validate import (
    as_float_array,
    check_bias,
    check_device,
    check_features,
    check_out,
    coordinates_to_csr,
    is_scipy_sparse,
    plain_array,
    scipy_coordinates,
)
from .formats import spec_for, spec_of

__all__ = ["linear", "spmm"]

_UNSET = object()


def _is_dask_array(x) -> bool:
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(x, mod.Array)


def _quant(activation_quant, activations):
    if activations is not _UNSET:
        warnings.warn("linear(activations=...) is deprecated; use activation_quant=... (the same values)",
                      DeprecationWarning, stacklevel=3)
        if activation_quant is not None and activation_quant != activations:
            raise TypeError("pass activation_quant= only (activations= is its deprecated alias)")
        activation_quant = activations
    if activation_quant is not None and activation_quant != "int8":
        raise ValueError(f"activation_quant must be None or 'int8', got {activation_quant!r}")
    return activation_quant


def _dense_weight(weight: np.ndarray) -> np.ndarray:
    weight = plain_array(weight, "weight")
    if weight.dtype not in (np.float32, np.float64):
        raise TypeError(f"weight must be float32 or float64, got {weight.dtype}; use weight.astype(np.float32)")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    return weight


def linear(x, weight, bias=None, *, out=None, device=None, activation_quant=None, client=None,
           activations=_UNSET):
    """Apply a linear layer: ``y = x @ W.T + bias``.

    Parameters
    ----------
    x : ndarray, shape (..., K), float32 or float64
        Activations with any leading batch dimensions, any memory layout (copied at the boundary when a
        kernel needs another one). A ``dask.array`` chunked along the batch gives a ``dask.array`` (see
        :mod:`numaccel.parallel`).
    weight : ndarray (N, K) or a weight of a registered format
        A dense float32/float64 ndarray runs on BLAS; :class:`CSRWeight`, :class:`Int8Weight` and other
        registered formats (:mod:`numaccel.formats`) run their own kernels; a :class:`ShardedWeight` runs
        its shards on Dask workers; a device-resident weight runs on the GPU. A ``scipy.sparse`` matrix is
        refused: convert it once with :meth:`CSRWeight.from_scipy`.
    bias : ndarray, shape (N,), float32 or float64, optional
    out : ndarray, optional, keyword-only
        C-contiguous, shape ``(..., N)``, of the result dtype, sharing no memory with ``x``, a dense
        ``weight`` or ``bias``; every element is overwritten.
    device : {None, "cpu", "cuda"}, keyword-only
        None runs where the weight lives; ``"cpu"`` refuses a device-resident weight; ``"cuda"`` copies a
        host weight to the GPU once (cached) and runs there.
    activation_quant : {None, "int8"}, keyword-only
        ``"int8"`` quantizes each row of ``x`` on the fly (W8A8) for an :class:`Int8Weight` or a
        :class:`CSRInt8Weight`: exact int32 sums of int8 products on AVX-512 VNNI (for an Int8Weight on
        AMX tiles where the CPU has them and the batch is large enough; see :class:`Int8Weight`), plain
        integer loops elsewhere. It pays for batched calls (pruned-int8: from about 64 rows).
        ``activations=`` is its deprecated alias.
    client : dask.distributed.Client, optional, keyword-only
        Run a sharded weight's shards on this cluster's workers.

    Returns
    -------
    y : ndarray, shape (..., N)
        dtype ``numpy.result_type(x, weight, bias)``, where a compressed weight counts as ``x``'s dtype:
        nothing is downcast; float32 inputs give float32.

    Raises
    ------
    TypeError
        ``x`` not float32/float64, an unregistered weight type (a scipy.sparse matrix: the message names
        the conversion), ``client=`` without a sharded weight or dask array.
    ValueError
        ``x.shape[-1] != K``, a bad ``bias`` or ``out`` (wrong shape, not C-contiguous, read-only, or sharing
        memory with ``x``, a dense weight or ``bias``), ``device="cpu"`` with a device-resident weight,
        an ``activation_quant`` the format does not support; ``activation_quant="int8"`` on an Int8Weight
        with several groups per row longer than 66 311 features (with zero points) or 132 104 (without),
        or on a CSRInt8Weight whose groups hold more than 132 104 stored values.

    See Also
    --------
    spmm, prune, quantize

    Notes
    -----
    ``y[..., n] = sum_k x[..., k] * W[n, k] + bias[n]``, accumulated in the result dtype. Compressed
    weights are never expanded to dense: the CSR kernel visits only the stored nonzeros, the int8 kernels
    scale the integer codes inside the reduction (``y = x @ (scale * q).T``).

    Numeric range of an :class:`Int8Weight` (``q`` the codes, ``z`` the zero points, ``L`` the group
    length: ``group_size``, or K for per-channel scales). Past these bounds a result may be inf or NaN
    where ``x @ weight.dequantize().T`` is finite; it is never a wrong finite number.

    - Weight-only: the CPU kernels form each group's ``sum_k x[b, k] * (q[n, k] - z)`` before scaling
      it, in the dtype of ``x``, so ``255 * sum_k |x[b, k]|`` over a group must stay below that dtype's
      maximum (float32: ``max|x| * 255 * L < 3.4e38``). The CUDA kernels scale every 4 features:
      ``max|x| * 1020 < 3.4e38``.
    - W8A8 (``activation_quant="int8"``): activations are quantized per row, ``qx = rint(x / s_x)`` with
      ``s_x = max|x[b]| / 127``, and each group's ``sum qx * (q - z)`` is exact in int32 for groups of
      up to 66 311 features with zero points, 132 104 without. A row with a single, longer group (per-
      channel scales and a larger K) is summed in equal chunks below that length, so any K is exact;
      several groups per row longer than that raise ``ValueError``. The sums are scaled in float32 by
      the weight scale, then by ``s_x``: ``max|W| * 127 * L`` (``L`` the chunk length for long rows)
      must stay below 3.4e38. A float64 row whose ``s_x`` underflows to 0 (``max|x[b]|`` below about
      3e-322) is taken as all zeros.
    - W8A8 on a :class:`CSRInt8Weight`: the same activation codes; each group's (per-row scales: each
      row's) ``sum qx * q`` over its stored values is exact in int32 (a row with one scale and more than
      132 104 stored values is summed in chunks), then scaled in float64: ``y[b, i] = s_x[b] * sum_g
      scale_g * sum_g``, rounded once to the result dtype. A row of ``x`` holding NaN or inf gives NaN in
      every output of that row.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> W = np.array([[1., 0., 2.], [0., 3., 0.]], dtype=np.float32)
    >>> na.linear(np.ones(3, dtype=np.float32), na.prune(W, 0.5), bias=np.array([0.5, 0.5], np.float32))
    array([3.5, 3.5], dtype=float32)
    >>> na.linear(np.ones((2, 4, 3), np.float32), W).shape
    (2, 4, 2)
    """
    quant = _quant(activation_quant, activations)
    if type(x) is not np.ndarray and _is_dask_array(x):
        from .parallel import data_parallel

        return data_parallel(x, weight, bias, out=out, device=device, quant=quant, client=client)
    device = check_device(device)
    spec = spec_of(weight)
    if spec is None and is_scipy_sparse(weight):
        raise TypeError(
            f"weight is a scipy.sparse {type(weight).__name__}; convert it once with "
            f"numaccel.CSRWeight.from_scipy(m) (validated and packed for the kernels) and pass that"
        )
    if spec is None:
        spec = spec_for(weight)  # TypeError naming the registered formats
    if spec.call is not None:
        return spec.call(x, weight, bias, out=out, device=device, quant=quant, client=client)
    if client is not None:
        raise TypeError(f"client= needs a sharded weight (na.shard) or a dask array x; got {type(weight).__name__}")
    if device == "cuda":
        if spec.to_device is None:
            raise TypeError(f"device='cuda' cannot run a {spec.name} weight (the format has no device copy); "
                            f"use device='cpu' or a format with CUDA kernels (CSRWeight, Int8Weight)")
        dw = spec.to_device(weight)
        return spec_for(dw).call(x, dw, bias, out=out, device=device, quant=quant, client=None)
    if spec.linear is None:
        raise TypeError(f"the {spec.name} format has no CPU kernel registered (numaccel.formats.register(..., "
                        f"linear=...))")
    if quant is not None and quant not in spec.quant:
        raise ValueError(f"activation_quant={quant!r} is not supported for a {spec.name} weight; use None"
                         + (" (an Int8Weight supports 'int8')" if spec.name != "int8" else ""))
    x = as_float_array(x, "x", ndims=None)
    if isinstance(weight, np.ndarray):
        weight = _dense_weight(weight)
        wdtype = weight.dtype
    else:
        wdtype = weight.result_dtype(x.dtype)
    n, k = (int(s) for s in weight.shape)
    check_features(x, k)
    bias = check_bias(bias, n)
    if wdtype == x.dtype and (bias is None or bias.dtype == x.dtype):
        rdtype = x.dtype
    else:
        rdtype = np.result_type(x.dtype, wdtype, *(() if bias is None else (bias.dtype,)))
    shape = x.shape[:-1] + (n,)
    if out is None:
        out = np.empty(shape, dtype=rdtype)
    else:
        check_out(out, shape, rdtype, inputs={"x": x, "weight": weight, "bias": bias})
    if out.size:
        m = out.size // n
        x2 = x.reshape(m, k)
        if x2.dtype != rdtype or not x2.flags.c_contiguous:
            x2 = np.ascontiguousarray(x2, dtype=rdtype)
        spec.linear(weight, x2, out.reshape(m, n), quant)
        if bias is not None:
            out += bias
    return out


def spmm(A, B, *, out=None, device=None):
    """Sparse times dense: ``C = A @ B``.

    Parameters
    ----------
    A : CSRWeight or scipy.sparse matrix/array, shape (M, K)
        A SciPy input is validated and converted on every call (O(nnz), plus a sort when its entries are
        not in row-major order), keeping its float32 or float64 values; convert once with
        :meth:`CSRWeight.from_scipy` to multiply the same matrix repeatedly (float32 values).
    B : ndarray, shape (K,) or (K, P), float32 or float64
        Any memory layout (copied to C order when needed).
    out : ndarray, optional, keyword-only
        C-contiguous, shape (M,) or (M, P), of the result dtype.
    device : {None, "cpu", "cuda"}, keyword-only
        As for :func:`linear`.

    Returns
    -------
    C : ndarray, shape (M,) or (M, P)
        dtype ``numpy.result_type(A.dtype, B.dtype)`` (a CSRWeight counts as float32): a float64 matrix
        times float64 ``B`` is computed in float64.

    Raises
    ------
    TypeError
        ``A`` not sparse, ``B`` not float32/float64, ``out`` of the wrong type.
    ValueError
        Mismatched shapes, a bad ``out``, NaN or inf among a SciPy matrix's values.

    See Also
    --------
    linear : ``x @ W.T + bias`` for a layer.

    Notes
    -----
    ``C[i] = sum_p data[p] * B[indices[p]]`` over the nonzeros ``p`` of row ``i``, accumulated in the result
    dtype. Rows are split among threads in chunks of about equal numbers of nonzeros.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> A = na.CSRWeight.from_dense(np.array([[1., 0.], [0., 2.]]))
    >>> na.spmm(A, np.array([[1., 2.], [3., 4.]], dtype=np.float32))
    array([[1., 2.],
           [6., 8.]], dtype=float32)
    """
    device = check_device(device)
    arrays = None
    if is_scipy_sparse(A):
        if device == "cuda":
            from .formats import CSRWeight

            if A.dtype != np.float32:  # the CUDA kernels compute in float32: nothing is downcast silently
                raise TypeError(f"A must be float32 for device='cuda', got {A.dtype}; use A.astype(np.float32)")
            A = CSRWeight.from_scipy(A)
        else:
            rows, cols, vals, shape = scipy_coordinates(A, "A")
            indptr, indices, data = coordinates_to_csr(rows, cols, vals, shape[0])
            dtype = np.float64 if data.dtype.itemsize > 4 else np.float32
            with np.errstate(over="ignore"):
                data = data.astype(dtype)
            if data.size and not np.isfinite(data).all():
                p = int(np.argmax(~np.isfinite(data)))
                raise ValueError(f"A's values must be finite, got {data[p]} at entry {p} (row-major order)")
            arrays = (indptr, indices.astype(np.int32 if shape[1] <= np.iinfo(np.int32).max else np.int64),
                      data, shape)
    if arrays is None:
        spec = spec_of(A)
        if spec is None or spec.spmm is None:
            raise TypeError(f"A must be a CSRWeight or a scipy.sparse matrix, got {type(A).__name__}")
        if spec.device == "cuda" or device == "cuda":
            if spec.device != "cuda":
                if spec.to_device is None:
                    raise TypeError(f"device='cuda' cannot run a {spec.name} matrix")
                A = spec.to_device(A)
                spec = spec_for(A)
            elif device == "cpu":
                raise ValueError("A lives on the GPU but device='cpu'; use device=None (or 'cuda'), or "
                                 "A.to_host() to run on the CPU")
            return spec.spmm(A, B, out)
        m, k = A.shape
        adtype = np.dtype(np.float32)
    else:
        m, k = arrays[3]
        adtype = arrays[2].dtype
    B = as_float_array(B, "B")
    if B.shape[0] != k:
        raise ValueError(f"B must have {k} rows (A.shape[1]), got shape {B.shape}")
    rdtype = np.result_type(adtype, B.dtype)
    shape = (m,) + B.shape[1:]
    if out is None:
        out = np.empty(shape, dtype=rdtype)
    else:
        check_out(out, shape, rdtype, inputs={"B": B})
    if out.size:
        b = np.ascontiguousarray(B, dtype=rdtype)
        if arrays is None:
            spec.spmm(A, b, out)
        else:
            plan.csr.matmul_arrays(*arrays[:3], arrays[3], b, out)
    return out
