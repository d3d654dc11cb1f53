"""Every integer and float range limit of the CPU kernels, tested at its boundary.

- W8A8 int32 group sums: exact up to 132 104 features without zero points and 66 311 with (127 * 128 * K
  and 127 * 255 * K below 2**31); a longer single group per row (per-channel scales) is summed in chunks.
  Each limit at K and K + 1 with the codes that reach it, on the VNNI and the portable paths, for one row
  and for a batch.
- Float intermediates: weight-only sums ``x * (q - z)`` before scaling, W8A8 scales by the weight scale
  before the activation scale; the documented bounds, just inside and just outside.
- W8A8 activation scales of float64 rows whose reciprocal overflows.
- CSR: uint16 column ids up to K = 65 536, int32 ``indptr`` up to 2**31 - 1 nonzeros.

CUDA twins of the int8 limits are in tests/test_int8_cuda.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import ref_linear, ref_linear_w8a8

import numaccel as na
import numaccel.formats.csr as sparse
import numaccel.plan.int8 as quant
from numaccel import _config
from numaccel._kernels import int8_tiles_x86

F32_MAX = float(np.finfo(np.float32).max)
F64_MAX = float(np.finfo(np.float64).max)
NO_ZP_LIMIT = 132_104  # (2**31 - 1) // (127 * 128)
ZP_LIMIT = 66_311  # (2**31 - 1) // (127 * 255)

NO_VNNI = pytest.mark.skipif(not int8_tiles_x86.HAVE_VNNI, reason="no AVX-512 VNNI on the CPU Numba compiles for")


@pytest.fixture(params=[pytest.param(True, id="vnni", marks=NO_VNNI), pytest.param(False, id="portable")])
def w8a8_path(request, monkeypatch):
    monkeypatch.setattr(quant, "_USE_VNNI", request.param)
    return request.param


# ------------------------------------------------------------------------------------------------------
# W8A8: exact int32 sums
def test_limits_match_int32():
    assert quant.w8a8_max_group(False) == NO_ZP_LIMIT
    assert quant.w8a8_max_group(True) == ZP_LIMIT
    assert 127 * 128 * NO_ZP_LIMIT <= 2**31 - 1 < 127 * 128 * (NO_ZP_LIMIT + 1)
    assert 127 * 255 * ZP_LIMIT <= 2**31 - 1 < 127 * 255 * (ZP_LIMIT + 1)


@pytest.mark.parametrize("has_zp", [False, True], ids=["no-zp", "zp"])
@pytest.mark.parametrize("k", [1, 5, 4095, 66_311, 66_312, 132_104, 132_105, 140_000, 400_003, 10**7 + 1],
                         ids=lambda k: f"{k=}")
def test_w8a8_chunk_lengths(k, has_zp):
    """Chunks of a long row: whole 4-feature steps, never above the limit, equal but for the last, covering
    K; rows within the limit keep their one group."""
    limit = ZP_LIMIT if has_zp else NO_ZP_LIMIT
    gs = quant._w8a8_group_size(k, k, 1, has_zp)
    if k <= limit:
        assert gs == k
        return
    chunks = -(-k // gs)
    assert gs % 4 == 0 and gs <= limit
    assert (chunks - 1) * gs < k <= chunks * gs
    assert chunks == -(-k // (limit - limit % 4))  # as few chunks as the limit allows


def test_w8a8_chunk_lengths_of_groups():
    assert quant._w8a8_group_size(1000, 32, 32, True) == 32
    assert quant._w8a8_group_size(2 * ZP_LIMIT, ZP_LIMIT, 2, True) == ZP_LIMIT
    assert quant._w8a8_group_size(2 * ZP_LIMIT + 2, ZP_LIMIT + 1, 2, True) is None
    assert quant._w8a8_group_size(2 * ZP_LIMIT + 2, ZP_LIMIT + 1, 2, False) == ZP_LIMIT + 1
    # one group longer than K: the row is the group
    assert quant._w8a8_group_size(140_000, 200_000, 1, False) == 70_000


def _extreme_weight(k: int, has_zp: bool):
    """Rows of codes that reach the int32 bound with activations of +-127: without zero points all -128,
    all 127 and alternating; with zero points ``q - z`` all 255, all -255 and alternating. Unit scales."""
    q = np.empty((3, k), np.int8)
    if has_zp:
        q[0], q[1] = 127, -128
        q[2, 0::2], q[2, 1::2] = 127, -128
        zps = np.array([-128, 127, -128], np.int8)
    else:
        q[0], q[1] = -128, 127
        q[2, 0::2], q[2, 1::2] = -128, 127
        zps = None
    return na.Int8Weight(q, np.ones(3, np.float32), zps)


def _extreme_activations(k: int, b: int) -> np.ndarray:
    """Rows whose codes are the values themselves (max |x| = 127, so the activation scale is 1): all 127,
    all -127, alternating 127 and -127, alternating -127 and 127, then integers spread over [-127, 127]."""
    x = np.empty((b, k), np.float32)
    for i in range(b):
        if i < 2:
            x[i] = 127 if i == 0 else -127
        elif i < 4:
            x[i, 0::2], x[i, 1::2] = (127, -127) if i == 2 else (-127, 127)
        else:
            x[i] = (np.arange(k) * (2 * i + 1)) % 255 - 127
            x[i, 0] = 127
    return x


@pytest.mark.parametrize("b", [1, 5], ids=lambda b: f"{b=}")
@pytest.mark.parametrize(
    "k,has_zp",
    [(NO_ZP_LIMIT, False), (NO_ZP_LIMIT + 1, False), (ZP_LIMIT, True), (ZP_LIMIT + 1, True)],
    ids=lambda v: str(v),
)
def test_w8a8_int32_boundary(parity, w8a8_path, k, has_zp, b):
    """At the limit the sums fill int32 (|sum| up to 2**31 - 9 215); one feature more and a single int32
    sum would wrap. The result must be the exact integer, up to float32 rounding."""
    qw = _extreme_weight(k, has_zp)
    x = _extreme_activations(k, b)
    ref = ref_linear_w8a8(x, qw)
    assert np.abs(ref).max() > (2**31 - 1) - 127 * 255 * 2  # the boundary is really reached
    y = na.linear(x if b > 1 else x[0], qw, activation_quant="int8")
    parity(y, ref if b > 1 else ref[0], rtol=1e-6)


@pytest.mark.parametrize("b", [1, 20], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_w8a8_long_rows_of_ones(parity, w8a8_path, symmetric, b):
    """``quantize(ones((16, 140000)))`` times ones: 140000 in every output (one int32 sum gave -126288.5)."""
    k = 140_000
    qw = na.quantize(np.ones((16, k), np.float32), symmetric=symmetric)
    x = np.ones((b, k), np.float32)
    y = na.linear(x, qw, activation_quant="int8")
    parity(y, ref_linear_w8a8(x, qw), rtol=1e-6)
    np.testing.assert_allclose(y, k, rtol=1e-6)


def test_w8a8_single_long_group(parity, w8a8_path):
    """A group_size above K is one group per row, split like per-channel scales."""
    k = 140_001
    qw = _extreme_weight(k, True)
    qw = na.Int8Weight(qw.qweight, np.ones((3, 1), np.float32), qw.zero_points[:, None], group_size=200_000)
    x = _extreme_activations(k, 3)
    parity(na.linear(x, qw, activation_quant="int8"), ref_linear_w8a8(x, qw), rtol=1e-6)


def test_w8a8_groups_at_the_limit(parity, w8a8_path):
    """Two groups of exactly the limit per row are summed as they are, exactly."""
    k = 2 * ZP_LIMIT
    base = _extreme_weight(k, True)
    zps = np.repeat(base.zero_points[:, None], 2, axis=1)
    qw = na.Int8Weight(base.qweight, np.ones((3, 2), np.float32), zps, group_size=ZP_LIMIT)
    x = _extreme_activations(k, 2)
    parity(na.linear(x, qw, activation_quant="int8"), ref_linear_w8a8(x, qw), rtol=1e-6)


def test_w8a8_refuses_several_long_groups(rng, parity):
    k = 2 * (ZP_LIMIT + 1)
    q = rng.integers(-128, 128, size=(2, k)).astype(np.int8)
    qw = na.Int8Weight(q, np.ones((2, 2), np.float32), np.ones((2, 2), np.int8), group_size=ZP_LIMIT + 1)
    x = rng.standard_normal((2, k)).astype(np.float32)
    with pytest.raises(ValueError, match=f"exact for groups of up to {ZP_LIMIT} features with zero points; "
                                         f"this weight has group_size={ZP_LIMIT + 1} with 2 groups per row"):
        na.linear(x, qw, activation_quant="int8")
    parity(na.linear(x, qw), ref_linear(x, qw))  # weight-only has no such limit
    # without zero points the same groups are within the limit
    qs = na.Int8Weight(q, np.ones((2, 2), np.float32), group_size=ZP_LIMIT + 1)
    parity(na.linear(x, qs, activation_quant="int8"), ref_linear_w8a8(x, qs), rtol=1e-5)


def test_w8a8_chunks_with_a_small_limit(rng, parity, w8a8_path, monkeypatch):
    """The chunked path on odd shapes, with the limit lowered to 10 features (chunks of 8 or fewer)."""
    monkeypatch.setattr(quant, "_W8A8_SUM_MAX", 127 * 255 * 10 + 3)
    for k, b, symmetric in [(30, 1, False), (37, 7, False), (29, 3, True), (10, 4, False), (11, 9, False)]:
        qw = na.quantize(rng.standard_normal((70, k)).astype(np.float32), symmetric=symmetric)
        x = rng.standard_normal((b, k)).astype(np.float32)
        out = np.full((b, 70), np.nan, np.float32)
        na.linear(x, qw, out=out, activation_quant="int8")
        parity(out, ref_linear_w8a8(x, qw), rtol=1e-5)
        gs, s8, _ = quant.w8a8_groups(qw)
        assert (s8.shape[1] > 1) == (k > quant.w8a8_max_group(not symmetric))


# ------------------------------------------------------------------------------------------------------
# float intermediates (documented in linear's Notes)
def _codes_weight(k: int, scale: float, zero_points: bool):
    q = np.full((2, k), 127, np.int8)
    zps = np.full(2, -128, np.int8) if zero_points else None
    return na.Int8Weight(q, np.full(2, scale, np.float32), zps)


@pytest.mark.parametrize("panels", [True, False], ids=["panels", "plain"])
@pytest.mark.parametrize("b", [1, 9], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("zero_points", [False, True], ids=["sym", "zp"])
def test_weight_only_activation_bound(monkeypatch, parity, zero_points, b, panels):
    """Weight-only sums ``x * (q - z)`` over a group before scaling: finite and right while
    ``sum |x| * |q - z|`` stays below float32's maximum; past it (the documented bound) inf or NaN where
    ``x @ dequantize().T`` is finite, never a wrong finite number. The bound is reached exactly by the
    panel kernel and, without zero points, by the plain one (which forms the zero-point term in float64)."""
    monkeypatch.setattr(quant, "_USE_PANELS", panels)
    k = 8
    qw = _codes_weight(k, 1.0 / 255, zero_points)
    step = 255 if zero_points else 127  # |q - z|
    edge = F32_MAX / (step * k)
    inside = np.full((b, k), edge * 0.999, np.float32)
    parity(na.linear(inside, qw), ref_linear(inside, qw), rtol=1e-5)
    outside = np.full((b, k), edge * 1.001, np.float32)
    ref = ref_linear(outside, qw)
    assert np.isfinite(ref).all() and np.abs(ref).max() < F32_MAX / 10
    with np.errstate(over="ignore", invalid="ignore"):
        y = na.linear(outside, qw)
    finite = np.isfinite(y)
    parity(y[finite], ref[finite], rtol=1e-5)
    if panels or not zero_points:
        assert not finite.any()


def test_weight_only_activation_bound_float64(parity):
    k = 8
    qw = _codes_weight(k, 1.0 / 255, True)
    edge = F64_MAX / (255 * k)
    inside = np.full((2, k), edge * 0.999)
    parity(na.linear(inside, qw) / edge, ref_linear(inside, qw) / edge)  # scaled: the norm stays finite
    assert np.isinf(na.linear(np.full((2, k), edge * 1.001), qw)).all()


@pytest.mark.parametrize("b", [1, 3], ids=lambda b: f"{b=}")
def test_w8a8_weight_bound(w8a8_path, parity, b):
    """W8A8 scales each group's integer sum by the weight scale before the activation scale: finite and
    right while ``scale * 127 * 127 * K`` (``max|W| * 127 * K``) stays below float32's maximum, inf past it
    although the float product is finite there."""
    k = 8
    x = np.ones((b, k), np.float32)
    edge = F32_MAX / (127 * 127 * k)
    inside = _codes_weight(k, edge * 0.999, False)
    parity(na.linear(x, inside, activation_quant="int8"), ref_linear_w8a8(x, inside), rtol=1e-5)
    outside = _codes_weight(k, edge * 1.001, False)
    assert np.isfinite(ref_linear_w8a8(x, outside)).all()
    with np.errstate(over="ignore"):
        assert np.isinf(na.linear(x, outside, activation_quant="int8")).all()


# ------------------------------------------------------------------------------------------------------
# W8A8 activation scales of tiny float64 rows
@pytest.mark.parametrize("b", [1, 4], ids=lambda b: f"{b=}")
def test_w8a8_tiny_float64_rows(rng, w8a8_path, parity, b):
    """A row's scale ``max|x| / 127`` whose reciprocal overflows (max|x| < 127 / float64 max = 7.07e-307)
    is still applied: the codes are ``x / s``, clipped. Rows from just above that point down to 1e-318,
    against the float product (a W8A8 result is within about 1 % of it for these data)."""
    qw = na.quantize(rng.standard_normal((70, 64)).astype(np.float32))
    edge = 127 / F64_MAX
    for amax in (1e-300, edge * 1.0001, edge * 0.9999, 1e-308, 1e-312, 1e-318):
        x = rng.standard_normal((b, 64))
        x *= amax / np.abs(x).max(axis=1, keepdims=True)
        y = na.linear(x, qw, activation_quant="int8")
        assert y.dtype == np.float64
        parity(y / amax, ref_linear_w8a8(x, qw) / amax, rtol=1e-5)  # scaled: the norms would underflow
        parity(y / amax, ref_linear(x, qw) / amax, rtol=2e-2)


def test_w8a8_float64_row_below_the_scale_is_zero(w8a8_path):
    """A row whose scale underflows to 0 (max|x| < about 3e-322) is taken as all zeros (documented)."""
    qw = na.quantize(np.ones((3, 4), np.float32))
    x = np.full((2, 4), 1e-322)
    x[1] = 1e-300
    y = na.linear(x, qw, activation_quant="int8")
    np.testing.assert_array_equal(y[0], 0.0)
    np.testing.assert_allclose(y[1] / 1e-300, 4.0, rtol=1e-2)


# ------------------------------------------------------------------------------------------------------
# CSR index widths
@pytest.fixture(params=["tiles", "plain"])
def csr_path(request, monkeypatch):
    if request.param == "tiles" and not _config.CSR_USE_TILES:
        pytest.skip("no AVX-512 (or JIT disabled): the plain kernels are the only path")
    monkeypatch.setattr(_config, "CSR_USE_TILES", request.param == "tiles")
    return request.param


@pytest.mark.parametrize("k", [65_536, 65_537], ids=lambda k: f"{k=}")
def test_csr_column_ids_at_uint16_edge(rng, parity, csr_path, dispatch, k):
    """K = 65 536 is the widest that stores column ids as uint16 (ids up to 65 535); K = 65 537 stores
    int32. The highest columns, 65 535 and (for 65 537) 65 536, are present and must be read right."""
    cols = [[0, 65_534, 65_535], [], [1, k - 1], [65_535], list(range(k - 9, k))]
    indptr = np.cumsum([0] + [len(c) for c in cols])
    indices = np.concatenate([np.array(c, dtype=np.int64) for c in cols])
    data = rng.standard_normal(indices.size).astype(np.float32)
    w = na.CSRWeight(indptr, indices, data, (len(cols), k))
    id_bytes = 2 if k <= 65_536 else 4
    assert w.nbytes == w.indptr.nbytes + (id_bytes + 4) * w.nnz
    assert w.indices.dtype == (np.uint16 if k <= 65_536 else np.int32)
    np.testing.assert_array_equal(w.indices, indices)
    dense = w.to_dense()
    rows = np.repeat(np.arange(len(cols)), np.diff(indptr))
    np.testing.assert_array_equal(dense[rows, indices], data)
    assert np.count_nonzero(dense) == np.count_nonzero(data)
    for b in (1, 8):
        x = rng.standard_normal((b, k)).astype(np.float32)
        out = np.full((b, len(cols)), np.nan, np.float32)
        parity(na.linear(x, w, out=out), ref_linear(x, w))
        parity(na.linear(x[0], w), ref_linear(x[0], w))
        parity(na.spmm(w, x.T), ref_linear(x, w).T)


def test_csr_indptr_width_chooser(rng, parity, monkeypatch):
    """``indptr`` is int32 while nnz <= 2**31 - 1 (its largest value, nnz, then fits) and int64 from 2**31.
    That many nonzeros cannot be allocated here: the threshold is checked, then the same comparison is run
    with the threshold lowered to 5 nonzeros, on both sides of it, through the kernels."""
    assert sparse._INT32_MAX == 2**31 - 1 == np.iinfo(np.int32).max
    monkeypatch.setattr(sparse, "_INT32_MAX", 5)
    W = np.zeros((4, 9), np.float32)
    W[0, [0, 8]] = 1.5
    W[2, [1, 2, 3]] = -2.0
    w5 = na.CSRWeight.from_dense(W)
    assert w5.nnz == 5 and w5.indptr.dtype == np.int32
    W[3, 4] = 0.25
    w6 = na.CSRWeight.from_dense(W)
    assert w6.nnz == 6 and w6.indptr.dtype == np.int64
    for w in (w5, w6):
        for b in (1, 8):
            x = rng.standard_normal((b, 9)).astype(np.float32)
            parity(na.linear(x, w), ref_linear(x, w))
        np.testing.assert_array_equal(w.to_dense(), ref_linear(np.eye(9), w).T)


def test_csr_in_features_past_int32_ids_are_refused():
    # column ids are stored as int32 at most: K = 2**31 still fits (ids up to 2**31 - 1), more would wrap
    one = (np.array([0, 1]), np.array([2**31 - 1], np.int64))
    w = na.CSRWeight(*one, np.array([1.0], np.float32), (1, 2**31))
    assert int(w.indices[0]) == 2**31 - 1
    q = na.CSRInt8Weight(*one, np.array([3], np.int8), np.array([0.5], np.float32), (1, 2**31))
    assert int(q.indices[0]) == 2**31 - 1
    for k in (2**31 + 1, 2**32 + 10):
        ids = np.array([k - 1], np.int64)
        with pytest.raises(ValueError, match=r"shape\[1\] \(in_features\) must be at most 2\*\*31"):
            na.CSRWeight(np.array([0, 1]), ids, np.array([1.0], np.float32), (1, k))
        with pytest.raises(ValueError, match=r"at most 2\*\*31"):
            na.CSRInt8Weight(np.array([0, 1]), ids, np.array([3], np.int8), np.array([0.5], np.float32), (1, k))
