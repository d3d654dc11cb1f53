"""Models: Linear, activations, Sequential/MLP forward parity for every weight format, state_dict conversion."""

import numpy as np
import pytest
from reference import dense64, ref_activation, ref_linear, ref_mlp

import numaccel as na
from numaccel import nn


def _formats(W):
    return {
        "dense": W,
        "csr": na.prune(W, 0.7),
        "int8": na.quantize(W),
        "int8-g8-asym": na.quantize(W, group_size=8, symmetric=False),
    }


@pytest.mark.parametrize("fmt", ["dense", "csr", "int8", "int8-g8-asym"])
@pytest.mark.parametrize("batch", [1, 5], ids=lambda b: f"{b=}")
def test_linear_parity_every_format(rng, parity, fmt, batch):
    W = rng.standard_normal((12, 20)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    w = _formats(W)[fmt]
    x = rng.standard_normal((batch, 20)).astype(np.float32)
    out = np.full((batch, 12), np.nan, dtype=np.float32)
    y = nn.Linear(w, b)(x, out=out)
    assert y is out
    parity(out, ref_linear(x, w, b))


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("fmt", ["dense", "csr", "int8"])
def test_mlp_forward_parity(rng, parity, activation, fmt):
    Ws = [rng.standard_normal((24, 16)).astype(np.float32), rng.standard_normal((5, 24)).astype(np.float32)]
    bs = [rng.standard_normal(24).astype(np.float32), None]
    weights = [_formats(W)[fmt] for W in Ws]
    net = nn.MLP.from_arrays(weights, bs, activation=activation)
    x = rng.standard_normal((7, 16)).astype(np.float32)
    y = net(x)
    assert y.dtype == np.float32 and y.shape == (7, 5)
    parity(y, ref_mlp(x, weights, bs, activation))
    parity(net(x[0]), ref_mlp(x[:1], weights, bs, activation)[0])
    assert np.array_equal(net.predict(x), np.argmax(y, axis=1))


def test_float64_activations_give_float64(rng, parity):
    net = nn.MLP.init([6, 8, 3], seed=0)
    x = rng.standard_normal((4, 6))
    y = net(x)
    assert y.dtype == np.float64
    lin = net.linears
    parity(y, ref_mlp(x, [layer.weight for layer in lin], [layer.bias for layer in lin], "relu"))


@pytest.mark.parametrize("name,layer", [("gelu", nn.GELU()), ("gelu_tanh", nn.GELU(approximate="tanh")),
                                        ("relu", nn.ReLU())])
def test_activation_values_and_gradients(name, layer):
    x = np.linspace(-6, 6, 101)
    x = x[np.abs(x) > 1e-3]  # ReLU has no derivative at 0
    np.testing.assert_allclose(layer(x), ref_activation(name, x), rtol=1e-12, atol=1e-15)
    h = 1e-6
    fd = (ref_activation(name, x + h) - ref_activation(name, x - h)) / (2 * h)
    np.testing.assert_allclose(layer.grad(x), fd, rtol=1e-6, atol=1e-8)


def test_init_is_seeded_and_sized():
    a, b, c = nn.MLP.init([5, 7, 2], seed=3), nn.MLP.init([5, 7, 2], seed=3), nn.MLP.init([5, 7, 2], seed=4)
    assert a.sizes == [5, 7, 2] and a.num_params == 5 * 7 + 7 + 7 * 2 + 2
    assert all(np.array_equal(p.weight, q.weight) for p, q in zip(a.linears, b.linears, strict=True))
    assert not np.array_equal(a.linears[0].weight, c.linears[0].weight)
    assert a.nbytes == 4 * a.num_params


class _Scaled(na.formats.WeightFormat):
    """A small format of this test's own: ``W = scale * base``, registered below (nothing in numaccel knows it)."""

    def __init__(self, base, scale):
        self.base = np.array(base, dtype=np.float32)
        self.base.setflags(write=False)
        self.scale = float(scale)

    shape = property(lambda self: self.base.shape)
    nbytes = property(lambda self: self.base.nbytes)

    def to_dense(self):
        return self.scale * self.base

    def row_block(self, start, stop):
        return _Scaled(self.base[start:stop], self.scale)

    def to_arrays(self):
        return {"base": self.base}, {"scale": self.scale}

    @classmethod
    def from_arrays(cls, arrays, params):
        return cls(arrays["base"], params["scale"])


def _scaled_linear(w, x, out, quant):
    if quant is not None:
        raise ValueError(f"activation_quant={quant!r} is not supported for _Scaled")
    np.matmul(x, w.base.T, out=out)
    out *= w.scale


na.formats.register(_Scaled, name="test-nn-scaled", linear=_scaled_linear)


def test_linear_accepts_any_registered_format(rng, parity):
    W = rng.standard_normal((4, 3)).astype(np.float32)
    net = nn.MLP.from_arrays([_Scaled(W, 2.0), np.eye(4, dtype=np.float32)])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    parity(net(x), ref_mlp(x, [2.0 * W.astype(np.float64), np.eye(4)], [None, None], "relu"))
    layer = net.linears[0]
    assert layer.format == "test-nn-scaled" and layer.nbytes == W.nbytes
    np.testing.assert_array_equal(layer.dense_weight(), 2.0 * W)
    assert net.summary()[0] == {"layer": 0, "shape": (4, 3), "format": "test-nn-scaled",
                                "activation_quant": None, "density": 1.0, "bytes": W.nbytes}


def test_unregistered_weights_are_refused_naming_the_registered_formats():
    class Unknown:
        shape = (2, 2)
        nbytes = 16

    with pytest.raises(TypeError, match=r"registered format \(.*csr.*int8.*\), got Unknown"):
        nn.Linear(Unknown())


def test_scipy_sparse_weight_names_the_conversion():
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match=r"CSRWeight\.from_scipy"):
        nn.Linear(sp.csr_matrix(np.eye(3, dtype=np.float32)))


