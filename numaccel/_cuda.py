"""The CUDA side of ``linear`` and ``spmm``: availability checks, device-resident weights, validation and
the launchers of the kernels in ``numaccel._kernels.csr_cuda`` and ``numaccel._kernels.int8_cuda``.

Imported only when something asks for ``device="cuda"`` (or ``to_device``), so ``import numaccel`` never
imports ``numba.cuda``. Every entry point first checks that CUDA can run here and raises ``RuntimeError``
saying why not (no numba-cuda, no driver, no NVVM, no device).

Activations may be NumPy arrays (copied to the device, the result copied back into a NumPy array) or device
arrays: Numba device arrays or anything exposing ``__cuda_array_interface__`` (CuPy, PyTorch). With device
activations the result stays on the device and ``out`` must be a device array too. The computation is in
float32.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from ._validate import as_float_array, check_out

__all__ = ["DeviceCSRWeight", "DeviceInt8Weight", "linear", "spmm", "to_device"]

_F32 = np.dtype(np.float32)
_state: dict = {}
_local = threading.local()


def _require_cuda():
    """Return ``numba.cuda`` once CUDA is known to work here; otherwise raise ``RuntimeError`` saying why."""
    cuda = _state.get("cuda")
    if cuda is not None:
        return cuda
    if importlib.util.find_spec("numba_cuda") is None:
        raise RuntimeError(
            "device='cuda' needs the numba-cuda package, which is not installed; "
            "pip install 'numaccel[cuda]' (or use device='cpu')"
        )
    from numba import cuda

    if not cuda.is_available():
        err = cuda.cuda_error()
        if err is not None:
            reason = " ".join(str(err).split())
            raise RuntimeError(
                f"device='cuda' needs an NVIDIA driver, and the CUDA driver could not be loaded ({reason}); "
                f"use device='cpu'"
            )
        try:
            from numba.cuda.cudadrv import nvvm

            has_nvvm = nvvm.is_available()
        except Exception:  # noqa: BLE001 - any failure to find NVVM means it is missing
            has_nvvm = False
        if not has_nvvm:
            raise RuntimeError(
                "device='cuda' found the CUDA driver but not NVVM, the CUDA compiler library; pip install "
                "'numaccel[cuda]' (numba-cuda with the CUDA 13 toolkit wheels) or use device='cpu'"
            )
        raise RuntimeError(
            "device='cuda' found the CUDA driver but no usable GPU (check CUDA_VISIBLE_DEVICES); "
            "use device='cpu'"
        )
    _state["cuda"] = cuda
    return cuda


def _kernels():
    from ._kernels import csr_cuda, int8_cuda

    return csr_cuda, int8_cuda


# --------------------------------------------------------------------------------------------------
# device-resident weights
class _DeviceWeight:
    """What the device copies of the formats share: ``on_device``, ``shape``, ``nbytes``, the host weight."""

    on_device = True
    __slots__ = ("_host",)

    shape = property(lambda self: self._host.shape)
    nbytes = property(lambda self: self._host.nbytes)

    def to_host(self):
        """The host weight this copy was made from."""
        return self._host

    def to_device(self):
        return self

    def __repr__(self) -> str:
        return f"{self._host!r}.to_device()"


class DeviceCSRWeight(_DeviceWeight):
    """A :class:`~numaccel.CSRWeight` resident on the GPU; made by ``CSRWeight.to_device()``.

    Holds device copies of ``indptr``, the narrow column ids and ``data``; ``shape``, ``nnz``, ``density``
    and ``nbytes`` are those of the host weight, which ``to_host()`` returns.
    """

    __slots__ = ("indptr", "indices", "data")

    def __init__(self, host, cuda):
        self._host = host
        self.indptr = cuda.to_device(host.indptr)
        self.indices = cuda.to_device(host._kidx)
        self.data = cuda.to_device(host.data)

    nnz = property(lambda self: self._host.nnz)
    density = property(lambda self: self._host.density)


def _pack_int8(q: np.ndarray, group_size) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Int8 codes (N, K) as int32 words (N, G * gw) in the group-padded layout of ``int8_cuda``.

    Returns ``(words, kmap, gs, gw)``: the words, the input feature of each code position of a row (-1 on
    padding), the group length and the words per (zero-padded) group.
    """
    n, k = q.shape
    gs = max(k, 1) if group_size is None else min(group_size, max(k, 1))
    groups = -(-k // gs) if k else 1
    gw = -(-gs // 4)
    padded = np.zeros((n, groups, 4 * gw), dtype=np.int8)
    full = np.zeros((n, groups * gs), dtype=np.int8)
    full[:, :k] = q
    padded[:, :, :gs] = full.reshape(n, groups, gs)
    words = padded.reshape(n, groups * 4 * gw).view(np.dtype("<i4")).astype(np.int32)
    pos = np.arange(4 * gw)
    kmap = (np.arange(groups)[:, None] * gs + pos[None, :]).astype(np.int32)
    kmap[(pos[None, :] >= gs) | (kmap >= k)] = -1
    return words, kmap.ravel(), gs, gw


def _per_group(a, n: int, groups: int, dtype) -> np.ndarray:
    """Per-row (N,) or per-group (N, G) parameters as a C-contiguous (N, groups) array; zeros in any group
    the host format has no entry for (K = 0 has one padded group and no scales)."""
    out = np.zeros((n, groups), dtype=dtype)
    a2 = a.reshape(n, 1) if a.ndim == 1 else a
    out[:, : a2.shape[-1]] = a2
    return out


class DeviceInt8Weight(_DeviceWeight):
    """An :class:`~numaccel.Int8Weight` resident on the GPU; made by ``Int8Weight.to_device()``.

    The codes are stored as packed int32 words, each group of ``group_size`` features padded to whole words
    (see ``numaccel._kernels.int8_cuda``), with float32 scales and int32 zero points of shape (N, G).
    A single group per row too long for W8A8's exact int32 sums (per-channel scales and K above 66 311 with
    zero points, 132 104 without) is stored as equal chunks of a multiple of 4 features, each with the row's
    scale and zero point: the same codes (a few more padding words at the end), the same weight-only
    results.
    ``shape``, ``group_size`` and ``nbytes`` are those of the host weight, which ``to_host()`` returns.
    """

    __slots__ = ("qwords", "kmap", "scales", "zero_points", "gs", "gw")

    def __init__(self, host, cuda):
        n, _ = host.shape
        scales, zps, group_size = host.scales, host.zero_points, host.group_size
        w8 = host._w8a8_groups()
        if w8 is not None and w8[0] != host._gs:  # one group per row, split into chunks
            group_size, scales, zps = w8[0], w8[1], (None if zps is None else w8[2])
        words, kmap, gs, gw = _pack_int8(host.qweight, group_size)
        groups = words.shape[1] // gw
        self._host = host
        self.gs = gs
        self.gw = gw
        self.qwords = cuda.to_device(words)
        self.kmap = cuda.to_device(kmap)
        self.scales = cuda.to_device(_per_group(scales, n, groups, np.float32))
        zps = np.zeros((n, groups), np.int32) if zps is None else _per_group(zps, n, groups, np.int32)
        self.zero_points = cuda.to_device(zps)

    group_size = property(lambda self: self._host.group_size)


def _device_weight(weight, cuda):
    """The device copy of ``weight``, made once and kept in the host weight's ``_device`` slot."""
    if getattr(weight, "on_device", False):
        return weight
    cached = getattr(weight, "_device", None)
    if cached is not None:
        return cached
    if hasattr(weight, "indptr") and hasattr(weight, "_kidx"):
        cached = DeviceCSRWeight(weight, cuda)
    elif hasattr(weight, "qweight") and hasattr(weight, "scales"):
        cached = DeviceInt8Weight(weight, cuda)
    elif isinstance(weight, np.ndarray):
        raise TypeError(
            "device='cuda' runs CSRWeight and Int8Weight weights, got a dense numpy.ndarray; compress it "
            "with numaccel.prune or numaccel.quantize, or use CuPy/PyTorch for dense layers"
        )
    else:
        raise TypeError(
            f"weight must be a CSRWeight or Int8Weight for device='cuda', got {type(weight).__name__}"
        )
    try:
        weight._device = cached
    except AttributeError:
        pass
    return cached


def to_device(weight):
    """Return ``weight`` (a CSRWeight or Int8Weight) resident on the GPU, copied there once.

    Parameters
    ----------
    weight : CSRWeight or Int8Weight

    Returns
    -------
    DeviceCSRWeight or DeviceInt8Weight
        ``on_device`` is True; ``shape`` and the format's metadata are the host weight's. Pass it to
        :func:`numaccel.linear` (or :func:`numaccel.spmm` with ``device="cuda"``).

    Raises
    ------
    RuntimeError
        CUDA cannot run here (no numba-cuda, no driver, no NVVM or no GPU); the message says which.
    TypeError
        ``weight`` is not a CSRWeight or Int8Weight.

    Notes
    -----
    The device copy is cached on the host weight (weights are immutable), so calling ``to_device`` again,
    or ``linear(x, weight, device="cuda")`` with the host weight, does not copy it again.

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
    return _device_weight(weight, _require_cuda())


# --------------------------------------------------------------------------------------------------
# arguments
def _as_device_array(a, cuda):
    """``a`` as a Numba device array when it lives on the device, else None."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    return None


def _check_device_operand(a, name: str, ndims, last: int, what: str):
    if a.dtype != _F32:
        raise TypeError(f"{name} must be float32 for device='cuda', got {a.dtype}; convert it on the device")
    if a.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got {a.ndim}-D with shape {tuple(a.shape)}")
    if a.shape[0 if what == "rows" else a.ndim - 1] != last:  # device shapes refuse negative indices
        raise ValueError(f"{name} must have {last} {what}, got shape {tuple(a.shape)}")


def _operand(a, name: str, size: int, what: str, cuda):
    """Validate activations ``a`` and return ``(device_array, on_device)``.

    ``what`` is ``"features"`` (the last axis must have ``size`` entries, as ``x`` in ``linear``) or
    ``"rows"`` (the first axis, as ``B`` in ``spmm``).
    """
    dev = _as_device_array(a, cuda)
    if dev is not None:
        _check_device_operand(dev, name, (1, 2), size, what)
        return dev, True
    a = as_float_array(a, name)
    if a.dtype != _F32:
        raise TypeError(
            f"{name} must be float32 for device='cuda', got {a.dtype}; use {name}.astype(np.float32)"
        )
    if a.shape[0 if what == "rows" else -1] != size:
        raise ValueError(f"{name} must have {size} {what}, got shape {a.shape}")
    return cuda.to_device(np.ascontiguousarray(a)), False


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
    bias = as_float_array(bias, "bias", ndims=(1,))
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},) (out_features), got {bias.shape}")
    return cuda.to_device(bias.astype(np.float32)), 1


