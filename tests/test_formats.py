"""The format protocol: a format defined outside the package registers itself and then works everywhere."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from reference import ref_linear

import numaccel as na
from numaccel import formats


class DiagPlusDense(formats.WeightFormat):
    """``W[i, offset + i] += d[i]`` on top of a dense ``U`` (N, K): a diagonal band plus a dense correction."""

    def __init__(self, d, u, offset=0):
        self.d = np.array(d, dtype=np.float32)
        self.u = np.array(u, dtype=np.float32)
        self.offset = int(offset)
        n = self.d.size
        if self.u.ndim != 2 or self.d.shape != (self.u.shape[0],) or not 0 <= self.offset <= self.u.shape[1] - n:
            raise ValueError("d must have N entries and fit in U's columns from offset")
        for a in (self.d, self.u):
            a.setflags(write=False)

    shape = property(lambda self: self.u.shape)
    nbytes = property(lambda self: self.d.nbytes + self.u.nbytes)

    def to_dense(self):
        w = self.u.copy()
        w[np.arange(self.d.size), self.offset + np.arange(self.d.size)] += self.d
        return w

    def row_block(self, start, stop):
        return DiagPlusDense(self.d[start:stop], self.u[start:stop], self.offset + start)

    def to_arrays(self):
        return {"d": self.d, "u": self.u}, {"offset": self.offset}

    @classmethod
    def from_arrays(cls, arrays, params):
        return cls(arrays["d"], arrays["u"], params["offset"])


def _diag_linear(w, x, out, quant):
    np.matmul(x, w.u.T, out=out)
    out += x[:, w.offset:w.offset + w.d.size] * w.d


@pytest.fixture(scope="module")
def registered():
    spec = formats.register(DiagPlusDense, name="diag+dense", linear=_diag_linear)
    yield spec


@pytest.fixture
def weight(rng):
    return DiagPlusDense(rng.standard_normal(48), 0.1 * rng.standard_normal((48, 48)))


def test_linear(registered, weight, rng, parity):
    x = rng.standard_normal((5, 48)).astype(np.float32)
    parity(na.linear(x, weight), ref_linear(x, weight.to_dense()))
    parity(na.linear(x[0], weight), ref_linear(x[0], weight.to_dense()))
    parity(na.linear(x.reshape(5, 1, 48), weight), ref_linear(x, weight.to_dense()).reshape(5, 1, 48))
    b = rng.standard_normal(48).astype(np.float32)
    parity(na.linear(x, weight, b), ref_linear(x, weight.to_dense(), b))
    assert formats.name_of(weight) == "diag+dense"
    with pytest.raises(ValueError, match=re.escape("activation_quant='int8' is not supported for a diag+dense")):
        na.linear(x, weight, activation_quant="int8")


def test_layers_models_and_save_load(registered, weight, rng, parity, tmp_path):
    layer = na.nn.Linear(weight, bias=np.zeros(48, np.float32))
    assert layer.format == "diag+dense" and layer.nbytes == weight.nbytes + 48 * 4
    net = na.nn.MLP.from_arrays([weight, rng.standard_normal((10, 48)).astype(np.float32)], activation="relu")
    x = rng.standard_normal((7, 48)).astype(np.float32)
    ref = np.maximum(ref_linear(x, weight.to_dense()), 0) @ net.linears[1].weight.T.astype(np.float64)
    parity(net(x), ref)
    for name in ("m.safetensors", "m.npz"):
        na.save(tmp_path / name, net)
        back = na.load(tmp_path / name)
        assert isinstance(back.linears[0].weight, DiagPlusDense)
        np.testing.assert_array_equal(back(x), net(x))


def test_shard(registered, weight, rng):
    sw = na.shard(weight, 3)
    assert [type(s) for s in sw.shards] == [DiagPlusDense] * 3
    np.testing.assert_array_equal(formats.to_dense(sw), weight.to_dense())
    x = rng.standard_normal((4, 48)).astype(np.float32)
    blocks = [na.linear(x, s) for s in sw.shards]
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), na.linear(x, weight), rtol=1e-6)


def test_registry_rules():
    with pytest.raises(TypeError, match="must subclass numaccel.formats.WeightFormat"):
        formats.register(dict, name="nope")
    with pytest.raises(ValueError, match="already registered"):
        formats.register(DiagPlusDense, name="csr")
    with pytest.raises(TypeError, match="registered format"):
        na.linear(np.ones(3, np.float32), object())
    with pytest.raises(ValueError, match="unknown weight format 'nope'"):
        formats.lookup("nope")
    assert {"dense", "csr", "int8"} <= set(formats.registered())


def test_scipy_weight_names_the_conversion():
    sp = pytest.importorskip("scipy.sparse")
    m = sp.random(4, 3, density=0.5, format="csr", random_state=0)
    with pytest.raises(TypeError, match=re.escape("CSRWeight.from_scipy(m)")):
        na.linear(np.ones(3, np.float32), m)


@pytest.mark.parametrize("make", [lambda W: W, lambda W: na.prune(W, 0.5), lambda W: na.quantize(W)],
                         ids=["dense", "csr", "int8"])
def test_leading_batch_dims_and_dtypes(rng, parity, make):
    W = rng.standard_normal((6, 5)).astype(np.float32)
    w = make(W)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    y = na.linear(x, w)
    assert y.shape == (2, 3, 6) and y.dtype == np.float32
    parity(y, ref_linear(x.reshape(6, 5), w).reshape(2, 3, 6))
    # no silent downcast: a float64 bias or float64 x gives float64
    b64 = rng.standard_normal(6)
    y64 = na.linear(x, w, b64)
    assert y64.dtype == np.float64
    parity(y64, ref_linear(x.reshape(6, 5), w, b64).reshape(2, 3, 6), dtype=np.float64,
           rtol=1e-12 if isinstance(w, np.ndarray) else 1e-6)
    out = np.empty((2, 3, 6), np.float32)
    assert na.linear(x, w, out=out) is out
    with pytest.raises(TypeError, match="out must have dtype float64"):
        na.linear(x, w, b64, out=out)
    assert na.linear(np.empty((0, 5), np.float32), w).shape == (0, 6)


def test_float64_dense_weight_promotes(rng, parity):
    W = rng.standard_normal((4, 3))
    x = rng.standard_normal((2, 3)).astype(np.float32)
    y = na.linear(x, W)
    assert y.dtype == np.float64
    parity(y, ref_linear(x, W), dtype=np.float64)


def test_deprecated_activations_keyword(rng):
    qw = na.quantize(rng.standard_normal((8, 16)).astype(np.float32))
    x = rng.standard_normal((3, 16)).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="activation_quant"):
        y = na.linear(x, qw, activations="int8")
    np.testing.assert_array_equal(y, na.linear(x, qw, activation_quant="int8"))


def test_indices_do_not_allocate(rng):
    w = na.prune(rng.standard_normal((20, 30)).astype(np.float32), 0.7)
    assert w.indices is w.indices and not w.indices.flags.writeable


def test_trusted_constructors_skip_the_scan(monkeypatch, rng):
    """prune, from_dense and row blocks build CSRWeights without the constructor's O(nnz) checks."""
    from numaccel.formats import csr

    def refuse(*args, **kwargs):
        raise AssertionError("the validating scan ran")

    monkeypatch.setattr(csr, "check_compressed", refuse)
    W = rng.standard_normal((30, 40)).astype(np.float32)
    w = na.prune(W, 0.8)
    w.row_block(3, 17)
    na.CSRWeight.from_dense(W)
    with pytest.raises(AssertionError):
        na.CSRWeight(w.indptr, w.indices, w.data, w.shape)


