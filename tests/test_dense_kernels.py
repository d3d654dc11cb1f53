"""Dense weights through ``linear``: numaccel's GEMV kernel (a few float32 rows, AVX-512) and BLAS.

Parity against the float64 oracle on odd shapes (K not a multiple of the 64-feature step, N = 1, tails),
both paths, serial and parallel; a row's result does not depend on the thread count or the partition.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from reference import ref_linear

import numaccel as na
from numaccel import _config
from numaccel.plan import dense as plan_dense

HAS_GEMV = "avx512f" in _config.cpu_features()  # the GEMV kernel can run (AVX-512 and the JIT)
PATHS = ["gemv", "blas"] if HAS_GEMV else ["blas"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    monkeypatch.setattr(_config, "DENSE_USE_GEMV", request.param == "gemv")
    monkeypatch.setattr(_config, "DENSE_GEMV_MIN_WORK", 0)  # the test shapes are small
    return request.param


@pytest.fixture(params=["serial", "parallel"])
def split(request, monkeypatch):
    monkeypatch.setattr(_config, "DENSE_SERIAL_WORK", 1 << 62 if request.param == "serial" else -1)
    return request.param


SHAPES = [(1, 1), (1, 70), (3, 17), (7, 63), (8, 64), (9, 65), (33, 127), (64, 129), (5, 1000), (130, 256)]


@pytest.mark.parametrize("n, k", SHAPES)
@pytest.mark.parametrize("b", [1, 2, 3, 8, 9])
def test_parity(rng, parity, path, split, n, k, b):
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((b, k)).astype(np.float32)
    assert plan_dense.uses_gemv(w, x) == (path == "gemv" and b <= _config.DENSE_GEMV_MAX_B)
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


def test_nan_and_inf_propagate(rng, path):
    w = rng.standard_normal((20, 70)).astype(np.float32)
    x = rng.standard_normal((2, 70)).astype(np.float32)
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
