"""CSRWeight format, magnitude pruning, and validation (every rule with its message)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import dense64

import numaccel as na
from numaccel.plan import csr as plan_csr

# --------------------------------------------------------------------------------------------------
# format and conversions


def _small(rng, n=7, k=11, density=0.4):
    W = rng.standard_normal((n, k)).astype(np.float32)
    W[rng.random((n, k)) > density] = 0
    W[2] = 0  # an empty row
    return W


def test_from_dense_roundtrip(rng):
    W = _small(rng)
    w = na.CSRWeight.from_dense(W)
    assert w.shape == W.shape
    assert w.nnz == np.count_nonzero(W)
    np.testing.assert_array_equal(w.to_dense(), W)
    assert w.density == pytest.approx(w.nnz / W.size)
    assert w.indptr.dtype == np.int32 and w.indices.dtype == np.uint16 and w.data.dtype == np.float32
    assert w.indptr[0] == 0 and w.indptr[-1] == w.nnz
    assert repr(w).startswith("CSRWeight(shape=(7, 11)")


def test_nbytes_counts_narrow_indices(rng):
    w = na.CSRWeight.from_dense(_small(rng))
    assert w.nbytes == w.indptr.nbytes + 2 * w.nnz + 4 * w.nnz  # uint16 column ids when K <= 65536
    wide = na.CSRWeight([0, 1], [70_000], [1.0], shape=(1, 70_001))
    assert wide.nbytes == 2 * 4 + 4 + 4
    assert wide.indices.dtype == np.int32 and wide.indices[0] == 70_000


def test_to_scipy_roundtrip(rng):
    W = _small(rng)
    w = na.CSRWeight.from_dense(W)
    m = w.to_scipy()
    assert isinstance(m, sp.csr_array) and m.dtype == np.float32
    np.testing.assert_array_equal(m.toarray(), W)
    m.data[:] = 0  # a copy: the weight is unaffected
    np.testing.assert_array_equal(w.to_dense(), W)
    np.testing.assert_array_equal(na.CSRWeight.from_scipy(w.to_scipy()).to_dense(), W)


def test_from_scipy_sums_duplicates_sorts_and_keeps_explicit_zeros():
    indptr = np.array([0, 3, 4])
    indices = np.array([2, 0, 2, 1])
    data = np.array([1.0, 2.0, 3.0, 0.0])
    m = sp.csr_matrix((data, indices, indptr), shape=(2, 3))
    before = (m.indptr.copy(), m.indices.copy(), m.data.copy())
    w = na.CSRWeight.from_scipy(m)
    np.testing.assert_array_equal(w.to_dense(), [[2.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    assert w.nnz == 3  # duplicates summed; the explicit zero of row 1 is kept
    np.testing.assert_array_equal(w.indices, [0, 2, 1])
    for a, b in zip(before, (m.indptr, m.indices, m.data), strict=True):
        np.testing.assert_array_equal(a, b)  # caller's object untouched
    assert not m.has_sorted_indices


@pytest.mark.parametrize("matrix", [False, True], ids=["array", "matrix"])
@pytest.mark.parametrize("fmt", ["csr", "coo", "csc", "lil", "dok", "bsr", "dia"])
def test_from_scipy_any_format(rng, fmt, matrix):
    W = _small(rng).astype(np.float64)
    m = (sp.csr_matrix(W) if matrix else sp.csr_array(W)).asformat(fmt)
    w = na.CSRWeight.from_scipy(m)
    np.testing.assert_array_equal(w.to_dense(), W.astype(np.float32))
    assert w.nnz == np.count_nonzero(W)
    # the dense entry points read a scipy matrix the same way
    np.testing.assert_array_equal(na.prune(m, 0.0).to_dense(), W.astype(np.float32))


def test_from_scipy_bsr_blocks_and_coo_duplicates():
    W = np.arange(1, 25, dtype=np.float64).reshape(4, 6)
    W[:2, :3] = 0.0
    m = sp.bsr_array(W, blocksize=(2, 3))
    np.testing.assert_array_equal(na.CSRWeight.from_scipy(m).to_dense(), W.astype(np.float32))
    coo = sp.coo_array((np.array([1.0, 2.0, 3.0, 4.0]), (np.array([1, 0, 1, 1]), np.array([2, 1, 2, 0]))),
                       shape=(2, 3))
    w = na.CSRWeight.from_scipy(coo)
    np.testing.assert_array_equal(w.to_dense(), [[0.0, 2.0, 0.0], [4.0, 0.0, 4.0]])
    np.testing.assert_array_equal(w.indptr, [0, 1, 3])


def test_from_scipy_validates_hand_assigned_arrays_before_scipy_sees_them():
    """A matrix whose arrays were assigned by hand (a corrupt file, a buggy producer): SciPy's compiled
    code trusts ``indptr``, so these once crashed the interpreter inside ``sum_duplicates``; now numaccel's
    own checks reject them first and the caller's object is left as it was."""
    m = sp.csr_array((np.ones(4), np.array([0, 1, 2, 0]), np.array([0, 2, 4])), shape=(2, 3))
    m.indptr = np.array([0, 9, 4], dtype=np.int32)  # non-monotonic, an entry past nnz
    with pytest.raises(ValueError, match=re.escape("m.indptr must be non-decreasing; m.indptr[2]=4 < m.indptr[1]=9")):
        na.CSRWeight.from_scipy(m)
    with pytest.raises(ValueError, match="A.indptr must be non-decreasing"):
        na.spmm(m, np.ones((3, 2), np.float32))
    np.testing.assert_array_equal(m.indptr, [0, 9, 4])
    m.indptr = np.array([0, 2, 4], dtype=np.int32)
    m.indices = np.array([0, 1, 2, 3], dtype=np.int32)
    with pytest.raises(ValueError, match=re.escape("W.indices must be in [0, 3) (shape[1] = 3); W.indices[3] = 3")):
        na.prune(m, 0.5)
    c = sp.csc_array(np.eye(3))
    c.indices = np.array([0, 1, 5], dtype=np.int32)
    with pytest.raises(ValueError, match=re.escape("m.indices must be in [0, 3) (shape[0] = 3)")):
        na.CSRWeight.from_scipy(c)
    coo = sp.coo_array(np.eye(3))
    coo.coords = (np.array([0, 1, 3]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=re.escape("m.row must be in [0, 3) (shape[0] = 3); m.row[2] = 3")):
        na.CSRWeight.from_scipy(coo)
    d = sp.dia_array(np.eye(3))
    d.data = np.array([[1.0, np.nan, 1.0]])
    with pytest.raises(ValueError, match="finite"):
        na.CSRWeight.from_scipy(d)


def test_arrays_are_copied_and_read_only():
    indptr = np.array([0, 1, 2])
    indices = np.array([1, 0])
    data = np.array([1.5, -2.0], dtype=np.float32)
    w = na.CSRWeight(indptr, indices, data, shape=(2, 2))
    data[0] = 99.0
    indices[0] = 0
    np.testing.assert_array_equal(w.to_dense(), [[0.0, 1.5], [-2.0, 0.0]])
    for a in (w.indptr, w.indices, w.data):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 0


def test_int64_and_unsigned_inputs_accepted():
    w = na.CSRWeight(np.array([0, 2], dtype=np.int64), np.array([0, 3], dtype=np.uint64),
                     np.array([1.0, 2.0]), shape=(1, 4))
    assert w.indptr.dtype == np.int32
    np.testing.assert_array_equal(w.to_dense(), [[1.0, 0.0, 0.0, 2.0]])


def test_empty_shapes():
    w = na.CSRWeight([0], [], np.zeros(0, np.float32), shape=(0, 5))
    assert w.shape == (0, 5) and w.nnz == 0 and w.density == 0.0
    z = na.CSRWeight([0, 0, 0], [], np.zeros(0, np.float32), shape=(2, 0))
    assert z.to_dense().shape == (2, 0)


# --------------------------------------------------------------------------------------------------
# validation: every rule, with its message

VALID = dict(indptr=[0, 2, 3], indices=[0, 2, 1], data=[1.0, 2.0, 3.0], shape=(2, 3))


def _make(**kw):
    args = dict(VALID)
    args.update(kw)
    return na.CSRWeight(args["indptr"], args["indices"], args["data"], args["shape"])


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(shape=(2,)), ValueError, "shape must be a pair (out_features, in_features), got (2,)"),
        (dict(shape=5), ValueError, "shape must be a pair"),
        (dict(shape=(2.0, 3)), TypeError, "shape[0] must be an integer, got float"),
        (dict(shape=(2, -3)), ValueError, "shape[1] must be non-negative, got -3"),
        (dict(indptr=[0.0, 2.0, 3.0]), TypeError, "indptr must be an integer array, got float64"),
        (dict(indptr=np.array([False, True, True])), TypeError, "indptr must be an integer array, got bool"),
        (dict(indptr=[[0, 2, 3]]), ValueError, "indptr must be 1-D, got 2-D"),
        (dict(indices=[0.0, 2.0, 1.0]), TypeError, "indices must be an integer array, got float64"),
        (dict(data=[1, 2, 3]), TypeError, "data must be a floating-point array, got int64"),
        (dict(data=[[1.0, 2.0, 3.0]]), ValueError, "data must be 1-D, got 2-D"),
        (dict(indptr=[0, 3]), ValueError, "indptr must have length shape[0] + 1 = 3, got 2"),
        (dict(indptr=[1, 2, 3]), ValueError, "indptr[0] must be 0, got 1"),
        (dict(indptr=[0, 3, 2], indices=[0, 1, 2]), ValueError,
         "indptr must be non-decreasing; indptr[2]=2 < indptr[1]=3"),
        (dict(indptr=[0, 2, 4]), ValueError,
         "indptr[-1] = 4 must equal len(indices) = 3 and len(data) = 3"),
        (dict(data=[1.0, 2.0]), ValueError, "len(indices) = 3 and len(data) = 2"),
        (dict(indices=[0, 3, 1]), ValueError, "indices must be in [0, 3) (shape[1] = 3); indices[1] = 3"),
        (dict(indices=[0, 2, -1]), ValueError, "indices[2] = -1"),
        (dict(indices=[2, 0, 1]), ValueError,
         "row 0 has unsorted column ids indices[0]=2, indices[1]=0; use CSRWeight.from_scipy(m)"),
        (dict(indices=[1, 1, 1]), ValueError, "row 0 has duplicate column ids indices[0]=1, indices[1]=1"),
        (dict(data=[1.0, np.nan, 3.0]), ValueError, "data must be finite (as float32), got nan at data[1]"),
        (dict(data=[1.0, 2.0, -np.inf]), ValueError, "got -inf at data[2]"),
        (dict(data=[1.0, 1e39, 3.0]), ValueError, "data must be finite (as float32), got 1e+39 at data[1]"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_validation_messages(kw, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        _make(**kw)


def test_from_dense_rejects():
    with pytest.raises(TypeError, match=re.escape("W must be a floating-point array, got int64")):
        na.CSRWeight.from_dense(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("W must be 2-D (out_features, in_features), got 1-D")):
        na.CSRWeight.from_dense(np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("W must be finite, got nan at W[0, 1]")):
        na.CSRWeight.from_dense(np.array([[0.0, np.nan]]))


def test_from_scipy_rejects():
    with pytest.raises(TypeError, match="m must be a scipy.sparse matrix or array, got ndarray"):
        na.CSRWeight.from_scipy(np.eye(2))
    with pytest.raises(TypeError, match="m must have a floating-point dtype, got int64"):
        na.CSRWeight.from_scipy(sp.csr_array(np.eye(2, dtype=np.int64)))


@st.composite
def malformed_csr(draw):
    """A valid random CSR, then one rule broken."""
    n = draw(st.integers(1, 6))
    k = draw(st.integers(1, 8))
    counts = [draw(st.integers(0, k)) for _ in range(n)]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate([np.sort(draw(st.permutations(range(k)))[:c]) for c in counts]).astype(np.int64)
    data = np.ones(indices.size)
    shape = (n, k)
    nnz = indices.size
    kind = draw(st.sampled_from(
        ["idx_high", "idx_neg", "indptr_dec", "indptr_short", "indptr_start", "len_idx", "len_data",
         "dtype_idx", "dtype_indptr", "dtype_data", "nan", "inf", "dup"]
    ))
    if kind in ("idx_high", "idx_neg", "nan", "inf") and nnz == 0:
        kind = "indptr_short"
    if kind == "dup" and max(counts) < 2:
        kind = "len_data"
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
    elif kind == "len_data":
        data = data[:-1] if nnz else np.ones(1)
    elif kind == "dtype_idx":
        indices = indices.astype(np.float64)
    elif kind == "dtype_indptr":
        indptr = indptr.astype(np.float32)
    elif kind == "dtype_data":
        data = data.astype(np.int32)
    elif kind == "nan":
        data[p] = np.nan
    elif kind == "inf":
        data[p] = draw(st.sampled_from([np.inf, -np.inf]))
    elif kind == "dup":
        r = next(i for i, c in enumerate(counts) if c >= 2)
        q = indptr[r] + draw(st.integers(1, counts[r] - 1))
        indices[q] = indices[q - 1]
    return kind, indptr, indices, data, shape


@given(malformed_csr())
def test_malformed_csr_always_raises(case):
    kind, indptr, indices, data, shape = case
    with pytest.raises((ValueError, TypeError)) as info:
        na.CSRWeight(indptr, indices, data, shape)
    msg = str(info.value)
    assert any(name in msg for name in ("indptr", "indices", "data", "shape")), msg


# --------------------------------------------------------------------------------------------------
# pruning


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 0.999, 1.0])
def test_magnitude_mask_exact_count(rng, sparsity):
    W = rng.standard_normal((40, 50))
    mask = na.magnitude_mask(W, sparsity)
    assert mask.dtype == bool and mask.shape == W.shape
    keep = round((1 - sparsity) * W.size)
    assert mask.sum() == keep
    if 0 < keep < W.size:
        assert np.abs(W[mask]).min() >= np.abs(W[~mask]).max()


