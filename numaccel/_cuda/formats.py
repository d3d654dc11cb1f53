"""Device-resident weights: the GPU copies of :class:`~numaccel.formats.CSRWeight`,
:class:`~numaccel.formats.Int8Weight` and :class:`~numaccel.formats.csr_int8.CSRInt8Weight`, in the layouts
of ``numaccel._kernels.csr_cuda`` / ``int8_cuda`` / ``csr_int8_cuda``.

A device weight is a registered :class:`~numaccel.formats.WeightFormat` (``"cuda-csr"``, ``"cuda-int8"``,
``"cuda-csr-int8"``, registered by ``numaccel._cuda``) whose data lives on the GPU: its shape and metadata
are those of the host weight it was copied from, ``to_dense`` and ``to_arrays`` go through the host weight,
and it is neither split into row blocks nor rebuilt from saved arrays (save or shard the host weight;
``to_host()`` gives it).

Device copies made by :func:`device_copy` are cached per host weight in a ``weakref.WeakKeyDictionary``:
a copy refers to its host weight weakly (so the cache never keeps a host weight alive) and holds the host
weight's own read-only arrays, from which ``to_host()`` rebuilds the host weight if it is gone.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from .. import formats
from ..formats.csr import CSRWeight
from ..formats.csr_int8 import CSRInt8Weight, group_pointer
from ..formats.int8 import Int8Weight

__all__ = ["DeviceCSRInt8Weight", "DeviceCSRWeight", "DeviceInt8Weight", "device_copy"]

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # host weight -> its device copy
_cache_lock = threading.Lock()


class _DeviceWeight(formats.WeightFormat):
    """What the device copies share: ``on_device``, ``shape``, ``nbytes``, ``to_host()`` and the refusals."""

    on_device = True
    __slots__ = ("_host_ref", "_host_kept", "_saved", "_shape", "_nbytes")

    def _keep_host(self, host) -> None:
        self._host_ref = weakref.ref(host)
        self._host_kept = None
        self._saved = formats.to_arrays(host)  # (name, read-only arrays, params): the host's own, no copy
        self._shape = tuple(host.shape)
        self._nbytes = int(host.nbytes)

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, K)``, that of the host weight."""
        return self._shape

    @property
    def nbytes(self) -> int:
        """Bytes of the host weight's arrays (the device layout may pad them)."""
        return self._nbytes

    def to_host(self):
        """The host weight this copy was made from (rebuilt from its arrays, once, if it no longer exists)."""
        host = self._host_kept if self._host_kept is not None else self._host_ref()
        if host is None:
            host = self._host_kept = formats.from_arrays(*self._saved)
        return host

    def to_device(self):
        """This weight itself (already on the device)."""
        return self

    def to_dense(self) -> np.ndarray:
        """The weight as a new dense float32 ``(N, K)`` host array (the host weight's ``to_dense``)."""
        return self.to_host().to_dense()

    def to_arrays(self):
        """The host weight's arrays and parameters (save the host weight: ``to_host()``)."""
        _, arrays, params = self._saved
        return dict(arrays), dict(params)

    def row_block(self, start: int, stop: int):
        raise TypeError(
            f"a {type(self).__name__} is not split into row blocks; shard the host weight "
            f"(weight.to_host()) and move the shards to the device"
        )

    @classmethod
    def from_arrays(cls, arrays, params):
        raise TypeError(
            f"a {cls.__name__} is not rebuilt from saved arrays; load the host weight and call .to_device()"
        )

    def result_dtype(self, x_dtype) -> np.dtype:
        """float32: the GPU computes in float32 only (other activations are refused)."""
        return np.dtype(np.float32)

    def __reduce__(self):
        return device_copy_of, (self.to_host(),)

    def __repr__(self) -> str:
        return f"{self.to_host()!r}.to_device()"


