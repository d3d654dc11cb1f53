"""Tunables shared by the kernels, and the thread-safety guard for Numba's threading layer.

Nothing here validates user input; it only holds constants and the lock that makes kernels safe to
call from several Python threads when Numba falls back to its non-thread-safe ``workqueue`` layer.
"""

from __future__ import annotations

import contextlib
import threading

# LLVM fast-math flags used by every CPU kernel. ``contract`` lets LLVM fuse a*b+c into an FMA;
# ``nnan`` and ``ninf`` are deliberately left out so NaN and inf propagate exactly as in NumPy, and
# ``reassoc`` is left out so reductions keep a fixed, reproducible order.
FASTMATH = {"contract"}

# Column indices are narrowed to uint16 when the number of input features fits.
NARROW_INDEX_MAX = 65536

# Thread chunks per thread for the CSR kernels (rows split into chunks of about equal nonzeros).
CSR_CHUNKS_PER_THREAD = 4
# Rows of a chunk processed together by the register-tile kernel while every slab of activations
# visits them. Measured here (1 thread, 4096 x 4096, 90 % sparse): keeping a slab in L2 for the whole
# chunk beat short row blocks (whose nonzeros would stay in L2 between slabs), so the default is large.
CSR_BLOCK_ROWS = 1 << 20
# Widest slab of activations (columns) the register-tile kernel uses: a slab is K * width * 4 bytes
# and should stay in L2 (1 MiB per core here) while a block of rows is computed against it; 32 columns
# (512 KiB for K = 4096) measured faster than 64 (1 MiB) and 16 at batches 64 and 256.
CSR_TILE_MAX_WIDTH = 32
# Weight rows whose output tiles the register-tile kernel buffers before storing them into a (P, M)
# output (``linear``): each output row then receives this many contiguous values per store pass.
# Measured here (4096 x 4096, 2 threads): 0.4-0.5x the time at 99 % sparsity and batches 64 and 256,
# 0.7-0.9x at 90-95 %; 8-column slabs store directly (the buffer only added time at batch 8).
CSR_STORE_ROWS = 16
# Accumulator sets of the register-tile kernel (a power of two): this many nonzeros in a row run as
# independent FMA chains. Measured here (4096 x 4096, 90 %, cold, 2 threads): 4 sets took 0.7-0.8x the
# time of 2 at batch 8 and about the same at batches 64 and 256.
CSR_TILE_ACC_SETS = 4
# How far ahead (in nonzeros) the register-tile kernel prefetches the weight values and column ids.
# Measured here (same setting): 1024-4096 ahead took 0.65-0.8x the time of none at batch 8 and
# 0.9-0.95x at batch 64; the hardware prefetcher alone left the weight stream waiting on memory.
CSR_PREFETCH_NNZ = 2048
# The kernels read the two constants above when they are compiled: after changing either, clear the
# Numba cache (``__pycache__/*.nbi``/``*.nbc`` of numaccel/_kernels) so that the change takes effect.
# Packed activations of CSR_SLAB_KEEP_MIN to CSR_SLAB_KEEP_BYTES bytes go to a buffer kept per Python
# thread and reused (2 MiB aligned); others are allocated per call. Measured here (4096 x 4096, cold,
# 2 threads): reuse took 0.68-0.85x the time at batches 64 and 256; below 256 KiB the buffer lookup
# cost more than the allocation it saves.
CSR_SLAB_KEEP_MIN = 256 << 10
CSR_SLAB_KEEP_BYTES = 32 << 20
# Up to this much work, ``nnz * max(1, P // 8) + P * (K + N)`` for a product with ``P`` activation
# columns, the CSR kernels run on the calling thread: starting the thread team costs more than the
# arithmetic. Measured here (2 threads, 64->256, 256->10, 256->256, 1024->1024 layers): the calling
# thread was 0.5-0.9x the parallel time up to about 30 000 and 1.0-1.5x above 33 000.
CSR_SERIAL_WORK = 32768


def _host_has_avx512() -> bool:
    """True when the host CPU has AVX-512F (checked once, at import, through LLVM's feature query)."""
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # noqa: BLE001 - no feature query: take the portable path
        return False


def _jit_enabled() -> bool:
    import numba

    return not numba.config.DISABLE_JIT


# The float32 CSR kernels use 16-lane vectors (register tiles when batched, ``_row_dot16`` at batch 1)
# where AVX-512 is present and the portable plain-Numba kernels elsewhere (also under NUMBA_DISABLE_JIT=1:
# LLVM intrinsics cannot run as Python). Tests flip this to cover both paths on one machine.
CSR_USE_TILES = _host_has_avx512() and _jit_enabled()

_lock = threading.Lock()
_checked = False
_needs_lock = False


def threading_layer() -> str:
    """Start Numba's threading layer (once) and return its name: ``'tbb'``, ``'omp'`` or ``'workqueue'``.

    Numba picks the first layer of its priority list (tbb, omp, workqueue) whose library loads; tbb and
    omp accept concurrent calls from several Python threads, workqueue does not. When Numba ends up with
    workqueue (neither TBB nor an OpenMP runtime is installed, or the user forced it), numaccel runs its
    parallel kernels one call at a time under a process-wide lock, so concurrent callers stay correct.
    """
    global _checked, _needs_lock
    if not _checked:
        with _lock:
            if not _checked:
                import numba
                from numba.np.ufunc import parallel

                parallel._launch_threads()
                _needs_lock = numba.threading_layer() == "workqueue"
                _checked = True
    import numba

    return numba.threading_layer()


@contextlib.contextmanager
def kernel_guard():
    """Context for one parallel kernel call: serialises calls only under the ``workqueue`` layer."""
    if not _checked:
        threading_layer()
    if _needs_lock:
        with _lock:
            yield
    else:
        yield

# W8A8 on Intel AMX where the host has it (numaccel._amx checks the CPU, the compile target and the
# kernel's permission): used from this many activation rows up; smaller batches keep AVX-512 VNNI. Tests
# flip INT8_USE_AMX to cover both paths on one machine.
INT8_USE_AMX = True
AMX_MIN_BATCH = 16