def test_magnitude_mask_rows_and_ties():
    W = np.array([[1.0, -1.0, 1.0, 0.5], [2.0, 2.0, -2.0, 2.0]])
    m = na.magnitude_mask(W, 0.5, granularity="row")
    np.testing.assert_array_equal(m, [[True, True, False, False], [True, True, False, False]])
    t = na.magnitude_mask(W, 0.75)
    np.testing.assert_array_equal(t, [[False] * 4, [True, True, False, False]])


def test_magnitude_mask_row_counts(rng):
    m = na.magnitude_mask(rng.standard_normal((9, 30)), 0.8, granularity="row")
    np.testing.assert_array_equal(m.sum(axis=1), np.full(9, 6))


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(sparsity=1.5), ValueError, "sparsity must be in [0, 1], got 1.5"),
        (dict(sparsity=True), TypeError, "sparsity must be a real number in [0, 1], got bool"),
        (dict(sparsity="0.5"), TypeError, "got str"),
        (dict(sparsity=0.5, granularity="col"), ValueError,
         "granularity must be 'tensor' or 'row', got 'col'"),
    ],
)
def test_magnitude_mask_rejects(kw, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        na.magnitude_mask(np.ones((2, 2)), **kw)


def test_prune_values(rng):
    W = rng.standard_normal((20, 30)).astype(np.float32)
    w = na.prune(W, 0.75)
    mask = na.magnitude_mask(W, 0.75)
    np.testing.assert_array_equal(w.to_dense(), np.where(mask, W, 0))
    assert w.nnz == mask.sum()
    W2 = W.copy()
    W2[0, :] = 0
    w2 = na.prune(W2, 0.0)  # kept zeros are dropped
    assert w2.nnz == W.size - 30
    np.testing.assert_array_equal(dense64(w2), W2.astype(np.float64))


# --------------------------------------------------------------------------------------------------
# argument checks of linear and spmm with a CSR weight


@pytest.fixture
def w23():
    return na.CSRWeight.from_dense(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=np.float32))


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda w: na.linear(np.ones(3, np.int64), w), TypeError,
         "x must be float32 or float64, got int64; use x.astype(np.float32)"),
        (lambda w: na.linear(np.ones(4, np.float32), w), ValueError, "x must have 3 features"),
        (lambda w: na.linear(np.float32(1.0), w), ValueError, "x must be at least 1-D, got a 0-D array"),
        (lambda w: na.linear(np.ones(3, np.float32), w, activation_quant="int8"), ValueError,
         "activation_quant='int8' is not supported for a csr weight; use None"),
        (lambda w: na.linear(np.ones(3, np.float32), w, out=np.empty(2, np.float64)), TypeError,
         "out must have dtype float32, got float64"),
        (lambda w: na.linear(np.ones((2, 3), np.float32), w, out=np.empty((2, 3), np.float32)), ValueError,
         "out must have shape (2, 2), got (2, 3)"),
        (lambda w: na.linear(np.ones((2, 3), np.float32), w, out=np.empty((2, 2), np.float32, order="F")),
         ValueError, "out must be C-contiguous"),
        (lambda w: na.spmm(np.eye(2), np.ones(2)), TypeError,
         "A must be a CSRWeight or a scipy.sparse matrix, got ndarray"),
        (lambda w: na.spmm(w, np.ones((2, 2), np.float32)), ValueError, "B must have 3 rows (A.shape[1])"),
        (lambda w: na.spmm(w, np.ones(3, np.int32)), TypeError, "B must be float32 or float64, got int32"),
        (lambda w: na.spmm(w, np.ones(3), device="tpu"), ValueError, "device must be None, 'cpu' or 'cuda'"),
    ],
    ids=["x-int", "x-features", "x-0d", "activations", "out-dtype", "out-shape", "out-order", "A-dense",
         "B-rows", "B-int", "device"],
)
def test_call_rejects(w23, call, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        call(w23)


def test_pickle_carries_arrays_only(rng):
    """A weight sent to another process (Dask pickles it) is rebuilt through the validating constructor."""
    import pickle

    W = rng.standard_normal((30, 50)).astype(np.float32)
    w = na.prune(W, 0.8)
    x = rng.standard_normal((7, 50)).astype(np.float32)
    y = na.linear(x, w)
    plan_csr.chunk_bounds(w)  # a planner's cache beside the weight, which never travels
    cls, args = w.__reduce__()
    assert cls is na.CSRWeight and all(isinstance(a, (np.ndarray, tuple)) for a in args)
    w2 = pickle.loads(pickle.dumps(w))
    assert w2 not in plan_csr._bounds_cache and w2.shape == w.shape and w2.nnz == w.nnz
    np.testing.assert_array_equal(w2.indptr, w.indptr)
    np.testing.assert_array_equal(w2.indices, w.indices)
    np.testing.assert_array_equal(w2.data, w.data)
    np.testing.assert_array_equal(na.linear(x, w2), y)


@pytest.mark.parametrize("kind", ["dense", "csr", "int8"])
def test_out_sharing_memory_with_the_input_is_refused(rng, kind):
    """A kernel writing into its own input would read values it had already overwritten."""
    W = rng.standard_normal((6, 6)).astype(np.float32)
    w = {"dense": W, "csr": na.prune(W, 0.5), "int8": na.quantize(W)}[kind]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="out must not share memory with x"):
        na.linear(x, w, out=x)
    with pytest.raises(ValueError, match="out must not share memory with x"):
        na.linear(x[0], w, out=x[0])
    B = rng.standard_normal((6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="out must not share memory with B"):
        na.spmm(na.prune(W, 0.5), B, out=B)
    buf = rng.standard_normal((5, 6)).astype(np.float32)  # the bias is a row of the output buffer
    with pytest.raises(ValueError, match="out must not share memory with bias"):
        na.linear(x, w, buf[3], out=buf[:4])
    if kind == "dense":  # the output written over the weight it reads
        with pytest.raises(ValueError, match="out must not share memory with weight"):
            na.linear(x, W, out=W[:4])
    # rows of one buffer that do not overlap are separate arrays: allowed
    ref = x.astype(np.float64) @ na.formats.to_dense(w).astype(np.float64).T + buf[4]
    y = na.linear(x, w, buf[4], out=buf[:4])
    assert np.shares_memory(y, buf[:4])
    assert np.linalg.norm(y - ref) <= 1e-5 * np.linalg.norm(ref)
