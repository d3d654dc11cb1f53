"""Parity of ``linear`` and ``spmm`` with a CSR weight against the float64 oracles, on both batched paths
(the AVX-512 register-tile kernel and the portable kernel), every slab width, float32 and float64,
C/F/strided inputs, on the calling thread and on the thread team (both sides of
``_config.CSR_SERIAL_WORK``), with ``out`` pre-filled with NaN.

Also run in CI with ``NUMBA_BOUNDSCHECK=1`` (and its own ``NUMBA_CACHE_DIR``): shapes stay small.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_weight, run_in_threads
from reference import ref_linear, ref_spmm

import numaccel as na
from numaccel import _config
from numaccel._kernels import csr_cpu
from numaccel.plan import csr as plan_csr

HAS_AVX512 = "avx512f" in _config.cpu_features()  # the register-tile kernel can run
PATHS = ["tiles", "portable"] if HAS_AVX512 else ["portable"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    monkeypatch.setattr(_config, "CSR_USE_TILES", request.param == "tiles")
    return request.param


def nan_out(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


# (n, k, density): 1×1, odd sizes, K not a multiple of any unroll or tile, empty rows, dense, near-empty
SHAPES = [
    (1, 1, 1.0),
    (5, 3, 0.6),
    (37, 70, 0.3),
    (64, 129, 0.1),
    (130, 301, 0.5),
    (97, 200, 1.0),
    (80, 50, 0.001),
]
BATCHES = [1, 2, 7, 8, 9, 17, 33, 64, 65, 130]


@pytest.mark.parametrize("n, k, density", SHAPES, ids=[f"{n=}-{k=}-{d=}" for n, k, d in SHAPES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_linear_parity(rng, parity, path, n, k, density, dtype):
    w = make_weight(rng, n, k, density)
    bias = rng.standard_normal(n).astype(dtype)
    for b in BATCHES:
        x = rng.standard_normal((b, k)).astype(dtype)
        x0 = x.copy()
        out = nan_out((b, n), dtype)
        y = na.linear(x, w, out=out)
        assert y is out and y.dtype == dtype
        parity(y, ref_linear(x, w))
        parity(na.linear(x, w, bias=bias), ref_linear(x, w, bias), dtype=dtype)
        np.testing.assert_array_equal(x, x0)  # the caller's array is untouched
    v = rng.standard_normal(k).astype(dtype)
    out = nan_out((n,), dtype)
    parity(na.linear(v, w, bias=bias, out=out), ref_linear(v, w, bias), dtype=dtype)


@pytest.mark.parametrize("layout", ["F", "strided", "transposed-view"])
@pytest.mark.parametrize("b", [1, 8, 40])
def test_linear_layouts(rng, parity, path, layout, b):
    w = make_weight(rng, 45, 66, 0.3)
    base = rng.standard_normal((b, 2 * 66)).astype(np.float32)
    if layout == "F":
        x = np.asfortranarray(base[:, :66])
    elif layout == "strided":
        x = base[:, ::2]
    else:
        x = np.ascontiguousarray(base[:, :66].T).T
    assert not x.flags.c_contiguous or b == 1
    parity(na.linear(x, w, out=nan_out((b, 45), np.float32)), ref_linear(x, w))
    parity(na.linear(x[0], w), ref_linear(x[0], w))


@pytest.mark.parametrize("max_width", [8, 16, 32, 64])
def test_every_slab_width(rng, parity, monkeypatch, dispatch, max_width):
    if not HAS_AVX512:
        pytest.skip("the register-tile kernel needs AVX-512 and the JIT")
    monkeypatch.setattr(_config, "CSR_USE_TILES", True)
    monkeypatch.setattr(_config, "CSR_TILE_MAX_WIDTH", max_width)
    monkeypatch.setattr(_config, "CSR_BLOCK_ROWS", 3)
    w = make_weight(rng, 51, 77, 0.2)
    for b in (3, 16, 31, 70, 129):
        x = rng.standard_normal((b, 77)).astype(np.float32)
        parity(na.linear(x, w, out=nan_out((b, 51), np.float32)), ref_linear(x, w))
        bm = np.ascontiguousarray(x.T)
        parity(na.spmm(w, bm, out=nan_out((51, b), np.float32)), ref_spmm(w, bm))


@pytest.mark.parametrize("max_width", [8, 32, 64])
def test_every_row_length(rng, monkeypatch, path, dispatch, max_width):
    """Row ``i`` holds ``i`` nonzeros: every split into full groups (accumulator sets of the tile kernel,
    16 and 32 nonzeros at batch 1, 4 in the portable kernels) and a tail, each row checked on its own (a
    whole-output norm could hide one short row). The slab width only matters to the tile kernel."""
    monkeypatch.setattr(_config, "CSR_TILE_MAX_WIDTH", max_width)
    n, k = max(4 * csr_cpu.TILE_ACC_SETS, 64) + 6, 97
    rows = [np.sort(rng.choice(k, size=i, replace=False)) for i in range(n)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int32)
    indices = np.concatenate(rows).astype(np.int32)
    w = na.CSRWeight(indptr, indices, rng.standard_normal(indices.size).astype(np.float32), (n, k))
    for b in (1, 8, 19, 64):
        x = rng.standard_normal((b, k)).astype(np.float32)
        ref = ref_linear(x, w)
        out = na.linear(x, w, out=nan_out((b, n), np.float32))
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        if b == 1:
            out = na.linear(x[0], w, out=nan_out((n,), np.float32))
            np.testing.assert_allclose(out, ref[0], rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_spmm_parity(rng, parity, path, dtype):
    a = make_weight(rng, 61, 45, 0.25)
    for p in (1, 5, 16, 64, 100):
        bm = rng.standard_normal((45, p)).astype(dtype)
        parity(na.spmm(a, bm, out=nan_out((61, p), dtype)), ref_spmm(a, bm))
        parity(na.spmm(a, np.asfortranarray(bm)), ref_spmm(a, bm), dtype=dtype)
    v = rng.standard_normal(45).astype(dtype)
    parity(na.spmm(a, v, out=nan_out((61,), dtype)), ref_spmm(a, v), dtype=dtype)


def test_spmm_scipy_input(rng, parity):
    m = sp.random_array((30, 40), density=0.2, rng=rng, format="coo")
    bm = rng.standard_normal((40, 9)).astype(np.float32)
    # float64 values stay float64 (nothing is downcast): the result is float64, to float64 accuracy
    ref = ref_spmm(m.toarray(), bm)
    parity(na.spmm(m, bm), ref, dtype=np.float64, rtol=1e-13)
    parity(na.spmm(m.tocsr(), bm[:, 0]), ref[:, 0], dtype=np.float64, rtol=1e-13)
    parity(na.spmm(m, bm.astype(np.float64)), ref, dtype=np.float64, rtol=1e-13)
    # float32 values with float32 B: float32, through the same kernels as a CSRWeight
    m32 = m.astype(np.float32)
    parity(na.spmm(m32, bm), ref_spmm(m32.toarray(), bm))


@pytest.mark.parametrize("b", [1, 8, 64])
def test_all_zero_weight(rng, path, b):
    w = na.CSRWeight.from_dense(np.zeros((33, 20), dtype=np.float32))
    assert w.nnz == 0
    x = rng.standard_normal((b, 20)).astype(np.float32)
    np.testing.assert_array_equal(na.linear(x, w, out=nan_out((b, 33), np.float32)), 0)


def test_empty_dimensions(rng):
    w = na.CSRWeight([0], [], np.zeros(0, np.float32), shape=(0, 4))
    assert na.linear(np.ones((3, 4), np.float32), w).shape == (3, 0)
    w0 = na.CSRWeight([0, 0, 0], [], np.zeros(0, np.float32), shape=(2, 0))
    np.testing.assert_array_equal(na.linear(np.ones((3, 0), np.float32), w0), np.zeros((3, 2)))
    w1 = make_weight(rng, 5, 6, 0.5)
    assert na.linear(np.ones((0, 6), np.float32), w1).shape == (0, 5)


def test_wide_k_int32_indices(rng, parity, path):
    k = 70_003  # beyond uint16: column ids kept as int32
    cols = np.sort(rng.choice(k, size=60, replace=False))
    indptr = np.array([0, 20, 20, 45, 60])
    w = na.CSRWeight(indptr, cols[np.r_[0:20, 20:45, 45:60]] % k, rng.standard_normal(60), shape=(4, k))
    for b in (1, 8, 20):
        x = rng.standard_normal((b, k)).astype(np.float32)
        parity(na.linear(x, w, out=nan_out((b, 4), np.float32)), ref_linear(x, w))


def test_nan_and_inf_propagate(rng):
    w = na.CSRWeight.from_dense(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=np.float32))
    x = np.array([[np.nan, 1.0, 1.0], [1.0, np.inf, 1.0]] * 5, dtype=np.float32)
    y = na.linear(x, w)
    assert np.isnan(y[0, 0]) and y[0, 1] == 3.0
    assert y[1, 0] == 3.0 and np.isposinf(y[1, 1])
    assert np.isnan(na.linear(x[0], w)[0])


def test_int64_indptr_kernels(rng, parity):
    """Weights with nnz >= 2**31 keep an int64 indptr; the kernels take either width."""
    w = make_weight(rng, 40, 50, 0.3)
    indptr = w.indptr.astype(np.int64)
    bounds = plan_csr.chunk_bounds(w)
    x = rng.standard_normal((12, 50)).astype(np.float32)
    out = nan_out((40,), np.float32)
    csr_cpu._spmv_csr_rows(indptr, w.indices, w.data, bounds, x[0], out)
    parity(out, ref_linear(x[0], w))
    out2 = nan_out((12, 40), np.float32)
    scratch = np.empty((bounds.size - 1, 12), np.float32)
    csr_cpu._spmm_csr_rows(indptr, w.indices, w.data, bounds, np.ascontiguousarray(x.T), scratch, True, out2)
    parity(out2, ref_linear(x, w))
    if HAS_AVX512:
        slabs = np.empty((1, 50, 16), np.float32)
        csr_cpu._pack_rows_tiles(x, slabs)
        for group in (1, 5):
            out3 = nan_out((12, 40), np.float32)
            scratch = np.empty((bounds.size - 1, group, 16), np.float32)
            csr_cpu._spmm_csr_tiles(indptr, w.indices, w.data, bounds, slabs, scratch, 4, True, out3)
            parity(out3, ref_linear(x, w))


def test_thread_counts(rng, parity, monkeypatch):
    monkeypatch.setattr(_config, "CSR_SERIAL_WORK", -1)  # the parallel kernels, however small
    w = make_weight(rng, 90, 64, 0.3)
    x = rng.standard_normal((20, 64)).astype(np.float32)
    old = numba.get_num_threads()
    try:
        for t in sorted({1, old}):
            numba.set_num_threads(t)
            parity(na.linear(x, w), ref_linear(x, w))
            parity(na.linear(x[0], w), ref_linear(x[0], w))
    finally:
        numba.set_num_threads(old)


def test_row_bounds_balance_nonzeros():
    counts = np.array([100, 0, 0, 1, 1, 1, 1, 100, 0, 3])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    rows = [np.arange(c) for c in counts]
    w = na.CSRWeight(indptr, np.concatenate(rows), np.ones(indptr[-1]), shape=(10, 100))
    b = plan_csr.row_bounds(w, 2)
    assert b[0] == 0 and b[-1] == 10 and np.all(np.diff(b) > 0)
    heavy = [int(np.sum(counts[b[i]:b[i + 1]])) for i in range(b.size - 1)]
    assert max(heavy) <= 110


DISPATCH_SHAPES = [(37, 70, 0.3), (1024, 24, 0.05), (10, 256, 0.1)]  # (1024, ...): rows a multiple of 1024


@pytest.mark.parametrize("n, k, density", DISPATCH_SHAPES, ids=[f"{n=}-{k=}" for n, k, _ in DISPATCH_SHAPES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_serial_and_parallel_paths(rng, parity, path, dispatch, n, k, density, dtype):
    w = make_weight(rng, n, k, density)
    for b in (1, 3, 8, 33):
        x = rng.standard_normal((b, k)).astype(dtype)
        parity(na.linear(x, w, out=nan_out((b, n), dtype)), ref_linear(x, w))
        bm = np.ascontiguousarray(x.T)
        parity(na.spmm(w, bm, out=nan_out((n, b), dtype)), ref_spmm(w, bm))
    parity(na.linear(x[0], w, out=nan_out((n,), dtype)), ref_linear(x[0], w))


@pytest.mark.parametrize("store_rows", [1, 3, 16])
def test_buffered_transposed_store(rng, parity, monkeypatch, dispatch, store_rows):
    """Output tiles of ``store_rows`` weight rows are stored together; chunk and row counts not multiples."""
    if not HAS_AVX512:
        pytest.skip("the register-tile kernel needs AVX-512 and the JIT")
    monkeypatch.setattr(_config, "CSR_USE_TILES", True)
    monkeypatch.setattr(_config, "CSR_STORE_ROWS", store_rows)
    w = make_weight(rng, 53, 40, 0.2)
    for b in (5, 8, 9, 40):  # 8-column slabs store directly, wider ones through the buffer
        x = rng.standard_normal((b, 40)).astype(np.float32)
        parity(na.linear(x, w, out=nan_out((b, 53), np.float32)), ref_linear(x, w))


@pytest.mark.parametrize("side", ["below", "above"])
@pytest.mark.parametrize("b", [1, 8, 256])
def test_serial_threshold_sides(rng, parity, path, side, b):
    """The default threshold picks the calling thread just below it and the thread team just above."""
    k, n = (64, 600) if b < 64 else (64, 40)
    budget = _config.CSR_SERIAL_WORK - b * (k + n)
    nnz = budget // max(1, b // 8) + (1 if side == "above" else 0)
    assert 0 < nnz <= n * k
    flat = np.sort(rng.choice(n * k, size=nnz, replace=False))
    W = np.zeros(n * k, np.float32)
    W[flat] = rng.standard_normal(nnz).astype(np.float32) + 3
    w = na.CSRWeight.from_dense(W.reshape(n, k))
    assert plan_csr.serial(w.nnz, w.shape, b) == (side == "below")
    x = rng.standard_normal((b, k)).astype(np.float32)
    parity(na.linear(x, w, out=nan_out((b, n), np.float32)), ref_linear(x, w))
    parity(na.linear(x[0], w, out=nan_out((n,), np.float32)), ref_linear(x[0], w))


def test_reused_slab_buffer(rng, parity, monkeypatch):
    """Packed activations share one buffer per Python thread: calls of growing and shrinking size, and
    two threads at once, each get their own correct result."""

    monkeypatch.setattr(_config, "CSR_SLAB_KEEP_MIN", 0)
    monkeypatch.setattr(_config, "CSR_SERIAL_WORK", -1)
    w = make_weight(rng, 70, 90, 0.2)
    xs = [rng.standard_normal((b, 90)).astype(np.float32) for b in (40, 9, 130, 17)]
    for x in xs:
        parity(na.linear(x, w, out=nan_out((x.shape[0], 70), np.float32)), ref_linear(x, w))
    results = {}

    def work(i):
        results[i] = [na.linear(x, w) for x in xs for _ in range(3)]

    run_in_threads(work)
    for i in range(2):
        for j, y in enumerate(results[i]):
            parity(y, ref_linear(xs[j // 3], w))


@pytest.mark.parametrize("shape", [(1, 50, 16), (2, 4096, 32), (3, 7, 8), (1, 2048, 64)])
def test_slab_buffers_start_on_a_cache_line(shape):
    """Packed activations start on a 64-byte boundary, both from the kept buffer and freshly allocated (a
    slab row straddling two cache lines costs a second line per load)."""
    for _ in range(3):  # fresh allocations land at varying offsets
        slabs = plan_csr._slab_array(shape)
        assert slabs.shape == shape and slabs.dtype == np.float32 and slabs.flags.c_contiguous
        assert slabs.ctypes.data % 64 == 0