class _DeviceRows(_DeviceWeight):
    """A device copy of a compressed-rows format: ``nnz`` and ``density`` are the host weight's."""

    __slots__ = ("_nnz", "_density")

    def _keep_rows(self, host) -> None:
        self._keep_host(host)
        self._nnz = int(host.nnz)
        self._density = float(host.density)

    @property
    def nnz(self) -> int:
        """Stored entries."""
        return self._nnz

    @property
    def density(self) -> float:
        """``nnz / (N * K)``, that of the host weight."""
        return self._density


class DeviceCSRWeight(_DeviceRows):
    """A :class:`~numaccel.CSRWeight` resident on the GPU; made by ``CSRWeight.to_device()``.

    Holds device copies of ``indptr``, ``indices`` (the stored uint16 or int32 column ids) and ``data``;
    ``shape``, ``nnz``, ``density`` and ``nbytes`` are those of the host weight, which ``to_host()``
    returns. ``DeviceCSRWeight(host, cuda)`` makes a new copy (``device_copy`` makes and caches one).
    """

    __slots__ = ("indptr", "indices", "data")

    def __init__(self, host: CSRWeight, cuda):
        self._keep_rows(host)
        self.indptr = cuda.to_device(host.indptr)
        self.indices = cuda.to_device(host.indices)
        self.data = cuda.to_device(host.data)


class DeviceCSRInt8Weight(_DeviceRows):
    """A :class:`~numaccel.formats.csr_int8.CSRInt8Weight` resident on the GPU; made by
    ``CSRInt8Weight.to_device()``.

    Holds device copies of ``indptr``, ``indices`` (the stored uint16 or int32 column ids), ``qdata``
    (int8 codes), ``scales`` (float32, (N,) or (G,)) and ``gptr``, the int64 scale pointer (N + 1,) of
    :func:`~numaccel.formats.csr_int8.group_pointer` (``arange(N + 1)`` for per-row scales); ``gs`` is
    the stored values per scale that the kernels of ``numaccel._kernels.csr_int8_cuda`` take
    (``group_size``, or ``max(nnz, 1)`` for per-row scales: a row is one group). ``shape``, ``nnz``,
    ``density``, ``group_size`` and ``nbytes`` are those of the host weight, which ``to_host()`` returns.
    ``DeviceCSRInt8Weight(host, cuda)`` makes a new copy (``device_copy`` makes and caches one).
    """

    __slots__ = ("indptr", "indices", "qdata", "scales", "gptr", "gs", "_group_size")

    def __init__(self, host: CSRInt8Weight, cuda):
        self._keep_rows(host)
        self._group_size = host.group_size
        self.gs = max(self._nnz, 1) if host.group_size is None else int(host.group_size)
        self.indptr = cuda.to_device(host.indptr)
        self.indices = cuda.to_device(host.indices)
        self.qdata = cuda.to_device(host.qdata)
        self.scales = cuda.to_device(host.scales)
        self.gptr = cuda.to_device(group_pointer(host.indptr, host.group_size))

    @property
    def group_size(self):
        """The host weight's stored values per scale within a row (None: one scale per row)."""
        return self._group_size


def _pack_int8(q: np.ndarray, group_size) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Int8 codes (N, K) as int32 words (N, G * gw) in the group-padded layout of ``int8_cuda``.

    Returns ``(words, kmap, gs, gw)``: the words, the input feature of each code position of a row (-1 on
    padding), the group length and the words per (zero-padded) group.
    """
    n, k = q.shape
    gs = _group_length(k, group_size)
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


def _group_length(k: int, group_size) -> int:
    """Features per group: the row (at least 1) for per-channel scales, a group longer than the row is the row."""
    return max(k, 1) if group_size is None else min(group_size, max(k, 1))


def _per_group(a, n: int, groups: int, dtype) -> np.ndarray:
    """Per-row (N,) or per-group (N, G) parameters as a C-contiguous (N, groups) array; zeros in any group
    the host format has no entry for (K = 0 has one padded group and no scales)."""
    out = np.zeros((n, groups), dtype=dtype)
    a2 = a.reshape(n, 1) if a.ndim == 1 else a
    out[:, : a2.shape[-1]] = a2
    return out


def _w8a8_groups(host: Int8Weight):
    """``numaccel.plan.int8.w8a8_groups(host)``: ``(gs, scales (N, G), zero points (N, G))``; ValueError
    when W8A8 cannot sum the weight's groups exactly."""
    from ..plan.int8 import w8a8_groups

    return w8a8_groups(host)