def _output(out, shape: tuple, on_device: bool, cuda):
    """The device array the kernels write, after checking a caller's ``out``."""
    if not on_device:  # copied back to the host before the call returns
        if out is not None:
            check_out(out, shape, _F32)
        return _scratch("out", shape, np.float32, cuda)
    if out is None:
        return cuda.device_array(shape, dtype=np.float32)
    dev = _as_device_array(out, cuda)
    if dev is None:
        raise TypeError(
            f"out must be a device array when the activations are on the device, got {type(out).__name__}"
        )
    if dev.dtype != _F32:
        raise TypeError(f"out must have dtype float32, got {dev.dtype}")
    if tuple(dev.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(dev.shape)}")
    if not dev.is_c_contiguous():
        raise ValueError(
            f"out must be C-contiguous; allocate it with cuda.device_array({tuple(shape)}, np.float32)"
        )
    return dev


def _finish(dout, out, on_device: bool):
    if on_device:
        return dout
    if out is None:
        return dout.copy_to_host()
    dout.copy_to_host(out)
    return out


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


# --------------------------------------------------------------------------------------------------
# launchers
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
    if x.ndim == 1 or x.shape[0] == 1:
        x1 = x if x.ndim == 1 else x[0]
        o1 = out if out.ndim == 1 else out[0]
        _launch_spmv_csr_cuda(w, x1, bias, has_bias, o1)
        return
    nb, k = x.shape
    n = out.shape[1]
    # The batched kernel streams columns of a (K, B) operand into an (N, B) result: transpose in and out.
    xt = _scratch("xt", (k, nb), np.float32, cuda)
    if k:  # with K = 0 the weight has no nonzeros and xt is never read
        _launch_transpose_cuda(x, xt)
    yt = _scratch("yt", (n, nb), np.float32, cuda)
    _launch_spmm_csr_cuda(w, xt, bias, has_bias, yt)
    _launch_transpose_cuda(yt, out)


