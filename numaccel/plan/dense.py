"""Dense weights: BLAS through ``numpy.matmul``, or Numba's own threads for a few float32 rows.

A float32 product of at most ``_config.DENSE_GEMV_MAX_B`` activation rows is memory-bound; where AVX-512
is available it runs in numaccel's GEMV kernel (``numaccel._kernels.dense_cpu``), on the same thread pool
as the CSR and int8 kernels, so that a model mixing dense and numaccel layers does not alternate between
BLAS's thread pool and Numba's (docs/performance.md, "Dense layers beside numaccel layers"). Everything
else goes to BLAS.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _config
from . import wisdom

__all__ = ["linear", "uses_gemv", "gemv_possible", "gemv_default"]


def gemv_possible(w: np.ndarray, x: np.ndarray) -> bool:
    """Return whether numaccel's GEMV kernel can run this product.

    That needs float32, C-contiguous operands, AVX-512 and at most ``_config.DENSE_GEMV_TUNE_MAX_B`` rows.
    """
    b = x.shape[0] if x.ndim == 2 else 0
    return (_config.DENSE_USE_GEMV and 0 < b <= _config.DENSE_GEMV_TUNE_MAX_B and w.dtype == _F32
            and x.dtype == _F32 and w.ndim == 2 and w.shape[1] > 0 and w.flags.c_contiguous
            and x.flags.c_contiguous)


def uses_gemv(w: np.ndarray, x: np.ndarray) -> bool:
    """Whether ``linear`` runs numaccel's GEMV kernel (not BLAS) for this weight and these rows.

    By default for at most ``_config.DENSE_GEMV_MAX_B`` rows and ``_config.DENSE_GEMV_MIN_WORK``
    multiply-adds; the wisdom (choice ``dense-gemv``, :mod:`numaccel.plan.wisdom`) may say otherwise for a
    shape and batch it measured.
    """
    if not gemv_possible(w, x):
        return False
    b = x.shape[0]
    return wisdom.choose("dense-gemv", lambda: wisdom.case_key("dense", w.shape, b), gemv_default(w, b)) == "gemv"


def gemv_default(w: np.ndarray, batch: int) -> str:
    """Return the host default of choice ``dense-gemv``.

    ``"gemv"`` for at most ``_config.DENSE_GEMV_MAX_B`` rows and ``_config.DENSE_GEMV_MIN_WORK``
    multiply-adds, else ``"blas"``.
    """
    small = batch <= _config.DENSE_GEMV_MAX_B and w.size * batch >= _config.DENSE_GEMV_MIN_WORK
    return "gemv" if small else "blas"


_F32 = np.dtype(np.float32)
_kernels = None


def linear(w: np.ndarray, x: np.ndarray, out: np.ndarray, quant) -> None:
    """``out = x @ w.T`` for validated C-contiguous ``x`` (B, K) and ``out`` (B, N) of the result dtype."""
    global _kernels
    if quant is not None:
        raise ValueError(f"activation_quant={quant!r} needs an Int8Weight; dense weights use None")
    if not uses_gemv(w, x):
        np.matmul(x, w.T, out=out)
        return
    if _kernels is None:
        from .._kernels import dense_cpu as _kernels
    n, k = w.shape
    if n * k * x.shape[0] <= _config.DENSE_SERIAL_WORK:
        _kernels._gemv_rows(w, x, 0, n, out)
        return
    chunks = min(n, _config.CSR_CHUNKS_PER_THREAD * numba.get_num_threads())
    with _config.kernel_guard():
        _kernels._gemv_parallel(w, x, chunks, out)