def test_sharded_weight_is_a_layer_weight(rng):
    W = rng.standard_normal((8, 4)).astype(np.float32)
    sw = na.shard(W, 2)
    net = nn.MLP.from_arrays([sw])
    assert net.sizes == [4, 8] and net.summary()[0]["format"] == na.formats.name_of(sw)


def test_public_names():
    assert sorted(nn.__all__) == ["GELU", "Linear", "MLP", "ReLU", "Sequential"]
    for name in nn.__all__:
        assert getattr(nn, name).__module__.startswith("numaccel.nn.")
    for gone in ("weight_format", "densify", "as_model", "as_inputs", "erf"):
        assert not hasattr(nn, gone)


# --------------------------------------------------------------------------------------------------
# dtypes: biases keep theirs, nothing is downcast

@pytest.mark.parametrize("bias_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_dtype", [np.float32, np.float64])
def test_bias_keeps_its_dtype(rng, parity, weight_dtype, bias_dtype):
    W = rng.standard_normal((5, 4)).astype(weight_dtype)
    b = rng.standard_normal(5).astype(bias_dtype)
    layer = nn.Linear(W, b)
    assert layer.bias.dtype == bias_dtype and np.array_equal(layer.bias, b)
    assert layer.bias is not b  # a copy
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.result_type(x.dtype, weight_dtype, bias_dtype)
    parity(y, ref_linear(x, W, b), dtype=y.dtype)


def test_float64_bias_is_not_rounded():
    b = np.array([1.0 + 2.0**-40, -3.0], np.float64)  # not representable in float32
    layer = nn.Linear(np.zeros((2, 2), np.float32), b)
    assert layer.bias.dtype == np.float64 and layer.bias[0] == b[0]
    y = layer(np.zeros(2, np.float32))
    assert y.dtype == np.float64 and y[0] == b[0]


