"""Tunables shared by the kernels, and the thread-safety guard for Numba's threading layer.

Nothing here validates user input; it only holds constants and the lock that makes kernels safe to
call from several Python threads when Numba falls back to its non-thread-safe ``workqueue`` layer.
"""

from __future__ import annotations

import contextlib
import functools
import threading

# LLVM fast-math flags used by every CPU kernel. ``contract`` lets LLVM fuse a*b+c into an FMA;
# ``nnan`` and ``ninf`` are deliberately left out so NaN and inf propagate exactly as in NumPy, and
# ``reassoc`` is left out so reductions keep a fixed, reproducible order.
FASTMATH = {"contract"}

# Column indices are narrowed to uint16 when the number of input features fits.
NARROW_INDEX_MAX = 65536

# Tunables of the planners (numaccel.plan). Why each has its value, with the figures that chose it:
# docs/performance.md, "Tunables". None of these changes compiled code (those live in the kernel modules).

# Thread chunks per thread for the CSR kernels (rows split into chunks of about equal nonzeros).
CSR_CHUNKS_PER_THREAD = 4
# Rows of a chunk the register-tile kernel takes together while every slab of activations visits them.
CSR_BLOCK_ROWS = 1 << 20
# Widest slab of activations (columns) of the register-tile kernel (a slab is K * width * 4 bytes, meant
# to stay in L2).
CSR_TILE_MAX_WIDTH = 32
# Weight rows whose output tiles the register-tile kernel buffers before storing them into a (P, M)
# output (``linear``); 8-column slabs store directly.
CSR_STORE_ROWS = 16
# Packed activations of CSR_SLAB_KEEP_MIN to CSR_SLAB_KEEP_BYTES bytes go to a buffer kept per Python
# thread and reused (2 MiB aligned); others are allocated per call.
CSR_SLAB_KEEP_MIN = 256 << 10
CSR_SLAB_KEEP_BYTES = 32 << 20
# Up to this much work, ``nnz * max(1, P // 8) + P * (K + N)`` for a product with ``P`` activation
# columns, the CSR kernels run on the calling thread (starting the thread team costs more).
CSR_SERIAL_WORK = 32768


# Training: below this many multiply-adds per product (batch_size times the model's largest N * K) the
# trainer limits BLAS to one thread inside its loop (docs/performance.md, "Training").
TRAIN_SMALL_MATMUL = 1 << 24

# int8 weight-only panels: reduction block (features) whose weight block stays in L1 while the
# activations' stays in L2; W8A8 VNNI the same in features.
INT8_KC_F32 = 256
INT8_KC_VNNI = 512
# Weight-only batches of at least INT8_CONVERT_MIN_B rows convert each block of INT8_KC_CONVERT features of
# the codes to float32 once and reuse it for every register tile (docs/performance.md, "int8 at large
# batches"); smaller batches convert inside the tiles.
INT8_CONVERT_MIN_B = 128
INT8_KC_CONVERT = 128
# Panel kernels take a batch in passes of at most this many activation rows (float32 weight-only; uint8
# codes for W8A8 VNNI), so that a pass's activations stay in the last-level cache while every panel reads
# them (docs/performance.md, "Batches in passes").
INT8_ROWS_PER_PASS = 256
INT8_ROWS_PER_PASS_U8 = 512
# Batches larger than this copy their activations into blocks of about INT8_KX_* features (rows that far
# apart rather than K; many rows K apart share cache sets and evict each other). The W8A8 path always
# writes its quantized activations in blocks.
INT8_PACK_MIN_B = 8
INT8_KX_F32 = 256
INT8_KX_U8 = 512
# Weight-only float32 batches of at least INT8_BLAS_MIN_B rows run, on Intel CPUs, as float32 GEMMs in
# NumPy's OpenBLAS on blocks of the weight dequantized on numaccel's threads (choice ``int8-panels``,
# variant "blas"; docs/performance.md, "int8 at large batches through BLAS"). The blocks of all threads
# together hold at most INT8_BLAS_SCRATCH_BYTES; that buffer is kept for the next call.
INT8_BLAS_MIN_B = 512
INT8_BLAS_SCRATCH_BYTES = 64 << 20


def jit_enabled() -> bool:
    """Whether Numba compiles (False under ``NUMBA_DISABLE_JIT=1``, where kernels run as Python)."""
    import numba

    return not numba.config.DISABLE_JIT


_features = None


def _parse_features(text: str) -> frozenset:
    return frozenset(f[1:] for f in text.replace(" ", "").split(",") if f.startswith("+"))


def cpu_features() -> frozenset:
    """LLVM feature names (``"avx512f"``, ``"avx512vnni"``, ``"amx-int8"``, ...) the code Numba generates
    here may use, decided once per process.

    The host CPU's features when Numba compiles for the host; the ``+`` entries of ``NUMBA_CPU_FEATURES``
    when that is set; none when ``NUMBA_CPU_NAME`` names another CPU (``generic``, as portable caches
    use): kernels built from intrinsics of a feature are then never compiled. Empty when the JIT is
    disabled (intrinsics cannot run as Python).
    """
    global _features
    if _features is None:
        from numba.core import config

        feats: frozenset = frozenset()
        if not jit_enabled() or config.CPU_NAME not in (None, "host"):
            feats = frozenset()
        elif config.CPU_FEATURES is not None:
            feats = _parse_features(config.CPU_FEATURES)
        else:
            try:
                import llvmlite.binding as llvm

                feats = frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)
            except Exception:  # noqa: BLE001 - no feature query: the portable paths
                feats = frozenset()
        _features = feats
    return _features


