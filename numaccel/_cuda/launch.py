"""Host launchers of the CUDA kernels in ``numaccel._kernels.csr_cuda``, ``int8_cuda`` and ``csr_int8_cuda``:
grid and block shapes, the device scratch arrays, the kernel sequence of each operation.

Arguments arrive validated and on the device (``numaccel._cuda.api``); the one check here is the layout a
launcher needs (``_rows``: a 1-D device ``x`` viewed as one row must be contiguous).
"""

from __future__ import annotations

import threading

import numpy as np

from .formats import DeviceCSRInt8Weight, DeviceCSRWeight, DeviceInt8Weight

_local = threading.local()


def _kernels():
    from .._kernels import csr_cuda, int8_cuda

    return csr_cuda, int8_cuda


def _csr_int8_kernels():
    from .._kernels import csr_int8_cuda

    return csr_int8_cuda


def _rows(a):
    """A 1-D device array as a (1, K) view (device arrays reshape only when contiguous)."""
    if a.ndim == 2:
        return a
    if not a.is_c_contiguous():
        raise ValueError("a 1-D device x must be contiguous for this weight; use x.copy()")
    return a.reshape(1, a.shape[0])


_SCRATCH_KEEP = 8


def _scratch(name: str, shape: tuple, dtype, cuda):
    """A device work array, reused across the calls of this thread (allocating and freeing device memory can
    synchronise the device). A thread's kernels run in order on the default stream, so a call never
    overwrites what an earlier one still reads; each thread has its own arrays."""
    cache = getattr(_local, "scratch", None)
    if cache is None:
        cache = _local.scratch = {}
    key = (name, tuple(shape), np.dtype(dtype).str)
    a = cache.pop(key, None)
    if a is None:
        a = cuda.device_array(shape, dtype=dtype)
        while len(cache) >= _SCRATCH_KEEP:
            cache.pop(next(iter(cache)))
    cache[key] = a  # most recently used last
    return a


