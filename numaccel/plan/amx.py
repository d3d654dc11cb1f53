"""Intel AMX for W8A8: whether this process may use it, the packed weights, and the call.

The int8 planner, :mod:`numaccel.plan.int8`, decides when.

AMX is used only when all of these hold, checked once per process (a forked child inherits both the
permission and this module's verdict; an exec'd one, such as a Dask worker, starts afresh and asks again):

* Numba compiles for this host's CPU (not ``NUMBA_CPU_NAME=generic`` or a feature list without AMX, as
  portable caches use) and the JIT is enabled;
* the CPU has ``amx_tile`` and ``amx_int8`` (LLVM's host feature query);
* Linux grants the process the tile data permission (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``).
  A refusal leaves W8A8 on the AVX-512 VNNI path, with one warning.

So an AMX kernel is never compiled, loaded from Numba's cache or run on a host without AMX: no SIGILL.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import warnings

import numpy as np

from .. import _config
from . import wisdom
from ._buffers import aligned_empty as _aligned_empty
from ._cache import PerWeight

_SYS_ARCH_PRCTL = 158  # x86-64
_ARCH_GET_XCOMP_PERM = 0x1022
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18

_lock = threading.Lock()
_verdict: bool | None = None


def compiles_for_amx() -> bool:
    """Whether the code Numba generates here may use AMX int8 instructions (``_config.cpu_features``)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    return {"amx-int8", "amx-tile"} <= _config.cpu_features()


def _request_permission() -> str | None:
    """Ask Linux for the tile data permission; None when granted, else the reason."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(_ARCH_REQ_XCOMP_PERM),
                          ctypes.c_long(_XFEATURE_XTILEDATA))
        if rc != 0:
            return f"arch_prctl(ARCH_REQ_XCOMP_PERM) failed: {os.strerror(ctypes.get_errno())}"
        bits = ctypes.c_uint64(0)
        rc = libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(_ARCH_GET_XCOMP_PERM), ctypes.byref(bits))
        if rc != 0 or not bits.value >> _XFEATURE_XTILEDATA & 1:
            return "arch_prctl(ARCH_GET_XCOMP_PERM) does not list the tile data"
    except (OSError, AttributeError) as exc:
        return f"arch_prctl is not reachable: {exc}"
    return None


def usable() -> bool:
    """Return True when this process may run the AMX kernels (see the module docstring); decided once."""
    global _verdict
    if _verdict is None:
        with _lock:
            if _verdict is None:
                verdict = compiles_for_amx()
                if verdict:
                    why = _request_permission()
                    if why is not None:
                        warnings.warn(f"numaccel: AMX is present but not usable ({why}); W8A8 runs on AVX-512 VNNI",
                                      RuntimeWarning, stacklevel=3)
                        verdict = False
                _verdict = verdict
    return _verdict


def possible(weight) -> bool:
    """Return whether the AMX kernel can run W8A8 on ``weight`` here.

    That needs AMX usable, ``_config.INT8_USE_AMX`` on, and the groups (when any) of a multiple of 64
    features and at most 131072.
    """
    if not _config.INT8_USE_AMX:
        return False
    gs = weight.group_size
    if gs is not None and (gs % 64 or gs // 64 > _max_seg_steps()):
        return False
    return usable()


def eligible(weight, batch: int) -> bool:
    """Whether W8A8 ``linear`` on ``weight`` with ``batch`` activation rows runs on AMX here.

    It does when :func:`possible` and ``batch >= _config.AMX_MIN_BATCH``, unless the wisdom (choice
    ``int8-w8a8``, :mod:`numaccel.plan.wisdom`) measured the other variant faster for this shape and batch.
    """
    default = default_variant(batch) if possible(weight) else "vnni"
    variant = wisdom.choose("int8-w8a8", lambda: wisdom.case_key("int8", weight.shape, batch), default,
                            lambda v: v == "vnni" or possible(weight))
    return variant == "amx"


def default_variant(batch: int) -> str:
    """Return the host default of choice ``int8-w8a8`` where AMX is possible.

    ``"amx"`` from ``_config.AMX_MIN_BATCH`` rows, ``"vnni"`` below.
    """
    return "amx" if batch >= _config.AMX_MIN_BATCH else "vnni"


def _max_seg_steps() -> int:
    from .._kernels.amx_x86 import MAX_SEG_STEPS

    return MAX_SEG_STEPS


class _Packed:
    """A weight's codes in AMX B-tile layout, with per-segment scales and zero points."""

    __slots__ = ("wp", "kt", "seg_t", "sT", "zT", "has_zp")

    def __init__(self, weight):
        n, k = weight.shape
        q = weight.qweight
        kt = max(1, -(-k // 64))
        nb = 2 * max(1, -(-n // 32))
        qp = np.zeros((16 * nb, 64 * kt), dtype=np.int8)
        qp[:n, :k] = q
        # [16 j + c, 64 t + 4 r + i] -> (j, t, r, c, i): one 16 x 64-byte B tile per (j, t)
        self.wp = _aligned_empty(qp.size)
        self.wp.reshape(nb, kt, 16, 16, 4)[...] = qp.reshape(nb, 16, kt, 16, 4).transpose(0, 2, 3, 1, 4)
        self.kt = kt
        gs = weight.group_size
        zps = weight.zero_points
        if gs is None:
            self.seg_t = min(kt, _max_seg_steps())
            nseg = -(-kt // self.seg_t)
            s = np.broadcast_to(weight.scales[None, :], (nseg, n))
            z = None if zps is None else np.broadcast_to(zps[None, :], (nseg, n))
        else:
            self.seg_t = gs // 64
            nseg = -(-k // gs)
            s = weight.scales.T
            z = None if zps is None else zps.T
        self.sT = np.zeros((nseg, 16 * nb), dtype=np.float32)
        self.sT[:, :n] = s
        self.zT = np.zeros((nseg, 16 * nb), dtype=np.int32)
        if z is not None:
            self.zT[:, :n] = z
        self.has_zp = bool(self.zT.any())


packed = PerWeight(_Packed)  # packed(weight): the packed copy, made once, kept while the weight lives


def linear_w8a8(weight, x: np.ndarray, out: np.ndarray) -> None:
    """``out = W8A8(x) @ weight.T`` on AMX for a validated ``x`` (B, K) and C-contiguous ``out`` (B, N)."""
    if not usable():  # the permission is asked for here at the latest: without it a tile op is SIGILL
        raise RuntimeError("AMX is not usable in this process")
    from .._kernels import amx_x86

    p = packed(weight)
    b, k = x.shape
    bp = 16 * -(-b // 16)
    nseg = p.sT.shape[0]
    qx = _aligned_empty((bp // 16, p.kt, 16, 64))
    sx = np.empty(bp, dtype=np.float32)
    qxsum = np.empty((nseg, bp), dtype=np.int32)
    x = np.ascontiguousarray(x)
    with _config.kernel_guard():
        amx_x86._quantize_rows_i8(x, 64 * p.seg_t, qx, sx, qxsum)
        amx_x86._w8a8_amx(p.wp, p.kt, p.seg_t, p.sT, p.zT, p.has_zp, qx.reshape(-1), sx, qxsum, out)
