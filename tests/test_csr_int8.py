"""The pruned-int8 format (``CSRInt8Weight``): construction and validation, ``quantize(CSRWeight)`` and its
error bound, parity of ``linear`` / ``spmm`` with the float64 oracle over the CSR edge cases on every path
(AVX-512 tiles and portable, calling thread and thread team), and everything else a format does: layers,
save/load, shard, device copy, training refusal.

Shapes stay small: this file also runs under ``NUMBA_BOUNDSCHECK=1``.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_weight
from hypothesis import given
from hypothesis import strategies as st
from reference import csr_int8_values64, dense64, ref_linear, ref_mlp, ref_quantize_csr, ref_spmm

import numaccel as na
from numaccel import _config, nn
from numaccel.formats.csr_int8 import group_pointer

HAS_AVX512 = "avx512f" in _config.cpu_features()
PATHS = ["tiles", "portable"] if HAS_AVX512 else ["portable"]
GROUPS = [None, 5, 32]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    """The AVX-512 register-tile kernels where the host has them, and the portable kernels everywhere."""
    monkeypatch.setattr(_config, "CSR_USE_TILES", request.param == "tiles")
    return request.param


def pruned(rng, n, k, density, *, empty_rows=True) -> na.CSRWeight:
    return make_weight(rng, n, k, density, empty_rows=empty_rows)


def staircase(rng, k=97, rows=70) -> na.CSRWeight:
    """Row ``i`` holds ``i`` nonzeros (0..69) at random columns: every row length an unroll or a group meets."""
    W = np.zeros((rows, k), np.float32)
    for i in range(rows):
        cols = rng.choice(k, size=i, replace=False)
        W[i, cols] = rng.standard_normal(i).astype(np.float32) + np.float32(3.0)  # no accidental zeros
    return na.CSRWeight.from_dense(W)


def nan_out(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# construction and validation

VALID = dict(indptr=[0, 2, 3], indices=[0, 2, 1], qdata=np.array([1, -2, 3], np.int8), scales=[0.5, 0.25],
             shape=(2, 3), group_size=None)


def _make(**kw):
    a = dict(VALID, **kw)
    return na.CSRInt8Weight(a["indptr"], a["indices"], a["qdata"], a["scales"], a["shape"],
                            group_size=a["group_size"])


def test_construction_and_attributes():
    w = _make()
    assert w.shape == (2, 3) and w.nnz == 3 and w.density == pytest.approx(0.5) and w.group_size is None
    assert w.indptr.dtype == np.int32 and w.indices.dtype == np.uint16
    assert w.qdata.dtype == np.int8 and w.scales.dtype == np.float32
    np.testing.assert_array_equal(w.to_dense(), [[0.5, 0.0, -1.0], [0.0, 0.75, 0.0]])
    assert na.formats.name_of(w) == "csr-int8"
    assert repr(w) == "CSRInt8Weight(shape=(2, 3), nnz=3, density=0.5, group_size=None)"
    # grouped: row 0 has 2 stored values in groups of 1, row 1 one: 3 scales
    g = _make(scales=[0.5, 1.0, 0.25], group_size=1)
    np.testing.assert_array_equal(g.to_dense(), [[0.5, 0.0, -2.0], [0.0, 0.75, 0.0]])
    # accepted: int64 / unsigned index arrays, float64 scales (stored as float32)
    u = _make(indptr=np.array([0, 2, 3], np.uint64), indices=np.array([0, 2, 1], np.int64),
              scales=np.array([0.5, 0.25]))
    np.testing.assert_array_equal(u.to_dense(), w.to_dense())


def test_empty_shapes_and_no_stored_values():
    z = na.CSRInt8Weight([0, 0, 0], [], np.zeros(0, np.int8), [0.0, 0.0], (2, 4))
    assert z.nnz == 0 and z.density == 0.0 and z.to_dense().shape == (2, 4) and not z.to_dense().any()
    g = na.CSRInt8Weight([0, 0, 0], [], np.zeros(0, np.int8), np.zeros(0, np.float32), (2, 4), group_size=3)
    assert g.scales.shape == (0,)
    e = na.CSRInt8Weight([0], [], np.zeros(0, np.int8), np.zeros(0, np.float32), (0, 5))
    assert e.shape == (0, 5) and e.density == 0.0


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(shape=(2,)), ValueError, "shape must be a pair (out_features, in_features), got (2,)"),
        (dict(shape=(2.0, 3)), TypeError, "shape[0] must be an integer, got float"),
        (dict(shape=(2, -3)), ValueError, "shape[1] must be non-negative, got -3"),
        (dict(indptr=[0.0, 2.0, 3.0]), TypeError, "indptr must be an integer array, got float64"),
        (dict(indptr=[[0, 2, 3]]), ValueError, "indptr must be 1-D, got 2-D"),
        (dict(indices=[0.0, 2.0, 1.0]), TypeError, "indices must be an integer array, got float64"),
        (dict(qdata=[1, 2, 3]), TypeError, "qdata must be int8, got int64; use qdata.astype(np.int8)"),
        (dict(qdata=np.array([1.0, 2.0, 3.0])), TypeError, "qdata must be int8, got float64"),
        (dict(qdata=np.ones((1, 3), np.int8)), ValueError, "qdata must be 1-D (one code per stored value), got "
                                                           "shape (1, 3)"),
        (dict(indptr=[0, 3]), ValueError, "indptr must have length shape[0] + 1 = 3, got 2"),
        (dict(indptr=[1, 2, 3]), ValueError, "indptr[0] must be 0, got 1"),
        (dict(indptr=[0, 3, 2]), ValueError, "indptr must be non-decreasing; indptr[2]=2 < indptr[1]=3"),
        (dict(indptr=[0, 2, 4]), ValueError, "indptr[-1] = 4 must equal len(indices) = 3"),
        (dict(qdata=np.ones(2, np.int8)), ValueError, "indptr[-1] = 3 must equal len(indices) = 3"),
        (dict(indices=[0, 3, 1]), ValueError, "indices must be in [0, 3) (shape[1] = 3); indices[1] = 3"),
        (dict(indices=[0, 2, -1]), ValueError, "indices[2] = -1"),
        (dict(indices=[2, 0, 1]), ValueError, "row 0 has unsorted column ids indices[0]=2, indices[1]=0"),
        (dict(indices=[1, 1, 1]), ValueError, "row 0 has duplicate column ids indices[0]=1, indices[1]=1"),
        (dict(scales=[1, 2]), TypeError, "scales must be a floating-point array, got int64; use "
                                         "scales.astype(np.float32)"),
        (dict(scales=[0.5]), ValueError, "scales must have shape (2,) (N,) for group_size=None, got (1,)"),
        (dict(scales=[[0.5, 0.25]]), ValueError, "scales must have shape (2,)"),
        (dict(scales=[0.5, 0.25], group_size=1), ValueError,
         "scales must have shape (3,) (sum of ceil(nnz_i / 1) over rows,), got (2,)"),
        (dict(scales=[0.5, 0.25, 0.1], group_size=2), ValueError,
         "scales must have shape (2,) (sum of ceil(nnz_i / 2) over rows,), got (3,)"),
        (dict(scales=[0.5, -0.25]), ValueError, "scales must be non-negative, got -0.25 at scales[1]"),
        (dict(scales=[np.nan, 0.25]), ValueError, "scales must be finite, got nan at scales[0]"),
        (dict(scales=[0.5, np.inf]), ValueError, "scales must be finite, got inf at scales[1]"),
        (dict(scales=[0.5, 1e39]), ValueError, "scales must be finite, got inf at scales[1]"),  # as float32
        (dict(group_size=0), ValueError, "group_size must be a positive integer, got 0"),
        (dict(group_size=1.5), TypeError, "group_size must be a positive integer, got float"),
        (dict(group_size=True), TypeError, "group_size must be a positive integer, got bool"),
        (dict(group_size=2**62), ValueError, "group_size must be below 2**62"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_validation_messages(kw, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        _make(**kw)


def test_arrays_are_copied_and_read_only():
    indptr, indices = np.array([0, 2, 3]), np.array([0, 2, 1])
    q, s = np.array([1, -2, 3], np.int8), np.array([0.5, 0.25], np.float32)
    w = na.CSRInt8Weight(indptr, indices, q, s, (2, 3))
    before = w.to_dense()
    indptr[1], indices[0], q[0], s[0] = 1, 1, 100, 9.0  # the caller's arrays change; the weight does not
    np.testing.assert_array_equal(w.to_dense(), before)
    for a in (w.indptr, w.indices, w.qdata, w.scales):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 0
    with pytest.raises(AttributeError):
        w.qdata = q
    with pytest.raises(AttributeError):
        w.extra = 1  # __slots__: no new attributes either
    back = pickle.loads(pickle.dumps(w))  # rebuilt through the validating constructor
    assert type(back) is na.CSRInt8Weight and np.array_equal(back.to_dense(), before)


def test_nbytes_is_about_three_bytes_per_nonzero(rng):
    sw = pruned(rng, 40, 300, 0.1)
    w = na.quantize(sw)
    n, nnz = 40, sw.nnz
    # indptr int32, uint16 column ids, int8 codes, float32 scales
    assert w.nbytes == 4 * (n + 1) + 2 * nnz + 1 * nnz + 4 * n
    assert na.formats.nbytes(w) == w.nbytes and w.nbytes < sw.nbytes - 2 * nnz
    g = na.quantize(sw, group_size=5)
    assert g.nbytes == 4 * (n + 1) + 3 * nnz + 4 * int(group_pointer(sw.indptr, 5)[-1])
    wide = na.CSRInt8Weight([0, 1], [70_000], np.array([1], np.int8), [1.0], (1, 70_001))
    assert wide.indices.dtype == np.int32 and wide.nbytes == 2 * 4 + 4 + 1 + 4


def test_dequantize_and_to_dense(rng):
    sw = staircase(rng, k=40, rows=20)
    for gs in GROUPS:
        w = na.quantize(sw, group_size=gs)
        d = w.dequantize()
        assert isinstance(d, na.CSRWeight) and d.shape == w.shape
        np.testing.assert_array_equal(d.indptr, w.indptr)
        np.testing.assert_array_equal(d.indices, w.indices)
        values = csr_int8_values64(w.indptr, w.qdata, w.scales, gs)
        np.testing.assert_array_equal(d.data, values.astype(np.float32))  # q * s, one float32 rounding
        np.testing.assert_array_equal(w.to_dense(), dense64(w).astype(np.float32))
        assert w.to_dense().dtype == np.float32


# --------------------------------------------------------------------------------------------------
# quantize(CSRWeight)

def test_quantize_keeps_the_pattern_and_zero_rows_get_scale_zero(rng):
    W = rng.standard_normal((6, 9)).astype(np.float32)
    W[rng.random(W.shape) < 0.5] = 0
    W[2] = 0
    sw = na.CSRWeight.from_dense(W)
    w = na.quantize(sw)
    assert isinstance(w, na.CSRInt8Weight) and w.group_size is None
    assert w.scales[2] == 0.0
    np.testing.assert_array_equal(w.indptr, sw.indptr)
    np.testing.assert_array_equal(w.indices, sw.indices)
    assert np.all(w.to_dense()[W == 0] == 0.0)  # exactly zero where the pruned weight is
    # explicitly stored zeros (a row whose values are all 0) also get scale 0 and codes 0
    z = na.quantize(na.CSRWeight([0, 2, 3], [0, 1, 2], [0.0, 0.0, 2.0], (2, 3)))
    np.testing.assert_array_equal(z.scales, np.array([0.0, 2.0 / 127], np.float32))
    np.testing.assert_array_equal(z.qdata, [0, 0, 127])
    assert z.nnz == 3  # the pattern is kept, stored zeros included
    e = na.quantize(na.CSRWeight([0, 0, 0], [], np.zeros(0, np.float32), (2, 5)), group_size=4)
    assert e.nnz == 0 and e.scales.shape == (0,)


def test_group_size_counts_a_rows_stored_values():
    """Groups are runs of a row's stored values, not of input features: 7 nonzeros spread over 50 columns
    in groups of 3 are 3 groups, where dense int8 would have ceil(50 / 3) = 17."""
    cols = np.array([0, 7, 13, 21, 30, 42, 49])
    vals = np.array([1.0, -2.0, 0.5, 4.0, 8.0, -0.25, 3.0], np.float32)
    sw = na.CSRWeight([0, 7, 7, 9], np.concatenate([cols, [3, 4]]), np.concatenate([vals, [1.0, -1.0]]),
                      (3, 50))
    w = na.quantize(sw, group_size=3)
    assert w.group_size == 3
    np.testing.assert_array_equal(group_pointer(w.indptr, 3), [0, 3, 3, 4])  # the empty row has no group
    np.testing.assert_array_equal(w.scales, (np.array([2.0, 8.0, 3.0, 1.0]) / 127).astype(np.float32))
    codes, scales = ref_quantize_csr(sw.indptr, sw.data, 3)
    np.testing.assert_array_equal(w.qdata, codes)
    np.testing.assert_array_equal(w.scales, scales)


def test_quantize_refuses_asymmetric_and_bad_group_sizes(rng):
    sw = pruned(rng, 4, 6, 0.5)
    with pytest.raises(ValueError, match=re.escape("a pruned weight is quantized symmetrically")):
        na.quantize(sw, symmetric=False)
    with pytest.raises(ValueError, match="group_size must be a positive integer, got 0"):
        na.quantize(sw, group_size=0)
    with pytest.raises(TypeError, match="symmetric must be a bool"):
        na.quantize(sw, symmetric="yes")


@st.composite
def pruned_weights(draw):
    n = draw(st.integers(1, 6))
    k = draw(st.integers(1, 12))
    magnitude = draw(st.sampled_from([1e-40, 1e-30, 1e-3, 1.0, 1e6, 1e30, 3e38]))
    values = draw(st.lists(st.floats(-1.0, 1.0, width=32), min_size=n * k, max_size=n * k))
    keep = draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k))
    W = (np.array(values, np.float64).reshape(n, k) * magnitude).astype(np.float32)
    W[~np.array(keep).reshape(n, k)] = 0
    return W, draw(st.sampled_from([None, 1, 2, 3, 5, 32]))


@given(pruned_weights())
def test_error_bound_and_zeros(case):
    W, gs = case
    sw = na.CSRWeight.from_dense(W)
    w = na.quantize(sw, group_size=gs)
    codes, scales = ref_quantize_csr(sw.indptr, sw.data, gs)
    np.testing.assert_array_equal(w.qdata, codes)
    np.testing.assert_array_equal(w.scales, scales)
    # every stored value's scale, then |q * s - w| <= s / 2 elementwise (float64 oracle, float64 rounding slack)
    value_scales = csr_int8_values64(w.indptr, np.ones(w.nnz), w.scales, gs)
    s = dense64(na.CSRWeight(w.indptr, w.indices, value_scales, w.shape))
    err = np.abs(dense64(w) - W.astype(np.float64))
    assert np.all(err <= s / 2 * (1 + 1e-9)), float(np.max(err - s / 2))
    # the float32 dequantization adds at most one rounding of the value
    err32 = np.abs(w.to_dense().astype(np.float64) - W.astype(np.float64))
    assert np.all(err32 <= s / 2 * (1 + 1e-9) + np.spacing(np.abs(W)).astype(np.float64))
    assert np.all(w.to_dense()[W == 0] == 0.0)
    assert np.isfinite(w.to_dense()).all()


# --------------------------------------------------------------------------------------------------
# malformed arrays: always ValueError / TypeError, never a crash or a wrong weight

@st.composite
def malformed(draw):
    """A valid random pruned-int8 weight, then one rule broken."""
    n = draw(st.integers(1, 6))
    k = draw(st.integers(1, 8))
    counts = [draw(st.integers(0, k)) for _ in range(n)]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate([np.sort(draw(st.permutations(range(k)))[:c]) for c in counts]).astype(np.int64)
    nnz = indices.size
    q = np.ones(nnz, np.int8)
    gs = draw(st.sampled_from([None, 1, 2, 3]))
    ns = n if gs is None else int(group_pointer(indptr, gs)[-1])
    scales = np.full(ns, 0.5)
    kind = draw(st.sampled_from(
        ["idx_high", "idx_neg", "indptr_dec", "indptr_short", "indptr_start", "len_idx", "len_q", "dtype_idx",
         "dtype_indptr", "dtype_q", "wide_q", "q_2d", "dup", "scale_neg", "scale_nan", "scale_inf", "len_scales",
         "dtype_scales", "gs_zero", "gs_float", "scales_for_rows"]))
    if kind in ("idx_high", "idx_neg") and nnz == 0:
        kind = "indptr_short"
    if kind == "dup" and max(counts) < 2:
        kind = "len_q"
    if kind in ("scale_neg", "scale_nan", "scale_inf") and ns == 0:
        kind = "len_scales"
    if kind == "scales_for_rows" and (gs is None or ns == n):
        kind = "gs_zero"
    p = draw(st.integers(0, max(nnz - 1, 0)))
    if kind == "idx_high":
        indices[p] = k + draw(st.integers(0, 5))
    elif kind == "idx_neg":
        indices[p] = -draw(st.integers(1, 5))
    elif kind == "indptr_dec":
        i = draw(st.integers(1, n))
        indptr[i] = indptr[i - 1] - draw(st.integers(1, 3))
    elif kind == "indptr_short":
        indptr = indptr[:-1]
    elif kind == "indptr_start":
        indptr = indptr + draw(st.integers(1, 3))
    elif kind == "len_idx":
        indices = np.append(indices, 0)
    elif kind == "len_q":
        q = q[:-1] if nnz else np.ones(1, np.int8)
    elif kind == "dtype_idx":
        indices = indices.astype(np.float64)
    elif kind == "dtype_indptr":
        indptr = indptr.astype(np.float32)
    elif kind == "dtype_q":
        q = q.astype(draw(st.sampled_from([np.uint8, np.int16, np.float32, np.bool_])))
    elif kind == "wide_q":
        q = np.full(nnz, 300, np.int64)
    elif kind == "q_2d":
        q = q.reshape(1, -1)
    elif kind == "dup":
        r = next(i for i, c in enumerate(counts) if c >= 2)
        j = indptr[r] + draw(st.integers(1, counts[r] - 1))
        indices[j] = indices[j - 1]
    elif kind == "scale_neg":
        scales[draw(st.integers(0, ns - 1))] = -draw(st.floats(1e-6, 1e3))
    elif kind == "scale_nan":
        scales[draw(st.integers(0, ns - 1))] = np.nan
    elif kind == "scale_inf":
        scales[draw(st.integers(0, ns - 1))] = draw(st.sampled_from([np.inf, -np.inf, 1e40]))
    elif kind == "len_scales":
        scales = np.append(scales, 0.5) if draw(st.booleans()) or ns == 0 else scales[:-1]
    elif kind == "dtype_scales":
        scales = scales.astype(np.int32)
    elif kind == "gs_zero":
        gs = draw(st.sampled_from([0, -1]))
    elif kind == "gs_float":
        gs = 2.0
    elif kind == "scales_for_rows":
        scales = np.full(n, 0.5)
    return kind, indptr, indices, q, scales, (n, k), gs


@given(malformed())
def test_malformed_arrays_always_raise(case):
    kind, indptr, indices, q, scales, shape, gs = case
    with pytest.raises((ValueError, TypeError)) as info:
        na.CSRInt8Weight(indptr, indices, q, scales, shape, group_size=gs)
    msg = str(info.value)
    assert any(name in msg for name in ("indptr", "indices", "qdata", "scales", "group_size", "shape")), msg


@given(st.data())
def test_arbitrary_arrays_never_crash(data):
    """Random dtypes, lengths and values: a weight that equals its oracle, or a ValueError/TypeError."""
    n = data.draw(st.integers(0, 4))
    k = data.draw(st.integers(0, 5))
    dtypes = st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.float32, np.float64])

    def arr(size_hi, lo, hi):
        size = data.draw(st.integers(0, size_hi))
        dt = data.draw(dtypes)
        vals = data.draw(st.lists(st.integers(lo, hi), min_size=size, max_size=size))
        return np.array(vals).astype(dt)

    indptr = np.sort(arr(n + 2, -1, 8))
    indices, q, scales = arr(8, -1, k + 1), arr(8, -3, 3), arr(n + 3, -1, 2)
    gs = data.draw(st.sampled_from([None, 1, 2, 0]))
    try:
        w = na.CSRInt8Weight(indptr, indices, q, scales, (n, k), group_size=gs)
    except (ValueError, TypeError):
        return
    np.testing.assert_array_equal(w.to_dense(), dense64(w).astype(np.float32))
    x = np.ones(k, np.float32)
    np.testing.assert_allclose(na.linear(x, w), ref_linear(x, w), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# parity of linear and spmm with the float64 oracle

# (n, k, density): 1x1, odd sizes, K = 97 (a multiple of no unroll and no tile), empty rows, nnz = 0
SHAPES = [(1, 1, 1.0), (5, 3, 0.6), (37, 97, 0.3), (64, 129, 0.1), (4, 7, 0.0), (80, 50, 0.001)]
BATCHES = [1, 2, 9, 17, 33]


@pytest.mark.parametrize("gs", GROUPS, ids=lambda g: f"gs={g}")
@pytest.mark.parametrize("n, k, density", SHAPES, ids=[f"{n=}-{k=}-{d=}" for n, k, d in SHAPES])
def test_linear_parity(rng, parity, path, dispatch, n, k, density, gs):
    w = na.quantize(pruned(rng, n, k, density), group_size=gs)
    for dtype in (np.float32, np.float64):
        bias = rng.standard_normal(n).astype(dtype)
        for b in BATCHES:
            x = rng.standard_normal((b, k)).astype(dtype)
            out = nan_out((b, n), dtype)
            y = na.linear(x, w, out=out)
            assert y is out
            parity(y, ref_linear(x, w), dtype=dtype)
            parity(na.linear(x, w, bias=bias), ref_linear(x, w, bias), dtype=dtype)
        v = rng.standard_normal(k).astype(dtype)
        parity(na.linear(v, w, bias=bias, out=nan_out((n,), dtype)), ref_linear(v, w, bias), dtype=dtype)
        x3 = rng.standard_normal((2, 3, k)).astype(dtype)
        y3 = na.linear(x3, w, out=nan_out((2, 3, n), dtype))
        parity(y3, ref_linear(x3.reshape(6, k), w).reshape(2, 3, n), dtype=dtype)


def _rows_within(y, ref, bound, rtol):
    """Row by row (and column by column): ``|y - ref| <= rtol * bound``, with ``bound = |W| @ |x|``."""
    assert not np.isnan(y).any(), "output elements were not written (NaN left)"
    bad = np.abs(y.astype(np.float64) - ref) > rtol * bound + 1e-300
    assert not bad.any(), f"first mismatch at {tuple(int(i) for i in np.argwhere(bad)[0])}"


@pytest.mark.parametrize("gs", GROUPS, ids=lambda g: f"gs={g}")
def test_row_lengths_0_to_69_row_by_row(rng, path, dispatch, gs):
    w = na.quantize(staircase(rng), group_size=gs)
    absw = np.abs(dense64(w))
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        for b in (1, 3, 8, 9, 20):
            x = rng.standard_normal((b, 97)).astype(dtype)
            y = na.linear(x, w, out=nan_out((b, 70), dtype))
            bound = np.abs(x.astype(np.float64)) @ absw.T
            _rows_within(y, ref_linear(x, w), bound, rtol)
            assert np.all(y[:, 0] == 0)  # the empty row
            B = rng.standard_normal((97, b)).astype(dtype)
            ys = na.spmm(w, B[:, 0] if b == 1 else B)
            ys = ys.reshape(70, -1)
            _rows_within(ys, ref_spmm(w, B[:, :1] if b == 1 else B), absw @ np.abs(B[:, :ys.shape[1]]), rtol)


@pytest.mark.parametrize("gs", GROUPS, ids=lambda g: f"gs={g}")
@pytest.mark.parametrize("n, k, density", SHAPES, ids=[f"{n=}-{k=}-{d=}" for n, k, d in SHAPES])
def test_spmm_parity(rng, parity, path, dispatch, n, k, density, gs):
    w = na.quantize(pruned(rng, n, k, density), group_size=gs)
    for dtype in (np.float32, np.float64):
        for p in (1, 2, 17, 33):
            B = rng.standard_normal((k, p)).astype(dtype)
            out = nan_out((n, p), dtype)
            assert na.spmm(w, B, out=out) is out
            parity(out, ref_spmm(w, B), dtype=dtype)
        v = rng.standard_normal(k).astype(dtype)
        parity(na.spmm(w, v, out=nan_out((n,), dtype)), ref_spmm(w, v), dtype=dtype)


@pytest.mark.parametrize("layout", ["F", "strided", "transposed-view"])
def test_non_contiguous_inputs(rng, parity, path, layout):
    w = na.quantize(pruned(rng, 45, 66, 0.3), group_size=5)
    base = rng.standard_normal((66, 24)).astype(np.float32)
    x = {"F": np.asfortranarray(base.T), "strided": base.T[::2], "transposed-view": base.T}[layout]
    parity(na.linear(x, w), ref_linear(x, w))
    B = {"F": np.asfortranarray(base), "strided": base[:, ::2], "transposed-view": base.T.T}[layout]
    parity(na.spmm(w, B), ref_spmm(w, B))


def test_wide_k_uses_int32_column_ids(rng, parity):
    k = 70_001
    cols = np.array([0, 5, 65_535, 65_536, 70_000])
    sw = na.CSRWeight([0, 3, 3, 5], cols, rng.standard_normal(5).astype(np.float32), (3, k))
    w = na.quantize(sw)
    assert w.indices.dtype == np.int32 and w.nbytes == 4 * 4 + 4 * 5 + 5 + 4 * 3
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((4, k)).astype(dtype)
        parity(na.linear(x, w, out=nan_out((4, 3), dtype)), ref_linear(x, w), dtype=dtype)
        parity(na.linear(x[0], w), ref_linear(x[0], w), dtype=dtype)
        parity(na.spmm(w, x.T.copy()), ref_spmm(w, x.T), dtype=dtype)


@pytest.mark.parametrize("gs", [None, 4], ids=lambda g: f"gs={g}")
def test_kernels_never_read_past_the_last_scale(rng, parity, path, dispatch, gs):
    """Trailing empty rows have no group (with ``group_size``): a kernel that read their "scale" would read
    past the array. The scales here are followed in memory by NaN, so such a read shows in the result."""
    W = np.zeros((6, 40), np.float32)
    W[:3, ::3] = rng.standard_normal((3, 14)).astype(np.float32)  # rows 3..5 empty
    w = na.quantize(na.CSRWeight.from_dense(W), group_size=gs)
    guarded = np.full(w.scales.size + 16, np.nan, np.float32)
    guarded[:w.scales.size] = w.scales
    w = na.CSRInt8Weight._trusted(w.indptr, w.indices, w.qdata, guarded[:w.scales.size], w.shape, gs)
    for b in (1, 3, 9, 33):
        x = rng.standard_normal((b, 40)).astype(np.float32)
        parity(na.linear(x, w, out=nan_out((b, 6), np.float32)), ref_linear(x, w))
        parity(na.spmm(w, x.T.copy(), out=nan_out((6, b), np.float32)), ref_spmm(w, x.T))
    parity(na.linear(x[0], w), ref_linear(x[0], w))


# --------------------------------------------------------------------------------------------------
# layers, save/load, shard, device, training

def _model(rng):
    w1 = na.quantize(pruned(rng, 12, 10, 0.4))
    w2 = na.quantize(pruned(rng, 3, 12, 0.5), group_size=2)
    return nn.MLP.from_arrays([w1, w2], [rng.standard_normal(12).astype(np.float32), None])


def test_layers_and_models(rng, parity):
    model = _model(rng)
    assert [row["format"] for row in model.summary()] == ["csr-int8", "csr-int8"]
    assert [layer.format for layer in model.linears] == ["csr-int8", "csr-int8"]
    x = rng.standard_normal((5, 10)).astype(np.float32)
    ref = ref_mlp(x, [layer.weight for layer in model.linears], [layer.bias for layer in model.linears], "relu")
    parity(model(x), ref)
    assert model.nbytes == sum(na.formats.nbytes(layer.weight) for layer in model.linears) + 12 * 4


def _saved_arrays_equal(a, b):
    name_a, arrays_a, params_a = na.formats.to_arrays(a)
    name_b, arrays_b, params_b = na.formats.to_arrays(b)
    assert name_a == name_b == "csr-int8" and params_a == params_b and sorted(arrays_a) == sorted(arrays_b)
    for key, x in arrays_a.items():
        y = arrays_b[key]
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), key


@pytest.mark.parametrize("ext", ["safetensors", "npz"])
def test_save_load_round_trip_is_exact_and_digest_checked(tmp_path, rng, ext):
    if ext == "safetensors":
        pytest.importorskip("safetensors")
    model = _model(rng)
    path = tmp_path / f"m.{ext}"
    na.save(path, model)
    back = na.load(path)
    for a, b in zip(model.linears, back.linears, strict=True):
        assert type(b.weight) is na.CSRInt8Weight and b.weight.group_size == a.weight.group_size
        _saved_arrays_equal(a.weight, b.weight)
    x = rng.standard_normal((4, 10)).astype(np.float32)
    assert np.array_equal(back(x), model(x))
    # one changed code: a valid weight by every format rule, caught by the tensor's digest
    blob = bytearray(path.read_bytes())
    if ext == "safetensors":
        import json

        n = int.from_bytes(blob[:8], "little")
        header = json.loads(bytes(blob[8:8 + n]))
        start = 8 + n + header["layers.0.qdata"]["data_offsets"][0]
        blob[start] ^= 0x01
        path.write_bytes(bytes(blob))
    else:
        with zipfile.ZipFile(path) as z:
            members = {name: z.read(name) for name in z.namelist()}
        raw = bytearray(members["layers.0.qdata.npy"])
        raw[-1] ^= 0x01  # the last code; the zip's own CRC is recomputed, the digest is not
        members["layers.0.qdata.npy"] = bytes(raw)
        with zipfile.ZipFile(path, "w") as z:
            for name, member in members.items():
                z.writestr(name, member)
    with pytest.raises(ValueError, match=re.escape("tensor 'layers.0.qdata' fails its SHA-256 check")):
        na.load(path)


@pytest.mark.parametrize("gs", GROUPS, ids=lambda g: f"gs={g}")
def test_shard_keeps_each_blocks_scales_and_results(rng, gs):
    w = na.quantize(staircase(rng, k=41, rows=23), group_size=gs)
    sharded = na.shard(w, 4)
    assert sharded.format == "csr-int8" and sharded.shape == w.shape
    bounds = sharded.bounds
    gptr = np.arange(24) if gs is None else group_pointer(w.indptr, gs)
    full = dense64(w)
    x = rng.standard_normal((6, 41)).astype(np.float32)
    y = na.linear(x, w)
    for j, s in enumerate(sharded.shards):
        r0, r1 = int(bounds[j]), int(bounds[j + 1])
        assert type(s) is na.CSRInt8Weight and s.group_size == gs and s.shape == (r1 - r0, 41)
        np.testing.assert_array_equal(s.scales, w.scales[gptr[r0]:gptr[r1]])
        np.testing.assert_array_equal(dense64(s), full[r0:r1])
        np.testing.assert_array_equal(na.linear(x, s), y[:, r0:r1])  # bitwise: a row's sum is its own
        np.testing.assert_array_equal(na.linear(x[0], s), na.linear(x[0], w)[r0:r1])
    np.testing.assert_array_equal(np.concatenate([s.scales for s in sharded.shards]), w.scales)


def test_training_is_refused_with_the_way_out(rng):
    model = _model(rng)
    with pytest.raises(TypeError, match=re.escape("layer 0 stores its weight as csr-int8, which training cannot "
                                                   "update: fine-tune the pruned float model first")):
        na.train(model, np.zeros((4, 10), np.float32), np.zeros(4, np.int64))
    assert not na.formats.is_trainable(model.linears[0].weight)


_NO_CUDA = """
import sys
sys.modules["numba_cuda"] = None
import numpy as np, numaccel as na
w = na.quantize(na.CSRWeight.from_dense(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], np.float32)))
assert np.allclose(na.linear(np.ones(3, np.float32), w), [3.0, 3.0], rtol=1e-2)
for call in (w.to_device, lambda: na.linear(np.ones(3, np.float32), w, device="cuda")):
    try:
        call()
    except RuntimeError as exc:
        print("RuntimeError:", exc)
"""


def test_to_device_without_cuda_raises_the_probes_error():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    res = subprocess.run([sys.executable, "-c", _NO_CUDA], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RuntimeError:")]
    assert len(lines) == 2, res.stdout
    assert all("needs the numba-cuda package" in ln and "device='cuda'" in ln for ln in lines), lines
