"""Trainer and compress: gradients vs finite differences, masked training, reproducibility, the report."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import ref_cross_entropy

import numaccel as na
from numaccel import nn
from numaccel.training import _split_rows, cross_entropy, forward_backward


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
        ({"validation_fraction": 1.0}, ValueError, re.escape("validation_fraction must be in [0, 1)")),
        ({"validation_fraction": -0.1}, ValueError, re.escape("validation_fraction must be in [0, 1)")),
        ({"validation_fraction": float("nan")}, ValueError, "validation_fraction"),
        ({"validation_fraction": "0.1"}, TypeError, "validation_fraction must be a real number"),
        ({"validation_fraction": True}, TypeError, "validation_fraction must be a real number"),
        ({"validation_fraction": 0.95}, ValueError, "holds out 10 of the 10 rows of X and leaves no training rows"),
        ({"X": np.zeros((0, 6), np.float32), "y": np.zeros(0, np.int64)}, ValueError,
         "of the 0 rows of X leaves no validation rows"),
        ({"patience": 0}, ValueError, "patience must be a positive integer, got 0"),
        ({"patience": 2.5}, TypeError, "patience must be a positive integer, got float"),
        ({"tol": -1e-3}, ValueError, "tol must be non-negative"),
        ({"validation_data": np.zeros((4, 6), np.float32)}, TypeError,
         r"validation_data must be a pair \(X_val, y_val\), got ndarray"),
        ({"validation_data": (np.zeros((4, 6), np.float32),)}, TypeError, "got a tuple of length 1"),
        ({"validation_data": (np.zeros((4, 5), np.float32), np.zeros(4, int))}, ValueError,
         r"validation_data\[0\] must have 6 features"),
        ({"validation_data": (np.zeros((4, 6), np.float32), np.zeros(3, int))}, ValueError,
         r"validation_data\[1\] must have shape \(4,\)"),
        ({"validation_data": (np.zeros((4, 6), np.float32), np.full(4, 3))}, ValueError,
         r"validation_data\[1\] must be class ids in \[0, 3\)"),
        ({"validation_data": (np.zeros((4, 6), np.float32), np.zeros(4))}, TypeError,
         r"validation_data\[1\] must hold integer class ids"),
        ({"validation_data": (np.zeros((0, 6), np.float32), np.zeros(0, int))}, ValueError,
         r"validation_data\[0\] has no rows"),
    ],
    ids=["float-labels", "label-range", "label-count", "features", "int-X", "epochs", "lr", "mask-count",
         "mask-dtype", "fraction-one", "fraction-negative", "fraction-nan", "fraction-str", "fraction-bool",
         "no-training-rows", "no-validation-rows", "patience-zero", "patience-float", "tol", "val-not-pair",
         "val-length", "val-features", "val-label-count", "val-label-range", "val-float-labels", "val-empty"],
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


# --------------------------------------------------------------------------------------------------
# early stopping

def _noisy(rng, n=80, k=10, classes=3):
    """Few rows, a third of the labels random, a wide net: the validation loss turns up within a few epochs."""
    X = rng.standard_normal((n, k)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    flip = rng.random(n) < 1 / 3
    y[flip] = rng.integers(0, classes, int(flip.sum()))
    return X, y


def _val_loss(model, X, y):
    return cross_entropy(model(X).astype(np.float64), y)[0]


def test_early_stopping_stops_and_restores_the_best_weights(rng):
    X, y = _noisy(rng)
    Xv, yv = _noisy(rng, n=60)
    net = nn.MLP.init([10, 64, 3], seed=0)
    out = na.train(net, X, y, epochs=400, lr=1e-2, validation_data=(Xv, yv), patience=5, tol=0.0, seed=0)
    h = out.history
    assert set(h) == {"loss", "val_loss", "best_epoch", "stopped_epoch"}
    assert h["stopped_epoch"] == h["best_epoch"] + 5 < 399  # stopped early, `patience` epochs after the best
    assert len(h["loss"]) == len(h["val_loss"]) == h["stopped_epoch"] + 1
    assert h["best_epoch"] == int(np.argmin(h["val_loss"]))
    assert h["val_loss"][-1] > min(h["val_loss"])
    # the weights returned are the best epoch's: their validation loss is the best one recorded
    assert _val_loss(out, Xv, yv) == pytest.approx(min(h["val_loss"]), rel=1e-5)
    # ... and not the last epoch's: one more run, stopped at the same epoch, keeps its last weights
    last = na.train(net, X, y, epochs=h["stopped_epoch"] + 1, lr=1e-2, validation_fraction=0, seed=0)
    assert _val_loss(last, Xv, yv) == pytest.approx(h["val_loss"][-1], rel=1e-5)


def test_tol_counts_small_improvements_as_none(rng):
    X, y = _noisy(rng)
    kw = dict(epochs=400, lr=1e-2, validation_data=_noisy(rng, n=60), patience=5, seed=0)
    exact = na.train(nn.MLP.init([10, 64, 3], seed=0), X, y, tol=0.0, **kw)
    loose = na.train(nn.MLP.init([10, 64, 3], seed=0), X, y, tol=10.0, **kw)
    assert loose.history["stopped_epoch"] == 5  # after epoch 0 nothing improves by 10: `patience` epochs more
    assert loose.history["best_epoch"] == int(np.argmin(loose.history["val_loss"]))  # the best is still kept
    assert exact.history["stopped_epoch"] > 5


def test_default_split_is_stratified_seeded_and_monitored(rng):
    X, y = _noisy(rng, n=200)
    net = nn.MLP.init([10, 16, 3], seed=0)
    a = na.train(net, X, y, epochs=30, lr=1e-2, seed=4)
    b = na.train(net, X, y, epochs=30, lr=1e-2, seed=4)
    c = na.train(net, X, y, epochs=30, lr=1e-2, seed=5)
    assert len(a.history["val_loss"]) == len(a.history["loss"]) >= 1
    assert a.history == b.history  # deterministic for a seed: split, shuffles and weights
    assert all(np.array_equal(p.weight, q.weight) and np.array_equal(p.bias, q.bias)
               for p, q in zip(a.linears, b.linears, strict=True))
    assert a.history["val_loss"] != c.history["val_loss"]
    train_rows, val_rows = _split_rows(200, 0.1, y, np.random.default_rng(0))
    assert val_rows.size == 20 and np.union1d(train_rows, val_rows).size == 200
    for cls in range(3):  # each class in proportion, within one row
        assert abs(np.sum(y[val_rows] == cls) - 0.1 * np.sum(y == cls)) < 1
    assert _split_rows(7, 0.1, None, np.random.default_rng(0))[1].size == 1  # ceil(0.7): never empty


def test_validation_fraction_zero_is_the_trainer_without_early_stopping(rng):
    X, y = _blobs(rng, n=300)
    X, y, Xv, yv = X[:240], y[:240], X[240:], y[240:]
    net = nn.MLP.init([6, 8, 3], seed=0)
    plain = na.train(net, X, y, epochs=6, validation_fraction=0, seed=3)
    h = plain.history
    assert len(h["loss"]) == 6 and h["val_loss"] == [] and h["best_epoch"] is None and h["stopped_epoch"] is None
    # monitoring other rows draws nothing from the generator: the same trajectory on all of X, and on this
    # easy task the last epoch is the best, so the weights are bitwise those of the run without monitoring
    watched = na.train(net, X, y, epochs=6, validation_data=(Xv, yv), seed=3)
    assert watched.history["loss"] == h["loss"] and watched.history["best_epoch"] == 5
    assert all(np.array_equal(p.weight, q.weight) and np.array_equal(p.bias, q.bias)
               for p, q in zip(plain.linears, watched.linears, strict=True))


def test_early_stopping_keeps_masks_and_csr_patterns(rng):
    X, y = _noisy(rng)
    net = nn.MLP.init([10, 64, 3], seed=0)
    masks = [na.magnitude_mask(layer.weight, 0.75) for layer in net.linears]
    out = na.train(net, X, y, epochs=400, lr=1e-2, patience=3, masks=masks, seed=0)
    assert out.history["stopped_epoch"] is not None and out.history["best_epoch"] < out.history["stopped_epoch"]
    for layer, mask in zip(out.linears, masks, strict=True):
        assert np.all(layer.weight[~mask] == 0.0)
    csr_net = nn.MLP.from_arrays([na.prune(net.linears[0].weight, 0.5), net.linears[1].weight],
                                 [layer.bias for layer in net.linears])
    tuned = na.train(csr_net, X, y, epochs=400, lr=1e-2, patience=3, seed=0)
    assert tuned.history["stopped_epoch"] is not None
    w0, w1 = csr_net.linears[0].weight, tuned.linears[0].weight
    assert isinstance(w1, na.CSRWeight)
    assert np.array_equal(w0.indptr, w1.indptr) and np.array_equal(w0.indices, w1.indices)


def test_compress_passes_early_stopping_to_fine_tuning(rng):
    X, y = _blobs(rng, n=300, k=32, classes=10)
    X, y, V = X[:240], y[:240], (X[240:], y[240:])
    net = na.train(nn.MLP.init([32, 48, 10], seed=0), X, y, epochs=5, lr=1e-2, validation_fraction=0)
    masks = [na.magnitude_mask(layer.weight, 0.8) for layer in net.linears]
    kw = dict(sparsity=0.8, data=(X, y), finetune_epochs=12, steps=1, lr=1e-2, seed=0)
    stops = []
    for opts in ({}, {"validation_fraction": 0}, {"validation_data": V, "patience": 2, "tol": 0.05},
                 {"validation_fraction": 0.25, "patience": 2, "tol": 0.05}):
        tuned = na.compress(net, **opts, **kw)
        by_hand = na.train(net, X, y, epochs=12, lr=1e-2, masks=masks, seed=0, **opts)
        for p, q in zip(tuned.linears, by_hand.linears, strict=True):
            assert np.array_equal(p.weight.to_dense(), q.weight) and np.array_equal(p.bias, q.bias)
        stops.append(by_hand.history["stopped_epoch"])
    assert stops[:2] == [None, None] and None not in stops[2:]  # the last two stop the fine-tuning early
    with pytest.raises(ValueError, match=re.escape("validation_fraction must be in [0, 1)")):
        na.compress(net, validation_fraction=1.5, **kw)
    with pytest.raises(ValueError, match="validation_data= is for fine-tuning"):
        na.compress(net, sparsity=0.5, validation_data=V)


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
    both = na.compress(net, sparsity=0.9, int8=True)  # pruned-int8 (0.3 B/weight) beats dense int8 (1 B/weight)
    assert [r["format"] for r in both.report] == ["csr-int8", "csr-int8"]
    for p, b in zip(pruned.linears, both.linears, strict=True):  # the pruned pattern, quantized
        assert isinstance(b.weight, na.CSRInt8Weight)
        assert np.array_equal(p.weight.indptr, b.weight.indptr) and np.array_equal(p.weight.indices, b.weight.indices)
        assert b.nbytes < p.nbytes
    assert all(r["error"] < pr["error"] + 0.01 for r, pr in zip(both.report, pruned.report, strict=True))
    forced = na.compress(net, sparsity=0.9, int8=True, format="int8")
    assert [r["format"] for r in forced.report] == ["int8", "int8"]
    kept = np.count_nonzero(pruned.linears[0].weight.data)
    assert np.count_nonzero(forced.linears[0].weight.qweight) == kept
    assert all(isinstance(layer.weight, np.ndarray) for layer in net.linears)  # input untouched


def test_compress_with_fine_tuning_keeps_the_sparsity(rng):
    X, y = _blobs(rng, k=32, classes=10)
    net = na.train(nn.MLP.init([32, 48, 10], seed=0), X, y, epochs=5, lr=1e-2, validation_fraction=0)
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
        ({"sparsity": 0.5, "format": "int8"}, ValueError,
         re.escape("format='int8' stores int8 codes and needs int8=True")),
        ({"format": "csr-int8"}, ValueError, re.escape("format='csr-int8' stores int8 codes and needs int8=True")),
        ({"sparsity": 0.5, "group_size": 4}, ValueError, "group_size=4 and symmetric=True say how to quantize, "
                                                          "but int8=False"),
        ({"symmetric": False}, ValueError, "but int8=False"),
        ({"sparsity": 0.5, "int8": True, "symmetric": False, "format": "csr"}, ValueError,
         re.escape("format='csr' with int8=True stores the pruned-int8 format (csr-int8), whose scales are symmetric")),
        ({"int8": True, "symmetric": False, "format": "csr-int8"}, ValueError, "use symmetric=True, or "
                                                                             "format='int8'"),
        ({"granularity": "row"}, ValueError,
         re.escape("granularity='row' says how sparsity= prunes, but sparsity is None")),
        ({"int8": 1}, TypeError, "int8 must be a bool, got int"),
        ({"int8": True, "symmetric": "no"}, TypeError, "symmetric must be a bool, got str"),
    ],
    ids=["sparsity", "no-data", "no-sparsity", "format", "steps", "int8-format-without-int8",
         "csr-int8-format-without-int8", "group-size-without-int8", "asymmetric-without-int8",
         "asymmetric-csr", "asymmetric-csr-int8", "granularity-without-sparsity", "int8-not-bool",
         "symmetric-not-bool"],
)
def test_compress_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        na.compress(nn.MLP.init([4, 3], seed=0), **kwargs)


def test_compress_keeps_what_it_does_not_change(rng):
    W = rng.standard_normal((16, 8)).astype(np.float32)
    sparse = nn.MLP.from_arrays([na.prune(W, 0.9)])
    same = na.compress(sparse)
    assert same.linears[0].weight is sparse.linears[0].weight and same.report[0]["error"] == 0.0
    q = na.compress(sparse, int8=True)  # the layer's own pattern, quantized: 0.3 B/weight beats 1 B/weight
    assert q.report[0]["format"] == "csr-int8"
    assert np.array_equal(q.linears[0].weight.indices, sparse.linears[0].weight.indices)
    dense = na.compress(sparse, int8=True, format="int8")
    assert dense.report[0]["format"] == "int8" and dense.report[0]["density"] == 1.0  # int8 stores every entry
    kept = np.count_nonzero(dense.linears[0].weight.qweight)
    assert kept == pytest.approx(0.1 * W.size, abs=0.01 * W.size)  # the pruned entries are zero codes


# (format, int8, sparsity) -> the formats of the two layers of a [32, 48, 10] MLP; the table of the docstring
FORMAT_TABLE = [
    ("best", False, None, ["dense", "dense"]),
    ("best", False, 0.9, ["csr", "csr"]),
    ("csr", False, None, ["csr", "csr"]),
    ("csr", False, 0.9, ["csr", "csr"]),
    ("best", True, None, ["int8", "int8"]),  # every entry kept: 1 B/weight beats 3
    ("best", True, 0.9, ["csr-int8", "csr-int8"]),
    ("best", True, 0.5, ["int8", "int8"]),  # half the entries: 1.5 B/weight loses to 1
    ("csr", True, 0.5, ["csr-int8", "csr-int8"]),
    ("csr-int8", True, None, ["csr-int8", "csr-int8"]),
    ("csr-int8", True, 0.9, ["csr-int8", "csr-int8"]),
    ("int8", True, 0.9, ["int8", "int8"]),
    ("int8", True, None, ["int8", "int8"]),
]


@pytest.mark.parametrize("format, int8, sparsity, expected", FORMAT_TABLE,
                         ids=[f"{f}-{int8=}-{s=}" for f, int8, s, _ in FORMAT_TABLE])
def test_compress_stores_what_format_and_int8_ask_for(format, int8, sparsity, expected):
    net = nn.MLP.init([32, 48, 10], seed=0)
    out = na.compress(net, sparsity=sparsity, int8=int8, format=format)
    assert [r["format"] for r in out.report] == expected
    assert [na.formats.name_of(layer.weight) for layer in out.linears] == expected  # rows name what is stored
    if sparsity is not None:
        kept = [round((1 - sparsity) * 32 * 48), round((1 - sparsity) * 48 * 10)]
        codes = [np.count_nonzero(na.formats.to_dense(layer.weight)) for layer in out.linears]
        assert all(c <= k for c, k in zip(codes, kept, strict=True))  # pruning kept whatever the storage
    if int8:
        assert all(not na.formats.is_trainable(layer.weight) for layer in out.linears)  # int8 really applied
    elif format == "csr" and sparsity is None:
        assert all(r["error"] == 0.0 for r in out.report)  # the same values, stored as CSR


def test_compress_int8_follows_fine_tuning_and_keeps_its_pattern(rng):
    X, y = _blobs(rng, k=32, classes=10)
    net = na.train(nn.MLP.init([32, 48, 10], seed=0), X, y, epochs=3, lr=1e-2)
    kw = dict(sparsity=0.8, data=(X, y), finetune_epochs=1, steps=2, seed=0)
    tuned = na.compress(net, **kw)
    both = na.compress(net, int8=True, group_size=4, **kw)
    for t, b in zip(tuned.linears, both.linears, strict=True):
        w = b.weight
        assert isinstance(w, na.CSRInt8Weight) and w.group_size == 4
        assert np.array_equal(w.indptr, t.weight.indptr) and np.array_equal(w.indices, t.weight.indices)
        # the fine-tuned float values, quantized: within half a step of each value's (group's) scale
        err = np.abs(w.dequantize().data.astype(np.float64) - t.weight.data)
        assert np.all(err <= np.max(w.scales) / 2 * (1 + 1e-6))
        assert np.array_equal(b.bias, t.bias)
    assert float((both.predict(X) == tuned.predict(X)).mean()) > 0.95


def test_compress_best_without_symmetric_scales_stores_dense_int8():
    net = nn.MLP.init([16, 8], seed=0)
    out = na.compress(net, sparsity=0.9, int8=True, symmetric=False)
    assert out.report[0]["format"] == "int8" and out.linears[0].weight.zero_points is not None


def test_compress_recompresses_a_pruned_int8_model(rng):
    W = rng.standard_normal((16, 8)).astype(np.float32)
    model = nn.MLP.from_arrays([na.quantize(na.prune(W, 0.9))])
    again = na.compress(model, int8=True)
    assert again.report[0]["format"] == "csr-int8"
    np.testing.assert_array_equal(again.linears[0].weight.indices, model.linears[0].weight.indices)
    float_csr = na.compress(model, format="csr")  # stored as float32 CSR: the dequantized values
    assert float_csr.report[0]["format"] == "csr" and float_csr.report[0]["error"] == 0.0
