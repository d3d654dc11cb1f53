"""Dense weights through ``linear``: numaccel's GEMV kernel (a few float32 rows, AVX-512), single-threaded
OpenBLAS calls on Numba's threads (``numaccel._kernels.dense_blas``) and ``numpy.matmul``.

Parity against the float64 oracle on odd shapes (K not a multiple of the 64-feature step, N = 1, N below
the thread count, tails), every path, serial and parallel; a row's result does not depend on the thread
count or the partition; OpenBLAS's thread count is what it was after every call, from many threads at once.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from reference import ref_linear

import numaccel as na
from numaccel import _config
from numaccel._kernels import dense_blas
from numaccel.plan import dense as plan_dense

HAS_GEMV = "avx512f" in _config.cpu_features()  # the GEMV kernel can run (AVX-512 and the JIT)
HAS_SPLIT = dense_blas.available()  # NumPy's OpenBLAS wheel build and the JIT
PATHS = (["gemv"] if HAS_GEMV else []) + (["split-blas"] if HAS_SPLIT else []) + ["matmul"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    monkeypatch.setattr(_config, "DENSE_USE_GEMV", request.param == "gemv")
    monkeypatch.setattr(_config, "DENSE_SPLIT_BLAS", request.param != "matmul")
    monkeypatch.setattr(_config, "DENSE_GEMV_MIN_WORK", 0)  # the test shapes are small
    return request.param


@pytest.fixture(params=["serial", "parallel"])
def split(request, monkeypatch):
    serial = request.param == "serial"
    monkeypatch.setattr(_config, "DENSE_SERIAL_WORK", 1 << 62 if serial else -1)
    monkeypatch.setattr(_config, "DENSE_BLAS_SERIAL_WORK", 1 << 62 if serial else -1)
    return request.param


def _openblas_threads():
    return dense_blas._state["get"]()


SHAPES = [(1, 1), (1, 70), (3, 17), (7, 63), (8, 64), (9, 65), (33, 127), (64, 129), (5, 1000), (130, 256)]


@pytest.mark.parametrize("n, k", SHAPES)
@pytest.mark.parametrize("b", [1, 2, 3, 8, 9, 17])
def test_parity(rng, parity, path, split, n, k, b):
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((b, k)).astype(np.float32)
    gemv = path == "gemv" and b <= _config.DENSE_GEMV_MAX_B
    assert plan_dense.uses_gemv(w, x) == gemv
    assert plan_dense.uses_split_blas(w, x) == (path != "matmul" and not gemv)
    out = np.full((b, n), np.nan, np.float32)
    parity(na.linear(x, w, out=out), ref_linear(x, w), dtype=np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    parity(na.linear(x[0], w, bias), ref_linear(x[0], w, bias), dtype=np.float32)


def test_row_results_do_not_depend_on_threads_or_partition(rng, monkeypatch):
    if not HAS_GEMV:
        pytest.skip("the GEMV kernel needs AVX-512 and the JIT")
    monkeypatch.setattr(_config, "DENSE_USE_GEMV", True)
    monkeypatch.setattr(_config, "DENSE_GEMV_MIN_WORK", 0)
    w = rng.standard_normal((301, 777)).astype(np.float32)
    x = rng.standard_normal((3, 777)).astype(np.float32)
    monkeypatch.setattr(_config, "DENSE_SERIAL_WORK", 1 << 62)
    serial = na.linear(x, w)
    monkeypatch.setattr(_config, "DENSE_SERIAL_WORK", -1)
    for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        numba.set_num_threads(threads)
        try:
            np.testing.assert_array_equal(na.linear(x, w), serial)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for b in range(3):  # one row alone gives the same values as inside the batch
        np.testing.assert_array_equal(na.linear(x[b], w), serial[b])


def test_other_layouts_and_dtypes_use_blas(rng, parity, monkeypatch):
    monkeypatch.setattr(_config, "DENSE_USE_GEMV", True)
    w = rng.standard_normal((40, 30)).astype(np.float32)
    x = rng.standard_normal((2, 30)).astype(np.float32)
    assert not plan_dense.uses_gemv(np.asfortranarray(w), x)
    assert not plan_dense.uses_gemv(w.astype(np.float64), x)
    assert not plan_dense.uses_gemv(w, x.astype(np.float64))
    parity(na.linear(x, np.asfortranarray(w)), ref_linear(x, w))
    parity(na.linear(x.astype(np.float64), w), ref_linear(x, w), dtype=np.float64)
    wt = rng.standard_normal((30, 40)).astype(np.float32).T  # a transposed view: not C-contiguous
    parity(na.linear(x, wt), ref_linear(x, wt))


@pytest.mark.skipif(not HAS_SPLIT, reason="NumPy's BLAS here is not its OpenBLAS wheel build (or no JIT)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b, k, n", [(1, 1, 1), (1, 129, 70), (9, 1, 3), (2, 3, 1), (13, 70, 15), (16, 129, 17),
                                     (33, 64, 100), (70, 300, 513)])
def test_split_blas_parity(rng, parity, split, dtype, b, k, n):
    """Every block boundary and thread count: N below, at and above the blocks' 16-feature alignment."""
    w = rng.standard_normal((n, k)).astype(dtype)
    x = rng.standard_normal((b, k)).astype(dtype)
    before = _openblas_threads()
    for threads in (1, 2, 3, 5):
        out = np.full((b, n), np.nan, dtype)
        dense_blas.gemm(x, w, out, threads)
        parity(out, ref_linear(x, w), dtype=dtype)
        assert _openblas_threads() == before
    parity(na.linear(x, w), ref_linear(x, w), dtype=dtype)


