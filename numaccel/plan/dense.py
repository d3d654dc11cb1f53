"""Dense weights: on Numba's threads, in numaccel's GEMV kernel or in single-threaded BLAS calls.

A model mixing dense and numaccel layers must not alternate between BLAS's thread pool and Numba's
(docs/performance.md, "Dense layers beside numaccel layers"), so dense layers run on the Numba threads that
the CSR and int8 kernels use. A float32 product of at most ``_config.DENSE_GEMV_MAX_B`` activation rows is
memory-bound; where AVX-512 is available it runs in numaccel's GEMV kernel (``numaccel._kernels.dense_cpu``).
Larger float32 and float64 products run in NumPy's own OpenBLAS, one single-threaded call per Numba thread
on a block of output features (``numaccel._kernels.dense_blas``), where that library is NumPy's wheel
build; elsewhere (another BLAS, ``_config.DENSE_SPLIT_BLAS`` False) in ``numpy.matmul``.
"""

from __future__ import annotations

import numpy as np

from .. import _config
from . import wisdom

__all__ = ["linear", "uses_gemv", "uses_split_blas", "gemv_possible", "gemv_default"]


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


def uses_split_blas(w: np.ndarray, x: np.ndarray) -> bool:
    """Whether ``linear`` runs this product in single-threaded OpenBLAS calls on Numba's threads.

    That needs ``_config.DENSE_SPLIT_BLAS``, NumPy's OpenBLAS wheel build in this process (with 64-bit
    integers and its pthreads server), a compiling JIT, float32 or float64 C-contiguous 2-D operands of one
    dtype and no empty dimension, and a product numaccel's GEMV kernel does not take.
    """
    return _split_blas_possible(w, x) and not uses_gemv(w, x)


def _split_blas_possible(w: np.ndarray, x: np.ndarray) -> bool:
    if not (_config.DENSE_SPLIT_BLAS and x.ndim == 2 and w.ndim == 2 and x.dtype == w.dtype
            and w.dtype in (_F32, _F64) and x.shape[0] > 0 and w.shape[0] > 0 and w.shape[1] > 0
            and w.flags.c_contiguous and x.flags.c_contiguous):
        return False
    from .._kernels import dense_blas

    return dense_blas.available()


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_kernels = None


def linear(w: np.ndarray, x: np.ndarray, out: np.ndarray, quant) -> None:
    """``out = x @ w.T`` for validated C-contiguous ``x`` (B, K) and ``out`` (B, N) of the result dtype."""
    global _kernels
    if quant is not None:
        raise ValueError(f"activation_quant={quant!r} needs an Int8Weight; dense weights use None")
    if not uses_gemv(w, x):
        if out.dtype == x.dtype and out.flags.c_contiguous and _split_blas_possible(w, x):
            from .._kernels import dense_blas

            n, k = w.shape
            serial = n * k * x.shape[0] <= _config.DENSE_BLAS_SERIAL_WORK
            with _config.kernel_guard():
                dense_blas.gemm(x, w, out, 1 if serial else _config.num_threads())
            return
        np.matmul(x, w.T, out=out)
        return
    if _kernels is None:
        from .._kernels import dense_cpu as _kernels
    n, k = w.shape
    if n * k * x.shape[0] <= _config.DENSE_SERIAL_WORK:
        _kernels._gemv_rows(w, x, 0, n, out)
        return
    chunks = min(n, _config.CSR_CHUNKS_PER_THREAD * _config.num_threads())
    with _config.kernel_guard():
        _kernels._gemv_parallel(w, x, chunks, out)
