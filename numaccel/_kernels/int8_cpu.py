"""Int8-weight kernels for the CPU: weight-only (fused dequantization) and W8A8.

Contract shared by every kernel here (inputs validated by the caller):
``q`` int8 (N, K) C-contiguous codes; ``scales`` float32 (N, G) and ``zps`` int32 (N, G), one entry per
group of ``gs`` consecutive input features (the last group of a row may be shorter; G = 1 and gs = K for
per-channel scales); activations float32/float64 (B, K) C-contiguous; ``out`` (B, N) C-contiguous of the
activations' dtype, every element written. Each ``prange`` iteration owns whole output columns (weight rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import FASTMATH


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _qmm_int8_simple(q, scales, zps, gs, x, xsum, out):
    """``out[b, n] = sum_g scales[n, g] * (x[b, g] . q[n, g] - zps[n, g] * xsum[b, g])``.

    ``xsum`` (B, G) holds the sums of ``x`` over each group (used only for the zero points).
    """
    N, K = q.shape
    B = x.shape[0]
    G = scales.shape[1]
    zero = x.dtype.type(0)
    for n in prange(N):
        qn = q[n]
        for b in range(B):
            xb = x[b]
            acc = zero
            for g in range(G):
                k0 = g * gs
                k1 = min(k0 + gs, K)
                d = zero
                for k in range(k0, k1):
                    d += xb[k] * qn[k]
                acc += scales[n, g] * (d - zps[n, g] * xsum[b, g])
            out[b, n] = acc


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _quantize_rows_int8(x, qx, sx):
    """Symmetric per-row quantization of activations: ``sx[b] = max|x[b]| / 127``,
    ``qx[b] = clip(rint(x[b] / sx[b]), -127, 127)`` (zeros for an all-zero row); x (B, K), qx int8 (B, K)."""
    B, K = x.shape
    for b in prange(B):
        xb = x[b]
        amax = 0.0
        for k in range(K):
            v = abs(np.float64(xb[k]))
            if v > amax:
                amax = v
        s = amax / 127.0
        sx[b] = s
        for k in range(K):
            v = np.rint(np.float64(xb[k]) / s) if s > 0 else 0.0
            v = min(max(v, -127.0), 127.0)
            qx[b, k] = np.int8(v)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _w8a8_simple(q, scales, zps, gs, qx, sx, out):
    """``out[b, n] = sx[b] * sum_g scales[n, g] * (qx[b, g] . q[n, g] - zps[n, g] * sum(qx[b, g]))``,
    the dot products exact in int32."""
    N, K = q.shape
    B = qx.shape[0]
    G = scales.shape[1]
    for n in prange(N):
        qn = q[n]
        for b in range(B):
            xb = qx[b]
            acc = 0.0
            for g in range(G):
                k0 = g * gs
                k1 = min(k0 + gs, K)
                d = np.int32(0)
                t = np.int32(0)
                for k in range(k0, k1):
                    d = np.int32(d + np.int32(xb[k]) * np.int32(qn[k]))
                    t = np.int32(t + np.int32(xb[k]))
                acc += np.float64(scales[n, g]) * np.float64(np.int32(d - zps[n, g] * t))
            out[b, n] = acc * sx[b]