@pytest.mark.skipif(not HAS_SPLIT, reason="NumPy's BLAS here is not its OpenBLAS wheel build (or no JIT)")
def test_split_blas_block_bounds():
    for n in (1, 15, 16, 17, 100, 4096):
        for blocks in (1, 2, 3, 7):
            bnd = dense_blas._bounds(n, blocks)
            assert bnd[0] == 0 and bnd[-1] == n and np.all(np.diff(bnd) >= 0) and bnd.size == blocks + 1
            inner = bnd[1:-1]
            assert np.all((inner % dense_blas._ALIGN == 0) | (inner == n))


@pytest.mark.skipif(not HAS_SPLIT, reason="NumPy's BLAS here is not its OpenBLAS wheel build (or no JIT)")
def test_split_blas_threads_restored_under_concurrency(rng, monkeypatch):
    """8 Python threads at once: every result right, OpenBLAS's thread count what it was afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(_config, "DENSE_BLAS_SERIAL_WORK", -1)
    before = _openblas_threads()
    ws = [rng.standard_normal((64 + 16 * i, 96)).astype(np.float32) for i in range(8)]
    xs = [rng.standard_normal((12, 96)).astype(np.float32) for _ in range(8)]
    refs = [ref_linear(x, w) for x, w in zip(xs, ws, strict=True)]

    def work(i):
        return all(np.linalg.norm(na.linear(xs[i], ws[i]) - refs[i]) <= 1e-5 * np.linalg.norm(refs[i])
                   for _ in range(20))

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(8)))
    assert _openblas_threads() == before


def test_split_blas_not_for_other_layouts_and_dtypes(rng):
    w = rng.standard_normal((40, 30)).astype(np.float32)
    x = rng.standard_normal((20, 30)).astype(np.float32)
    assert plan_dense.uses_split_blas(w, x) == HAS_SPLIT
    assert not plan_dense.uses_split_blas(np.asfortranarray(w), x)
    assert not plan_dense.uses_split_blas(w.astype(np.float64), x)  # mixed dtypes: numpy.matmul promotes
    assert not plan_dense.uses_split_blas(w, np.asfortranarray(x))  # not C-contiguous
    assert not plan_dense.uses_split_blas(w.astype(np.float16), x.astype(np.float16))
    assert not plan_dense.uses_split_blas(w, np.zeros((0, 30), np.float32))


def test_nan_and_inf_propagate(rng, path):
    w = rng.standard_normal((20, 70)).astype(np.float32)
    for b in (2, 12):  # the GEMV kernel's rows and BLAS's
        x = rng.standard_normal((b, 70)).astype(np.float32)
        x[0, 5] = np.nan
        x[1, 69] = np.inf  # in the scalar tail of the 64-feature steps
        y = na.linear(x, w)
        assert np.isnan(y[0]).all()
        assert np.isinf(y[1]).all() or np.isnan(y[1]).all()
        np.testing.assert_array_equal(np.isinf(y[1]), np.isinf(ref_linear(x, w)[1]))


def test_empty_batch(rng, path):
    w = rng.standard_normal((4, 6)).astype(np.float32)
    assert na.linear(np.zeros((0, 6), np.float32), w).shape == (0, 4)


def test_which_path_by_default(rng):
    x1 = np.zeros((1, 4096), np.float32)
    big = np.zeros((1024, 4096), np.float32)
    assert plan_dense.uses_gemv(big, x1) == HAS_GEMV
    assert plan_dense.uses_gemv(big, np.zeros((_config.DENSE_GEMV_MAX_B, 4096), np.float32)) == HAS_GEMV
    assert not plan_dense.uses_gemv(big, np.zeros((_config.DENSE_GEMV_MAX_B + 1, 4096), np.float32))
    assert not plan_dense.uses_gemv(np.zeros((16, 64), np.float32), np.zeros((1, 64), np.float32))  # small: BLAS
