"""quantize and Int8Weight: exact codes against the oracle, the error bound, validation of malformed input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import ref_dequantize, ref_linear, ref_linear_w8a8, ref_quantize

import numaccel as na

GROUPS = [None, 32, 64, 128, 100]
BIG = float(np.float32(1e30))
TINY = float(np.float32(1e-30))


def _bound_ok(qw, W):
    """``|dequantize - W| <= scale / 2`` elementwise, plus float32 rounding of the values involved."""
    k = W.shape[1]
    s = qw.scales.astype(np.float64)
    s = np.repeat(s.reshape(W.shape[0], -1), qw.group_size or max(k, 1), axis=1)[:, :k]
    deq = qw.dequantize().astype(np.float64)
    err = np.abs(deq - W.astype(np.float64))
    slack = 4 * np.finfo(np.float32).eps * np.maximum(np.abs(W), np.abs(deq)) + 1e-44
    return bool((err <= s / 2 + slack).all())


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("group_size", GROUPS, ids=lambda g: f"group={g}")
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (5, 300), (3, 20)], ids=lambda s: f"shape={s}")
def test_quantize_matches_oracle(rng, shape, group_size, symmetric):
    W = rng.standard_normal(shape).astype(np.float32) * 3
    W[0, : min(5, shape[1])] = 0.0  # part of a group zero
    qw = na.quantize(W, group_size=group_size, symmetric=symmetric)
    q, s, z = ref_quantize(W, group_size, symmetric)
    np.testing.assert_array_equal(qw.qweight, q)
    np.testing.assert_array_equal(qw.scales, s)
    if symmetric:
        assert qw.zero_points is None
        assert np.abs(qw.qweight.astype(np.int16)).max() <= 127
    else:
        np.testing.assert_array_equal(qw.zero_points, z)
    assert qw.group_size == group_size and qw.shape == shape
    np.testing.assert_allclose(qw.dequantize(), ref_dequantize(q, s, z, group_size), rtol=1e-6, atol=0)
    assert _bound_ok(qw, W)


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_zero_and_constant_rows(symmetric):
    W = np.zeros((4, 70), dtype=np.float32)
    W[1] = 2.5
    W[2] = -1e-30
    W[3, :35] = 1e30
    qw = na.quantize(W, group_size=32, symmetric=symmetric)
    deq = qw.dequantize()
    assert np.isfinite(deq).all() and np.isfinite(qw.scales).all()
    np.testing.assert_array_equal(deq[0], 0.0)
    np.testing.assert_array_equal(qw.scales[0], 0.0)
    np.testing.assert_array_equal(deq[3, 64:], 0.0)
    assert _bound_ok(qw, W)


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_subnormal_group_keeps_a_scale(symmetric):
    """max |w| / 127 below the smallest float32 would round the scale to 0 and drop the group."""
    W = np.array([[7.7e-44, 0.0, -3e-45]], dtype=np.float32)
    qw = na.quantize(W, symmetric=symmetric)
    assert qw.scales[0] > 0
    assert _bound_ok(qw, W)


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_subnormal_scales_keep_the_bound(symmetric):
    """Scales among float32's subnormals are coarse: rounded down, the range would not fit the codes
    (found by hypothesis: a single 4.023e-42 dequantized to 3.93e-42, asymmetric). Every magnitude from the
    smallest subnormal to the normal range, one per row, alone and with a negative partner."""
    mags = np.geomspace(1.4e-45, 1e-35, 400).astype(np.float32)
    for W in (mags[:, None], np.stack([mags, -mags / 3], axis=1), np.stack([-mags, mags / 7], axis=1)):
        qw = na.quantize(W, symmetric=symmetric)
        assert (qw.scales > 0).all()
        assert _bound_ok(qw, W)
    assert _bound_ok(na.quantize(np.array([[4.023e-42]], np.float32), symmetric=False),
                     np.array([[4.023e-42]], np.float32))


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
        elements=st.floats(-BIG, BIG, width=32) | st.sampled_from([0.0, TINY, -TINY, 3.0, BIG]),
    ),
    st.sampled_from(GROUPS + [1, 7]),
    st.booleans(),
)
def test_quantize_error_bound_property(W, group_size, symmetric):
    qw = na.quantize(W, group_size=group_size, symmetric=symmetric)
    assert np.isfinite(qw.dequantize()).all()
    assert _bound_ok(qw, W)
    if not symmetric:
        assert qw.zero_points.dtype == np.int8


F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_groups_at_float32_max_stay_finite(symmetric):
    """A group reaching float32's maximum: its edge code must not dequantize past it to inf (scale rounded
    to nearest gave 127 * scale > max). Edges from 0.98 to 1.0 of the maximum, alone, against 0, against
    an opposite edge of every size, one group per row; groups below 0.99 of the maximum are quantized as
    the oracle says, unchanged."""
    edges = np.linspace(0.98, 1.0, 41) * F32_MAX
    partners = [0.0, 1.0, -1.0, -0.999, -0.995, -0.9, -0.5, 0.5, 0.999]
    rows = [[e, p * e] for e in edges for p in partners] + [[-e, -p * e] for e in edges for p in partners]
    W = np.array(rows, dtype=np.float32)
    W[-1] = F32_MAX  # exactly the maximum, both entries
    W[-2] = [F32_MAX, -F32_MAX]
    for group_size in (None, 1):
        qw = na.quantize(W, group_size=group_size, symmetric=symmetric)
        with np.errstate(over="raise"):
            deq = qw.dequantize()
        assert np.isfinite(deq).all()
        assert _bound_ok(qw, W)
        q, s, z = ref_quantize(W, group_size, symmetric)  # the oracle follows the near-maximum rule too
        np.testing.assert_array_equal(qw.qweight, q)
        np.testing.assert_array_equal(qw.scales, s)
        if not symmetric:
            np.testing.assert_array_equal(qw.zero_points, z)


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
        elements=st.floats(-F32_MAX, F32_MAX, width=32)
        | st.sampled_from([0.0, F32_MAX, -F32_MAX, 0.995 * F32_MAX, -0.9951 * F32_MAX]),
    ),
    st.sampled_from([None, 1, 2, 3]),
    st.booleans(),
)
def test_quantize_error_bound_near_float32_max(W, group_size, symmetric):
    qw = na.quantize(W, group_size=group_size, symmetric=symmetric)
    with np.errstate(over="raise"):
        assert np.isfinite(qw.dequantize()).all()
    assert _bound_ok(qw, W)


def test_quantize_rejects_nonfinite_and_bad_args():
    W = np.ones((3, 4), dtype=np.float32)
    W[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"W\[1, 2\]"):
        na.quantize(W)
    with pytest.raises(TypeError, match="floating"):
        na.quantize(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="2-D"):
        na.quantize(np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="group_size"):
        na.quantize(np.ones((2, 2), dtype=np.float32), group_size=0)
    with pytest.raises(TypeError, match="group_size"):
        na.quantize(np.ones((2, 2), dtype=np.float32), group_size=2.0)
    with pytest.raises(TypeError, match="symmetric"):
        na.quantize(np.ones((2, 2), dtype=np.float32), symmetric="no")


def test_int8weight_is_immutable_copy(rng):
    q = rng.integers(-127, 128, size=(6, 40)).astype(np.int8)
    s = rng.random((6, 2)).astype(np.float32)
    z = rng.integers(-128, 128, size=(6, 2)).astype(np.int8)
    w = na.Int8Weight(q, s, z, group_size=32)
    q0 = q.copy()
    q[:] = 0
    s[:] = 0
    np.testing.assert_array_equal(w.qweight, q0)
    for a in (w.qweight, w.scales, w.zero_points):
        assert not a.flags.writeable
    assert w.nbytes == 6 * 40 + 6 * 2 * 4 + 6 * 2
    # codes quantized elsewhere: GGML Q8_0 blocks of 32 with float16 scales
    g = na.Int8Weight(q0, np.ones((6, 2), np.float16), group_size=32)
    np.testing.assert_array_equal(g.dequantize(), q0.astype(np.float32))
    assert "Int8Weight" in repr(g)


def _malformed_cases():
    q = np.zeros((3, 8), np.int8)
    s = np.ones(3, np.float32)
    return [
        ("qweight int16", dict(qweight=q.astype(np.int16), scales=s), TypeError),
        ("qweight float", dict(qweight=q.astype(np.float32), scales=s), TypeError),
        ("qweight 1-D", dict(qweight=q[0], scales=s), ValueError),
        ("scales int", dict(qweight=q, scales=s.astype(np.int32)), TypeError),
        ("scales wrong shape", dict(qweight=q, scales=s[:2]), ValueError),
        ("scales 2-D for per-channel", dict(qweight=q, scales=s[:, None]), ValueError),
        ("scales NaN", dict(qweight=q, scales=np.array([1, np.nan, 1], np.float32)), ValueError),
        ("scales inf", dict(qweight=q, scales=np.array([1, 1, np.inf], np.float32)), ValueError),
        ("scales negative", dict(qweight=q, scales=np.array([1, -1, 1], np.float32)), ValueError),
        ("scales overflow float32", dict(qweight=q, scales=np.array([1, 1e300, 1])), ValueError),
        ("zero points float", dict(qweight=q, scales=s, zero_points=s), TypeError),
        ("zero points > 127", dict(qweight=q, scales=s, zero_points=np.array([0, 200, 0])), ValueError),
        ("zero points wrong shape", dict(qweight=q, scales=s, zero_points=np.zeros(4, np.int8)), ValueError),
        ("group scales wrong shape", dict(qweight=q, scales=np.ones((3, 3)), group_size=4), ValueError),
        ("group_size zero", dict(qweight=q, scales=s, group_size=0), ValueError),
        ("group_size bool", dict(qweight=q, scales=s, group_size=True), TypeError),
    ]


@pytest.mark.parametrize("case", _malformed_cases(), ids=lambda c: c[0])
def test_int8weight_rejects_malformed(case):
    _, kw, exc = case
    kw = dict(kw)
    group_size = kw.pop("group_size", None)
    with pytest.raises(exc):
        na.Int8Weight(**kw, group_size=group_size)


@given(
    st.sampled_from([np.int8, np.int16, np.uint8, np.float32, np.bool_]),
    st.integers(0, 5),
    st.integers(0, 9),
    st.one_of(st.none(), st.integers(-2, 12)),
    st.sampled_from([np.float32, np.float64, np.int32]),
    st.tuples(st.integers(0, 5), st.integers(0, 4)),
    st.one_of(st.none(), st.integers(-300, 300)),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
def test_int8weight_never_crashes(qdtype, n, k, group_size, sdtype, sshape, zp, sval):
    """Any combination either builds a consistent weight or raises TypeError/ValueError."""
    q = np.zeros((n, k), dtype=qdtype)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.full(sshape[:1] if sshape[1] == 0 else sshape, sval).astype(sdtype)
    zps = None if zp is None else np.full(s.shape, zp)
    try:
        w = na.Int8Weight(q, s, zps, group_size=group_size)
    except (TypeError, ValueError):
        return
    assert w.qweight.dtype == np.int8 and w.scales.dtype == np.float32
    assert np.isfinite(w.scales).all() and (w.scales >= 0).all()
    assert np.isfinite(w.dequantize()).all()


@pytest.mark.parametrize("group_size, symmetric", [(None, True), (16, False)])
def test_pickle_carries_public_arrays_only(rng, group_size, symmetric):
    """A weight sent to another process (Dask pickles it) travels at its own size and computes the same."""
    import pickle

    W = rng.standard_normal((24, 40)).astype(np.float32)
    w = na.quantize(W, group_size=group_size, symmetric=symmetric)
    x = rng.standard_normal((9, 40)).astype(np.float32)
    y = na.linear(x, w)  # builds the kernels' packed copies
    na.linear(x, w, activation_quant="int8")
    blob = pickle.dumps(w)
    assert len(blob) < w.nbytes + 2048
    w2 = pickle.loads(blob)
    assert w2.group_size == w.group_size
    np.testing.assert_array_equal(w2.qweight, w.qweight)
    np.testing.assert_array_equal(w2.scales, w.scales)
    assert not w2.qweight.flags.writeable
    np.testing.assert_array_equal(na.linear(x, w2), y)


def test_group_size_longer_than_the_row_is_one_group_and_huge_ones_are_refused(rng, parity):
    W = rng.standard_normal((3, 5)).astype(np.float32)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    for make in (lambda g: na.quantize(W, group_size=g),
                 lambda g: na.Int8Weight(na.quantize(W).qweight, na.quantize(W).scales[:, None], group_size=g)):
        w = make(2**61)
        assert w.group_size == 2**61 and w.scales.shape == (3, 1)
        parity(na.linear(x, w), ref_linear(x, w))
        parity(na.linear(x, w, activation_quant="int8"), ref_linear_w8a8(x, w), rtol=1e-5)
        with pytest.raises(ValueError, match=r"group_size must be below 2\*\*62"):
            make(2**62)