# The float32 CSR kernels use 16-lane vectors (register tiles when batched, ``_row_dot16`` at batch 1)
# where AVX-512 is present and the portable plain-Numba kernels elsewhere (also under NUMBA_DISABLE_JIT=1:
# LLVM intrinsics cannot run as Python). Tests flip this to cover both paths on one machine.
CSR_USE_TILES = "avx512f" in cpu_features()

# Dense float32 layers of at most DENSE_GEMV_MAX_B activation rows and at least DENSE_GEMV_MIN_WORK
# multiply-adds (OpenBLAS starts its threads from 9216 for a matrix-vector product) run in numaccel's GEMV
# kernel (AVX-512), on Numba's threads like every numaccel kernel, instead of BLAS's: a model that mixes
# formats then uses one thread pool (docs/performance.md, "Dense layers beside numaccel layers"). Up to
# DENSE_SERIAL_WORK multiply-adds it runs on the calling thread. Tests flip DENSE_USE_GEMV to cover both.
DENSE_GEMV_MAX_B = 8
DENSE_GEMV_TUNE_MAX_B = 16  # the most rows numaccel.tune times the GEMV kernel for (4096², 32 rows: 0.5x BLAS)
DENSE_GEMV_MIN_WORK = 8192
DENSE_SERIAL_WORK = 1 << 16
DENSE_USE_GEMV = "avx512f" in cpu_features()
# Larger dense float32/float64 products run in NumPy's OpenBLAS, held at one thread, one call per Numba
# thread on a block of output features (numaccel._kernels.dense_blas), so that OpenBLAS's own workers are
# never woken to spin against numaccel's; up to DENSE_BLAS_SERIAL_WORK multiply-adds (OpenBLAS's own
# threshold for threading a GEMM: 65536 x GEMM_MULTITHREAD_THRESHOLD 4) one call on the calling thread.
# False keeps numpy.matmul (tests flip it; bench/mixed_models.py --blas-only).
DENSE_SPLIT_BLAS = True
DENSE_BLAS_SERIAL_WORK = 1 << 18

_lock = threading.Lock()
_checked = False
_needs_lock = False


def _thread_count() -> int:  # numba.get_num_threads until threading_layer() finds the direct reader
    import numba

    return numba.get_num_threads()


def threading_layer() -> str:
    """Start Numba's threading layer (once) and return its name: ``'tbb'``, ``'omp'`` or ``'workqueue'``.

    Numba picks the first layer of its priority list (tbb, omp, workqueue) whose library loads; tbb and
    omp accept concurrent calls from several Python threads, workqueue does not. When Numba ends up with
    workqueue (neither TBB nor an OpenMP runtime is installed, or the user forced it), numaccel runs its
    parallel kernels one call at a time under a process-wide lock, so concurrent callers stay correct.
    """
    global _checked, _needs_lock, _thread_count
    if not _checked:
        with _lock:
            if not _checked:
                import numba
                from numba.np.ufunc import parallel

                parallel._launch_threads()
                _needs_lock = numba.threading_layer() == "workqueue"
                reader = getattr(parallel, "_get_num_threads", None)
                if callable(reader) and reader() == numba.get_num_threads():
                    _thread_count = reader
                _checked = True
    import numba

    return numba.threading_layer()


_NO_LOCK = contextlib.nullcontext()


def kernel_guard():
    """Context for one parallel kernel call: serialises calls only under the ``workqueue`` layer.

    A plain function returning the process-wide lock or a context that does nothing: a call costs about
    0.2 µs, against 1.6 µs for a generator-based context manager, on every parallel kernel call.
    """
    if not _checked:
        threading_layer()
    return _lock if _needs_lock else _NO_LOCK


def num_threads() -> int:
    """``numba.get_num_threads()`` for the calling Python thread, at a fifth of its cost.

    Numba's function takes its threading layer's two start-up locks on every call; once the layer runs
    (:func:`threading_layer`), this one reads the count directly where Numba exposes that reader.
    """
    if not _checked:
        threading_layer()
    return _thread_count()

# W8A8 on Intel AMX where the host has it (numaccel.plan.amx checks the CPU, the compile target and the
# kernel's permission): used from this many activation rows up; smaller batches keep AVX-512 VNNI. Tests
# flip INT8_USE_AMX to cover both paths on one machine.
INT8_USE_AMX = True
AMX_MIN_BATCH = 16


VERSION = "0.1.0"  # numaccel's version (numaccel.__version__), read by the wisdom file's host key


def _cpuinfo(key: str) -> str:
    """The first value of ``key`` in Linux's /proc/cpuinfo, or "" where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.lru_cache(maxsize=1)
def cpu_family() -> int:
    """The CPU's family number (/proc/cpuinfo: 25 for AMD Zen 3 and Zen 4, 26 for Zen 5), or -1 where unknown."""
    try:
        return int(_cpuinfo("cpu family"))
    except ValueError:
        return -1


@functools.lru_cache(maxsize=1)
def cpu_vendor() -> str:
    """The CPU's vendor id (``GenuineIntel``, ``AuthenticAMD``), or "" where unknown."""
    return _cpuinfo("vendor_id")


def cpu_model() -> str:
    """The CPU's model name, or "" where it cannot be read."""
    return _cpuinfo("model name")


def llc_bytes() -> int:
    """The largest cache Linux reports for CPU 0 (sysfs), in bytes; 0 where it cannot be read."""
    import glob

    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best