def test_half_precision_bias_and_weight_widen_to_float32():
    layer = nn.Linear(np.ones((2, 3), np.float16), np.array([0.5, -1.0], np.float16))
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    np.testing.assert_array_equal(layer.bias, [0.5, -1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_dtype_applies_to_weights_and_biases(dtype):
    net = nn.MLP.init([5, 7, 2], seed=0, dtype=dtype)
    assert all(layer.weight.dtype == dtype and layer.bias.dtype == dtype for layer in net.linears)
    ref = nn.MLP.init([5, 7, 2], seed=0, dtype=np.float64)
    for a, b in zip(net.linears, ref.linears, strict=True):  # the same draws, rounded once to dtype
        np.testing.assert_array_equal(a.weight, b.weight.astype(dtype))
        np.testing.assert_array_equal(a.bias, b.bias.astype(dtype))
    y = net(np.ones(5, np.float32))
    assert y.dtype == np.result_type(np.float32, dtype)


def test_init_default_draws_are_unchanged():
    """float32 weights and biases drawn in float64 from the seed, in order, then rounded (as before)."""
    rng = np.random.default_rng(3)
    w = rng.uniform(-0.5, 0.5, size=(7, 4)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, size=7).astype(np.float32)
    net = nn.MLP.init([4, 7], seed=3)
    assert np.array_equal(net.linears[0].weight, w) and np.array_equal(net.linears[0].bias, b)


def test_summary_reports_format_density_bytes(rng):
    W = rng.standard_normal((10, 10)).astype(np.float32)
    net = nn.MLP.from_arrays([na.prune(W, 0.8), na.quantize(W)])
    rows = net.summary()
    assert [r["format"] for r in rows] == ["csr", "int8"]
    assert rows[0]["density"] == pytest.approx(0.2)
    assert rows[0]["bytes"] == net.linears[0].weight.nbytes
    assert net.nbytes == sum(r["bytes"] for r in rows)


_ONES = np.ones((2, 2), np.float32)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: nn.Linear(np.ones((2, 2), np.int32)), TypeError, "float32 or float64"),
        (lambda: nn.Linear(np.ones(3, np.float32)), ValueError, "2-D"),
        (lambda: nn.Linear("W"), TypeError, "registered format"),
        (lambda: nn.Linear(np.ones((2, 2), np.float32), np.ones(2, np.int32)), TypeError, "bias must be float"),
        (lambda: nn.Linear(np.ones((2, 2), np.float32), [1.0, np.inf]), ValueError, "bias must be finite"),
        (lambda: nn.MLP.init([4, 2], dtype=np.float16), TypeError, "float32 or numpy.float64"),
        (lambda: nn.MLP.init([4, 2], dtype="not a dtype"), TypeError, "dtype must be"),
        (lambda: nn.Linear(np.ones((2, 3), np.float32), np.ones(3, np.float32)), ValueError, r"\(2,\)"),
        (lambda: nn.Linear(np.full((2, 2), np.nan, np.float32)), ValueError, "finite"),
        (lambda: nn.MLP.from_arrays([]), ValueError, "at least one"),
        (lambda: nn.MLP.from_arrays([np.ones((3, 2), np.float32)] * 2), ValueError, "takes 2 features"),
        (lambda: nn.MLP.from_arrays([_ONES] * 2, activation="tanh"), ValueError, "activation"),
        (lambda: nn.MLP.from_arrays([_ONES], biases=[None, None]), ValueError, "1 entries"),
        (lambda: nn.MLP.init([4]), ValueError, "at least"),
        (lambda: nn.MLP.init([4, 0]), ValueError, "positive"),
        (lambda: nn.Sequential([nn.ReLU(), 3]), TypeError, r"layers\[1\]"),
        (lambda: nn.GELU(approximate="fast"), ValueError, "approximate"),
    ],
    ids=["int-weight", "1d-weight", "unregistered", "int-bias", "inf-bias", "init-float16", "init-bad-dtype",
         "bias-length", "nan-weight", "empty", "chain", "activation",
         "biases-length", "one-size", "zero-size", "not-a-layer", "gelu-mode"],
)
def test_bad_models_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_models_pass_activation_quant_to_every_linear_call(rng):
    Ws = [rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)]
    qs = [na.quantize(W) for W in Ws]
    bs = [rng.standard_normal(8).astype(np.float32), None]
    net = nn.MLP.from_arrays(qs, bs)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    h = np.maximum(na.linear(x, qs[0], bs[0], activation_quant="int8"), 0)
    want = na.linear(h, qs[1], activation_quant="int8")
    np.testing.assert_array_equal(net(x, activation_quant="int8"), want)
    assert np.array_equal(net.predict(x, activation_quant="int8"), np.argmax(want, axis=1))