def test_submodules_are_not_hidden():
    code = ("import importlib, numaccel as na\n"
            "for m in ('ops', 'training', 'distillation', 'compression', 'pruning', 'quantization', 'formats',\n"
            "          'plan', 'parallel', 'io'):\n"
            "    importlib.import_module('numaccel.' + m)\n"
            "assert callable(na.linear) and callable(na.train) and callable(na.compress) and callable(na.distill)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("fmt", ["dense", "csr", "csr-int8", "csr-int8-groups", "int8", "int8-groups"])
def test_row_block_refuses_bounds_outside_the_rows(rng, fmt):
    W = rng.standard_normal((6, 10)).astype(np.float32)
    w = {"dense": lambda: W, "csr": lambda: na.prune(W, 0.5), "csr-int8": lambda: na.quantize(na.prune(W, 0.5)),
         "csr-int8-groups": lambda: na.quantize(na.prune(W, 0.5), group_size=2),
         "int8": lambda: na.quantize(W), "int8-groups": lambda: na.quantize(W, group_size=4)}[fmt]()
    for start, stop in [(-2, -1), (-1, 6), (3, 1), (2, 2), (0, 7), (5, 100)]:
        with pytest.raises(ValueError, match="0 <= start < stop <= 6"):
            na.formats.row_block(w, start, stop)
        if fmt != "dense":
            with pytest.raises(ValueError, match="0 <= start < stop <= 6"):
                w.row_block(start, stop)
    for start, stop in [(1.0, 3), (0, "2"), (True, 2)]:
        with pytest.raises(TypeError, match="integer row index"):
            na.formats.row_block(w, start, stop)
    blk = na.formats.row_block(w, np.int64(1), np.int32(4))  # NumPy integers are integers
    assert blk.shape == (3, 10)
    np.testing.assert_array_equal(na.formats.to_dense(blk), na.formats.to_dense(w)[1:4])


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_ndarray_subclasses_run_as_plain_arrays_and_masked_arrays_are_refused(rng):
    W = rng.standard_normal((6, 5)).astype(np.float32)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    for w in (W, np.asmatrix(W), na.prune(W, 0.0), na.quantize(W), na.quantize(na.prune(W, 0.0))):
        dense = np.asarray(na.formats.to_dense(w) if not isinstance(w, np.ndarray) else w, np.float64)
        got = na.linear(np.asmatrix(x), w)  # np.matrix: a plain (4, N) array comes back
        assert type(got) is np.ndarray and got.shape == (4, 6)
        np.testing.assert_allclose(got, x.astype(np.float64) @ dense.T, rtol=1e-5, atol=1e-5)
        with pytest.raises(TypeError, match="x is a numpy.ma.MaskedArray"):
            na.linear(np.ma.array(x, mask=False), w)
        with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
            na.linear(x, w, out=np.asmatrix(np.empty((4, 6), np.float32)))
    hidden = np.arange(30).reshape(6, 5) == 7  # a mask the kernels would ignore: a hidden NaN or code
    mw = np.ma.array(np.where(hidden, np.nan, W).astype(np.float32), mask=hidden)
    mq = np.ma.array(np.where(hidden, 100, 1).astype(np.int8), mask=hidden)
    ms = np.ma.array(np.array([1, 1, -5, 1, 1, 1], np.float32), mask=[0, 0, 1, 0, 0, 0])
    refused = {"weight": lambda: na.linear(x, mw), "W": lambda: na.prune(mw, 0.5),
               "qweight": lambda: na.Int8Weight(mq, np.ones(6, np.float32)),
               "scales": lambda: na.Int8Weight(np.ones((6, 5), np.int8), ms),
               "data": lambda: na.CSRWeight(np.arange(7) * 5, np.tile(np.arange(5), 6), mw.ravel(), (6, 5)),
               "bias": lambda: na.nn.Linear(W, ms)}
    for name, make in refused.items():
        with pytest.raises(TypeError, match=f"{name} is a numpy.ma.MaskedArray"):
            make()


def test_from_arrays_errors_name_what_is_missing():
    arr = {"indptr": np.array([0, 1]), "indices": np.array([0]), "data": np.ones(1, np.float32)}
    with pytest.raises(ValueError, match="a csr weight needs 'shape'"):
        na.formats.from_arrays("csr", arr, {})
    with pytest.raises(TypeError, match="params must be a mapping"):
        na.formats.from_arrays("csr", arr, None)
    W = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="a dense weight has no parameters"):
        na.formats.from_arrays("dense", {"weight": W}, {"x": 1})
    with pytest.raises(TypeError, match="float32 or float64 ndarray"):
        na.formats.from_arrays("dense", {"weight": W.astype(np.int32)}, {})
    with pytest.raises(ValueError, match="must be finite"):
        na.formats.from_arrays("dense", {"weight": np.full((2, 3), np.inf, np.float32)}, {})
    assert na.formats.from_arrays("dense", {"weight": W}, {}) is W