def _linear_int8(w: DeviceInt8Weight, x, bias, has_bias, out, activations, cuda) -> None:
    _, int8_cuda = _kernels()
    n = w.shape[0]
    if activations is None and (x.ndim == 1 or x.shape[0] == 1):
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
    if activations is None:
        int8_cuda._gemm_int8_cuda[grid, threads](w.qwords, w.scales, w.zero_points, w.kmap, w.gw, x2, bias,
                                                 has_bias, out2)
        return
    w.to_host()._w8a8_checked()  # several groups per row too long for exact int32 sums: ValueError
    groups = w.scales.shape[1]
    qx = _scratch("qx", (nb, w.qwords.shape[1]), np.int32, cuda)
    sx = _scratch("sx", (nb,), np.float64, cuda)
    qsum = _scratch("qsum", (nb, groups), np.int32, cuda)
    int8_cuda._quantize_rows_cuda[nb, int8_cuda.QUANT_THREADS](x2, w.kmap, w.gs, qx, sx, qsum)
    int8_cuda._w8a8_int8_cuda[grid, threads](w.qwords, w.scales, w.zero_points, w.gw, qx, sx, qsum, bias,
                                             has_bias, out2)


# --------------------------------------------------------------------------------------------------
# entry points (called by numaccel.linear and numaccel.spmm)
def linear(x, weight, bias=None, *, out=None, activations=None):
    """``numaccel.linear`` on the GPU: ``y = x @ W.T + bias`` in float32.

    ``weight`` is a CSRWeight or Int8Weight (copied to the device once and cached) or its device copy.
    NumPy ``x`` gives a NumPy result (``out`` a NumPy array); a device ``x`` gives a device result
    (``out`` a device array). See :func:`numaccel.linear` for the parameters.
    """
    cuda = _require_cuda()
    w = _device_weight(weight, cuda)
    is_csr = isinstance(w, DeviceCSRWeight)
    if activations not in (None, "int8") or (activations is not None and is_csr):
        fmt = "a CSRWeight" if is_csr else "an Int8Weight"
        allowed = "None" if is_csr else "None or 'int8'"
        raise ValueError(f"activations must be {allowed} for {fmt}, got {activations!r}")
    n, k = w.shape
    dx, on_device = _operand(x, "x", k, "features", cuda)
    dbias, has_bias = _bias(bias, n, cuda)
    shape = (n,) if dx.ndim == 1 else (dx.shape[0], n)
    dout = _output(out, shape, on_device, cuda)
    if dout.size:
        if is_csr:
            _linear_csr(w, dx, dbias, has_bias, dout, cuda)
        else:
            _linear_int8(w, dx, dbias, has_bias, dout, activations, cuda)
    return _finish(dout, out, on_device)


def spmm(A, B, *, out=None):
    """``numaccel.spmm`` on the GPU: ``C = A @ B`` in float32 for a CSRWeight (or its device copy) ``A``.

    NumPy ``B`` gives a NumPy result; a device ``B`` gives a device result. See :func:`numaccel.spmm`.
    """
    cuda = _require_cuda()
    w = _device_weight(A, cuda)
    if not isinstance(w, DeviceCSRWeight):
        raise TypeError(f"A must be a CSRWeight or scipy.sparse matrix, got {type(A).__name__}")
    m, k = w.shape
    db, on_device = _operand(B, "B", k, "rows", cuda)
    dbias, _ = _bias(None, m, cuda)
    shape = (m,) + tuple(db.shape[1:])
    dout = _output(out, shape, on_device, cuda)
    if dout.size:
        if db.ndim == 1:
            _launch_spmv_csr_cuda(w, db, dbias, 0, dout)
        else:
            _launch_spmm_csr_cuda(w, db, dbias, 0, dout)
    return _finish(dout, out, on_device)
