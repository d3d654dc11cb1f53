"""Trainer and compress: gradients vs finite differences, masked training, reproducibility, the report."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import ref_cross_entropy

import numaccel as na
from numaccel import nn
from numaccel.training import cross_entropy, forward_backward


def _blobs(rng, n=240, k=6, classes=3):
    """Separable Gaussian blobs: a small problem every trainer should solve."""
    centers = 3.0 * rng.standard_normal((classes, k))
    y = rng.integers(0, classes, n)
    X = (centers[y] + rng.standard_normal((n, k))).astype(np.float32)
    return X, y


def test_cross_entropy_matches_oracle(rng):
    z = rng.standard_normal((9, 5)) * 4
    labels = rng.integers(0, 5, 9)
    loss, grad = cross_entropy(z, labels)
    assert loss == pytest.approx(ref_cross_entropy(z, labels), rel=1e-12)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)
    big_loss, big_grad = cross_entropy(z * 1e4, labels)  # stable for huge logits
    assert np.isfinite(big_loss) and np.isfinite(big_grad).all()


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_backprop_matches_finite_differences(rng, activation):
    net = nn.MLP.init([5, 7, 6, 3], activation=activation, seed=1, dtype=np.float64)
    weights = [layer.weight.copy() for layer in net.linears]
    biases = [layer.bias.astype(np.float64) for layer in net.linears]
    X = rng.standard_normal((8, 5))
    labels = rng.integers(0, 3, 8)

    def loss_of(ws, bs):
        return forward_backward(net.layers, ws, bs, X, lambda z: cross_entropy(z, labels))[0]

    _, gw, gb = forward_backward(net.layers, weights, biases, X, lambda z: cross_entropy(z, labels))
    h = 1e-6
    for params, grads in ((weights, gw), (biases, gb)):
        for p, g in zip(params, grads, strict=True):
            fd = np.zeros_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + h
                up = loss_of(weights, biases)
                p[idx] = old - h
                down = loss_of(weights, biases)
                p[idx] = old
                fd[idx] = (up - down) / (2 * h)
            np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_train_learns_and_leaves_the_input_model_alone(rng):
    X, y = _blobs(rng)
    net = nn.MLP.init([6, 16, 3], seed=0)
    before = [layer.weight.copy() for layer in net.linears]
    trained = na.train(net, X, y, epochs=15, lr=1e-2, seed=0)
    assert float((trained.predict(X) == y).mean()) > 0.95
    assert all(np.array_equal(b, layer.weight) for b, layer in zip(before, net.linears, strict=True))
    assert isinstance(trained, nn.MLP) and trained.linears[0].weight.dtype == np.float32


def test_train_is_reproducible(rng):
    X, y = _blobs(rng)
    net = nn.MLP.init([6, 8, 3], seed=0)
    a = na.train(net, X, y, epochs=3, batch_size=32, seed=7)
    b = na.train(net, X, y, epochs=3, batch_size=32, seed=7)
    c = na.train(net, X, y, epochs=3, batch_size=32, seed=8)
    assert all(np.array_equal(p.weight, q.weight) for p, q in zip(a.linears, b.linears, strict=True))
    assert not np.array_equal(a.linears[0].weight, c.linears[0].weight)


def test_masked_training_keeps_pruned_weights_exactly_zero(rng):
    X, y = _blobs(rng)
    net = nn.MLP.init([6, 16, 3], seed=0)
    masks = [na.magnitude_mask(layer.weight, 0.75) for layer in net.linears]
    trained = na.train(net, X, y, epochs=5, lr=1e-2, masks=masks, seed=0)
    for layer, mask in zip(trained.linears, masks, strict=True):
        assert np.all(layer.weight[~mask] == 0.0)
        assert np.count_nonzero(layer.weight[mask]) == mask.sum()  # the kept weights still move
    csr_net = nn.MLP.from_arrays([na.prune(net.linears[0].weight, 0.5), net.linears[1].weight],
                                 [layer.bias for layer in net.linears])
    tuned = na.train(csr_net, X, y, epochs=3, lr=1e-2, seed=0)
    w0, w1 = csr_net.linears[0].weight, tuned.linears[0].weight
    assert isinstance(w1, na.CSRWeight)
    assert np.array_equal(w0.indptr, w1.indptr) and np.array_equal(w0.indices, w1.indices)
    assert not np.array_equal(w0.data, w1.data)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"y": np.zeros(10, np.float32)}, TypeError, "integer class ids"),
        ({"y": np.full(10, 3)}, ValueError, r"\[0, 3\)"),
        ({"y": np.zeros(9, np.int64)}, ValueError, r"shape \(10,\)"),
        ({"X": np.zeros((10, 5), np.float32)}, ValueError, "6 features"),
        ({"X": np.zeros((10, 6), np.int64)}, TypeError, "float32 or float64"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"masks": [None]}, ValueError, "2 entries"),
        ({"masks": [np.ones((4, 6)), None]}, ValueError, "bool array"),
    ],
    ids=["float-labels", "label-range", "label-count", "features", "int-X", "epochs", "lr", "mask-count",
         "mask-dtype"],
)
def test_train_rejects_bad_arguments(kwargs, exc, match):
    net = nn.MLP.init([6, 4, 3], seed=0)
    args = {"X": np.zeros((10, 6), np.float32), "y": np.zeros(10, np.int64)} | kwargs
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(exc, match=match):
        na.train(net, X, y, **args)


def test_int8_model_is_not_trainable(rng):
    net = na.compress(nn.MLP.init([6, 4, 3], seed=0), int8=True)
    w = net.linears[0].weight
    assert not na.formats.is_trainable(w)
    reason = na.formats.untrainable_reason(w)
    with pytest.raises(TypeError, match="layer 0 stores its weight as int8, which training cannot update") as info:
        na.train(net, np.zeros((4, 6), np.float32), np.zeros(4, np.int64))
    assert reason in str(info.value)


def test_float64_model_trains_in_float64_and_stays_float64(rng):
    X, y = _blobs(rng)
    net = nn.MLP.init([6, 8, 3], seed=0, dtype=np.float64)
    trained = na.train(net, X, y, epochs=2, seed=0)
    assert all(layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64 for layer in trained.linears)
    mixed = nn.MLP.from_arrays([layer.weight.astype(np.float32) for layer in net.linears],
                               [layer.bias for layer in net.linears])  # float32 weights, float64 biases
    back = na.train(mixed, X, y, epochs=2, seed=0)
    assert [(layer.weight.dtype, layer.bias.dtype) for layer in back.linears] == [(np.float32, np.float64)] * 2


@given(labels=st.lists(st.integers(-5, 8), min_size=4, max_size=4))
def test_any_label_vector_is_trained_on_or_rejected(labels):
    net = nn.MLP.init([2, 3], seed=0)
    X = np.ones((4, 2), np.float32)
    y = np.array(labels)
    if all(0 <= v < 3 for v in labels):
        assert na.train(net, X, y, epochs=1).sizes == [2, 3]
    else:
        with pytest.raises(ValueError, match="class ids"):
            na.train(net, X, y, epochs=1)


# --------------------------------------------------------------------------------------------------
# compress

def test_compress_prune_int8_and_report(rng):
    net = nn.MLP.init([32, 48, 10], seed=0)
    pruned = na.compress(net, sparsity=0.9)
    assert [r["format"] for r in pruned.report] == ["csr", "csr"]
    assert pruned.report[0]["density"] == pytest.approx(0.1, abs=1e-3)
    assert all(0 < r["error"] < 1 for r in pruned.report)
    assert pruned.nbytes == sum(r["bytes"] for r in pruned.report)
    q = na.compress(net, int8=True)
    assert [r["format"] for r in q.report] == ["int8", "int8"]
    assert all(r["error"] < 0.02 for r in q.report)
    both = na.compress(net, sparsity=0.9, int8=True)  # CSR (0.6 B/weight) beats dense int8 (1 B/weight)
    assert [r["format"] for r in both.report] == ["csr", "csr"]
    forced = na.compress(net, sparsity=0.9, int8=True, format="int8")
    assert [r["format"] for r in forced.report] == ["int8", "int8"]
    kept = np.count_nonzero(pruned.linears[0].weight.data)
    assert np.count_nonzero(forced.linears[0].weight.qweight) == kept
    assert all(isinstance(layer.weight, np.ndarray) for layer in net.linears)  # input untouched


def test_compress_with_fine_tuning_keeps_the_sparsity(rng):
    X, y = _blobs(rng, k=32, classes=10)
    net = na.train(nn.MLP.init([32, 48, 10], seed=0), X, y, epochs=5, lr=1e-2)
    small = na.compress(net, sparsity=0.8, data=(X, y), finetune_epochs=2, steps=2, seed=0)
    for layer in small.linears:
        assert isinstance(layer.weight, na.CSRWeight)
        assert layer.weight.nnz <= round(0.2 * np.prod(layer.weight.shape))
    assert float((small.predict(X) == y).mean()) > 0.9


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"sparsity": 1.5}, ValueError, r"\[0, 1\]"),
        ({"sparsity": 0.5, "finetune_epochs": 2}, ValueError, "data="),
        ({"finetune_epochs": 2, "data": (np.zeros((2, 4), np.float32), np.zeros(2, int))}, ValueError,
         "sparsity"),
        ({"sparsity": 0.5, "format": "bsr"}, ValueError, "format"),
        ({"sparsity": 0.5, "steps": 0}, ValueError, "steps"),
    ],
    ids=["sparsity", "no-data", "no-sparsity", "format", "steps"],
)
def test_compress_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        na.compress(nn.MLP.init([4, 3], seed=0), **kwargs)


def test_compress_keeps_what_it_does_not_change(rng):
    W = rng.standard_normal((16, 8)).astype(np.float32)
    sparse = nn.MLP.from_arrays([na.prune(W, 0.9)])
    same = na.compress(sparse)
    assert same.linears[0].weight is sparse.linears[0].weight and same.report[0]["error"] == 0.0
    assert na.compress(sparse, int8=True).report[0]["format"] == "csr"  # 0.7 B/weight beats 1 B/weight
    dense = na.compress(sparse, int8=True, format="int8")
    assert dense.report[0]["format"] == "int8" and dense.report[0]["density"] == 1.0  # int8 stores every entry
    kept = np.count_nonzero(dense.linears[0].weight.qweight)
    assert kept == pytest.approx(0.1 * W.size, abs=0.01 * W.size)  # the pruned entries are zero codes