def test_wrong_input_features_raise():
    net = nn.MLP.init([4, 3], seed=0)
    with pytest.raises(ValueError, match="4 features"):
        net(np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        net(np.ones((2, 4), np.int64))


# --------------------------------------------------------------------------------------------------
# Conversion of a state_dict of NumPy arrays (no torch needed; modules are tested in tests/test_torch.py)

def _state_dict(rng, sizes, bias=True):
    sd = {}
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        sd[f"{2 * i}.weight"] = rng.standard_normal((n, k)).astype(np.float32)
        if bias:
            sd[f"{2 * i}.bias"] = rng.standard_normal(n).astype(np.float32)
    return sd


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_from_torch_state_dict_of_arrays(rng, parity, activation):
    sd = _state_dict(rng, [6, 9, 4, 3])
    net = nn.MLP.from_torch(sd, activation=activation)
    weights, biases = list(sd.values())[0::2], list(sd.values())[1::2]
    x = rng.standard_normal((5, 6)).astype(np.float32)
    ref = ref_mlp(x, weights, biases, activation)
    parity(net(x), ref)
    sd["0.weight"][:] = 0  # the model holds copies
    parity(net(x), ref)


def test_from_torch_one_layer_state_dict_needs_no_activation(rng, parity):
    sd = _state_dict(rng, [4, 3], bias=False)
    net = nn.MLP.from_torch({"weight": sd["0.weight"]})
    x = rng.standard_normal((2, 4)).astype(np.float32)
    parity(net(x), ref_linear(x, sd["0.weight"]))


def test_from_torch_half_precision_arrays_widen_exactly(rng):
    w = rng.standard_normal((3, 4)).astype(np.float16)
    net = nn.MLP.from_torch({"weight": w})
    assert net.linears[0].weight.dtype == np.float32
    np.testing.assert_array_equal(net.linears[0].weight, w.astype(np.float32))


_W = np.ones((3, 4), np.float32)


@pytest.mark.parametrize(
    "module,activation,exc,match",
    [
        ({"0.weight": _W, "2.weight": np.ones((2, 3), np.float32)}, None, TypeError,
         "activation is required for a state_dict of 2 layers"),
        ({"weight": _W}, "tanh", ValueError, "activation must be"),
        ({"weight": _W.astype(np.float64)}, None, TypeError, r"state_dict\['weight'\] is float64.*float\(\)"),
        ({"weight": _W.astype(np.int32)}, None, TypeError, "must be a floating-point tensor, got int32"),
        ({"0.running_mean": np.zeros(3, np.float32)}, None, ValueError, "running_mean"),
        ({"1.weight": np.ones(4, np.float32), "1.bias": np.ones(4, np.float32)}, None, ValueError,
         r"state_dict\['1.weight'\] has shape \(4,\); a Linear weight is 2-D"),
        ({"0.bias": np.ones(3, np.float32)}, None, ValueError, "has '0.bias' but no '0.weight'"),
        ({"bias": np.ones(3, np.float32)}, None, ValueError, "has 'bias' but no 'weight'"),
        ({"0.weight": _W, "2.weight": np.ones((2, 5), np.float32)}, "relu", ValueError,
         r"state_dict\['2.weight'\] takes 5 features but '0.weight' gives 3"),
        ({}, None, ValueError, "state_dict is empty"),
        ([_W], None, TypeError, "must be a torch.nn.Sequential, a torch.nn.Linear or a state_dict, got list"),
    ],
    ids=["no-activation", "unknown-activation", "float64", "int", "running-mean", "1d-weight", "bias-only",
         "bare-bias-only", "chain", "empty", "list"],
)
def test_from_torch_bad_state_dicts_raise(module, activation, exc, match):
    with pytest.raises(exc, match=match):
        nn.MLP.from_torch(module, activation=activation)


def test_dense_weight_of_every_format(rng):
    W = rng.standard_normal((6, 5)).astype(np.float32)
    for w in _formats(W).values():
        np.testing.assert_array_equal(nn.Linear(w).dense_weight(), dense64(w).astype(np.float32))


def test_linear_activation_quant_of_its_own(rng):
    w = na.quantize(rng.standard_normal((5, 8)).astype(np.float32))
    x = rng.standard_normal((3, 8)).astype(np.float32)
    layer = nn.Linear(w, activation_quant="int8")
    np.testing.assert_array_equal(layer(x), na.linear(x, w, activation_quant="int8"))
    np.testing.assert_array_equal(layer(x, activation_quant=None), na.linear(x, w))  # a call's own wins
    assert "activation_quant='int8'" in repr(layer)
    with pytest.raises(ValueError, match="not supported for a dense weight"):
        nn.Linear(w.dequantize(), activation_quant="int8")
    with pytest.raises(ValueError, match="None or 'int8'"):
        nn.Linear(w, activation_quant="fp8")


def test_byte_swapped_weights_and_list_inputs(rng, parity):
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    layer = nn.Linear(W.astype(">f4"), b.astype(">f4"))  # the same values in the other byte order
    x = rng.standard_normal((2, 3)).astype(np.float32)
    parity(layer(x), ref_linear(x, W, b))
    assert nn.Linear(W.astype(">f8")).dense_weight().dtype == np.float64
    model = nn.Sequential([nn.ReLU(), nn.Linear(np.eye(2, dtype=np.float32))])
    np.testing.assert_array_equal(model([1.0, -2.0]), [1.0, 0.0])  # a list, as Linear takes
    np.testing.assert_allclose(nn.GELU()([1.0, -2.0]), [0.8413447460685429, -0.04550026389635842], rtol=1e-12)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        nn.ReLU()(np.ones(3, np.int64))