def test_pruning_a_compressed_weight_names_the_dense_form(rng):
    w = na.prune(rng.standard_normal((4, 6)).astype(np.float32), 0.5)
    for f in (lambda: na.prune(w, 0.75), lambda: na.magnitude_mask(na.quantize(w.to_dense()), 0.5)):
        with pytest.raises(TypeError, match=r"W must be a dense array, got a (CSR|Int8)Weight; pass W.to_dense\(\)"):
            f()


def test_stored_arrays_cannot_be_made_writable_again(rng):
    """The kernels trust what a weight validated once: its arrays refuse setflags(write=True)."""
    W = rng.standard_normal((8, 16)).astype(np.float32)
    weights = [na.prune(W, 0.5), na.quantize(W), na.quantize(W, group_size=4), na.quantize(na.prune(W, 0.5)),
               na.quantize(na.prune(W, 0.5), group_size=4), na.prune(W, 0.5).row_block(2, 5)]
    for w in weights:
        arrays, _ = w.to_arrays()
        for a in arrays.values():
            with pytest.raises(ValueError, match="WRITEABLE"):
                a.setflags(write=True)
    from numaccel._validate import frozen

    a = frozen(np.arange(5))
    assert frozen(a) is a  # frozen once: no second copy
    view = np.arange(10)[2:]  # a view of a writable array is copied first
    f = frozen(view)
    assert not np.shares_memory(f, view)
    with pytest.raises(ValueError, match="WRITEABLE"):
        f.setflags(write=True)