class DeviceInt8Weight(_DeviceWeight):
    """An :class:`~numaccel.Int8Weight` resident on the GPU; made by ``Int8Weight.to_device()``.

    The codes are stored as packed int32 words, each group of ``group_size`` features padded to whole words
    (see ``numaccel._kernels.int8_cuda``), with float32 scales and int32 zero points of shape (N, G).
    A single group per row too long for W8A8's exact int32 sums (per-channel scales and K above 66 311 with
    zero points, 132 104 without) is stored as equal chunks of a multiple of 4 features, each with the row's
    scale and zero point: the same codes (a few more padding words at the end), the same weight-only
    results. Several groups per row that are too long are kept as they are; W8A8 then refuses the weight
    (``ValueError``, the message of ``numaccel.plan.int8.w8a8_groups``), weight-only calls run.
    ``shape``, ``group_size`` and ``nbytes`` are those of the host weight, which ``to_host()`` returns.
    ``DeviceInt8Weight(host, cuda)`` makes a new copy (``device_copy`` makes and caches one).
    """

    __slots__ = ("qwords", "kmap", "scales", "zero_points", "gs", "gw", "_group_size", "_w8a8_error")

    def __init__(self, host: Int8Weight, cuda):
        self._keep_host(host)
        n, k = host.shape
        scales, zps, group_size = host.scales, host.zero_points, host.group_size
        self._group_size = group_size
        self._w8a8_error = None  # the reason W8A8 cannot run this weight, or None
        try:
            gs8, s8, z8 = _w8a8_groups(host)
        except ValueError as exc:
            self._w8a8_error = str(exc)
        else:
            if gs8 != _group_length(k, group_size):  # one group per row, split into chunks
                group_size, scales, zps = gs8, s8, (None if zps is None or z8 is None else z8)
        words, kmap, gs, gw = _pack_int8(host.qweight, group_size)
        groups = words.shape[1] // gw
        self.gs = gs
        self.gw = gw
        self.qwords = cuda.to_device(words)
        self.kmap = cuda.to_device(kmap)
        self.scales = cuda.to_device(_per_group(scales, n, groups, np.float32))
        zps = np.zeros((n, groups), np.int32) if zps is None else _per_group(zps, n, groups, np.int32)
        self.zero_points = cuda.to_device(zps)

    @property
    def group_size(self):
        """The host weight's group length along the input features (None: per-channel scales)."""
        return self._group_size


def device_copy(weight, cuda):
    """The device copy of host ``weight`` (a CSRWeight, Int8Weight or CSRInt8Weight), made once and cached;
    a device weight is returned as it is."""
    if isinstance(weight, _DeviceWeight):
        return weight
    if isinstance(weight, CSRWeight):
        make = DeviceCSRWeight
    elif isinstance(weight, Int8Weight):
        make = DeviceInt8Weight
    elif isinstance(weight, CSRInt8Weight):
        make = DeviceCSRInt8Weight
    elif isinstance(weight, np.ndarray):
        raise TypeError(
            "device='cuda' runs CSRWeight, Int8Weight and CSRInt8Weight weights, got a dense numpy.ndarray; "
            "compress it with numaccel.prune or numaccel.quantize, or use CuPy/PyTorch for dense layers"
        )
    else:
        raise TypeError(
            f"weight must be a CSRWeight, Int8Weight or CSRInt8Weight for device='cuda', got "
            f"{type(weight).__name__}"
        )
    with _cache_lock:  # one copy per host weight, even when threads ask at once
        cached = _cache.get(weight)
        if cached is None:
            cached = _cache[weight] = make(weight, cuda)
    return cached


def device_copy_of(host):
    """Unpickling a device weight: the device copy of its host weight (``RuntimeError`` without CUDA)."""
    from .runtime import _require_cuda

    return device_copy(host, _require_cuda())