def _blocks(n: int, per_block: int) -> int:
    return max(1, -(-n // per_block))


def _spmv_lanes(nnz: int, rows: int) -> int:
    """Threads per row for the row-split SpMV: the power of two at or above the mean row length, <= 32."""
    mean = nnz / max(rows, 1)
    lanes = 1
    while lanes < 32 and lanes < mean:
        lanes *= 2
    return lanes


def _launch_spmv_csr_cuda(w: DeviceCSRWeight, x, bias, has_bias, out) -> None:
    csr_cuda, _ = _kernels()
    m = out.shape[0]
    lanes = _spmv_lanes(w.nnz, m)
    grid = _blocks(m, csr_cuda.SPMV_THREADS // lanes)
    csr_cuda._spmv_csr_cuda[grid, csr_cuda.SPMV_THREADS](w.indptr, w.indices, w.data, x, bias, has_bias, out,
                                                          lanes)


def _launch_spmm_csr_cuda(w: DeviceCSRWeight, b, bias, has_bias, out) -> None:
    csr_cuda, _ = _kernels()
    m, p = out.shape
    grid = (_blocks(m, csr_cuda.SPMM_ROWS), _blocks(p, csr_cuda.SPMM_TILE))
    csr_cuda._spmm_csr_cuda[grid, (csr_cuda.SPMM_LANES, csr_cuda.SPMM_ROWS)](
        w.indptr, w.indices, w.data, b, bias, has_bias, out)


def _launch_transpose_cuda(a, out) -> None:
    csr_cuda, _ = _kernels()
    rows, cols = a.shape
    t = csr_cuda.TRANSPOSE_TILE
    csr_cuda._transpose_cuda[(_blocks(cols, t), _blocks(rows, t)), (t, t)](a, out)


def _linear_csr(w: DeviceCSRWeight, x, bias, has_bias, out, cuda) -> None:
    """``out = x @ W.T + bias`` for device ``x`` (K,) or (B, K) and ``out`` (N,) or (B, N)."""
    _linear_rows(w, x, bias, has_bias, out, cuda, _launch_spmv_csr_cuda, _launch_spmm_csr_cuda)


def _linear_rows(w, x, bias, has_bias, out, cuda, spmv, spmm) -> None:
    """The row-split ``spmv`` launcher for one row of ``x``, else the batched ``spmm`` launcher on
    transposed operands."""
    if x.ndim == 1 or x.shape[0] == 1:
        x1 = x if x.ndim == 1 else x[0]
        o1 = out if out.ndim == 1 else out[0]
        spmv(w, x1, bias, has_bias, o1)
        return
    nb, k = x.shape
    n = out.shape[1]
    # The batched kernel streams columns of a (K, B) operand into an (N, B) result: transpose in and out.
    xt = _scratch("xt", (k, nb), np.float32, cuda)
    if k:  # with K = 0 the weight has no nonzeros and xt is never read
        _launch_transpose_cuda(x, xt)
    yt = _scratch("yt", (n, nb), np.float32, cuda)
    spmm(w, xt, bias, has_bias, yt)
    _launch_transpose_cuda(yt, out)


def _launch_spmv_csr_int8_cuda(w: DeviceCSRInt8Weight, x, bias, has_bias, out) -> None:
    kern = _csr_int8_kernels()
    m = out.shape[0]
    lanes = _spmv_lanes(w.nnz, m)
    grid = _blocks(m, kern.SPMV_THREADS // lanes)
    kern._spmv_csr_int8_cuda[grid, kern.SPMV_THREADS](w.indptr, w.indices, w.qdata, w.scales, w.gptr, w.gs, x,
                                                       bias, has_bias, out, lanes)


def _launch_spmm_csr_int8_cuda(w: DeviceCSRInt8Weight, b, bias, has_bias, out) -> None:
    kern = _csr_int8_kernels()
    m, p = out.shape
    grid = (_blocks(m, kern.SPMM_ROWS), _blocks(p, kern.SPMM_TILE))
    kern._spmm_csr_int8_cuda[grid, (kern.SPMM_LANES, kern.SPMM_ROWS)](
        w.indptr, w.indices, w.qdata, w.scales, w.gptr, w.gs, b, bias, has_bias, out)


def _linear_csr_int8(w: DeviceCSRInt8Weight, x, bias, has_bias, out, cuda) -> None:
    """``out = x @ W.T + bias`` for a pruned-int8 device weight, as :func:`_linear_csr` does it."""
    _linear_rows(w, x, bias, has_bias, out, cuda, _launch_spmv_csr_int8_cuda, _launch_spmm_csr_int8_cuda)


def _linear_int8(w: DeviceInt8Weight, x, bias, has_bias, out, quant, cuda) -> None:
    """``out = x @ W.T + bias``: weight-only GEMV (one row) or GEMM for ``quant=None``, W8A8 (rows of ``x``
    quantized on the device, integer products through dp4a) for ``quant="int8"`` (checked by the caller:
    ``w._w8a8_error`` is None)."""
    _, int8_cuda = _kernels()
    n = w.shape[0]
    if quant is None and (x.ndim == 1 or x.shape[0] == 1):
        x1 = x if x.ndim == 1 else x[0]
        o1 = out if out.ndim == 1 else out[0]
        int8_cuda._gemv_int8_cuda[_blocks(n, int8_cuda.GEMV_WARPS), int8_cuda.GEMV_THREADS](
            w.qwords, w.scales, w.zero_points, w.kmap, w.gw, x1, bias, has_bias, o1)
        return
    x2 = _rows(x)
    out2 = _rows(out)
    nb = x2.shape[0]
    t = int8_cuda.GEMM_TILE
    grid = (_blocks(n, t), _blocks(nb, t))
    threads = (int8_cuda.GEMM_SIDE, int8_cuda.GEMM_SIDE)
    if quant is None:
        int8_cuda._gemm_int8_cuda[grid, threads](w.qwords, w.scales, w.zero_points, w.kmap, w.gw, x2, bias,
                                                 has_bias, out2)
        return
    groups = w.scales.shape[1]
    qx = _scratch("qx", (nb, w.qwords.shape[1]), np.int32, cuda)
    sx = _scratch("sx", (nb,), np.float64, cuda)
    qsum = _scratch("qsum", (nb, groups), np.int32, cuda)
    int8_cuda._quantize_rows_cuda[nb, int8_cuda.QUANT_THREADS](x2, w.kmap, w.gs, qx, sx, qsum)
    int8_cuda._w8a8_int8_cuda[grid, threads](w.qwords, w.scales, w.zero_points, w.gw, qx, sx, qsum, bias,
                                             has_bias, out2)
