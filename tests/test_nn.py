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


class _DuckWeight:
    """A weight format numaccel does not know: anything with ``shape`` that ``linear`` dispatches."""

    def __init__(self, W):
        self.W = W
        self.shape = W.shape
        self.nbytes = W.nbytes

    def _linear(self, x, out, *, activations=None):
        np.matmul(x, self.W.T, out=out)


def test_linear_accepts_any_weight_linear_dispatches(rng, parity):
    W = rng.standard_normal((4, 3)).astype(np.float32)
    net = nn.MLP.from_arrays([_DuckWeight(W), np.eye(4, dtype=np.float32)])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    parity(net(x), ref_mlp(x, [W, np.eye(4)], [None, None], "relu"))
    assert net.linears[0].format == "_DuckWeight"


def test_sharded_weight_is_a_layer_weight(rng):
    W = rng.standard_normal((8, 4)).astype(np.float32)
    net = nn.MLP.from_arrays([na.shard(W, 2)])
    assert net.sizes == [4, 8] and net.summary()[0]["format"] == "ShardedWeight"


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
        (lambda: nn.Linear("W"), TypeError, "2-D shape"),
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
    ids=["int-weight", "1d-weight", "no-shape", "bias-length", "nan-weight", "empty", "chain", "activation",
         "biases-length", "one-size", "zero-size", "not-a-layer", "gelu-mode"],
)
def test_bad_models_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


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
