"""kd_loss (Hinton et al. 2015): oracle, gradient, limiting cases, stability; distill end to end."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import ref_cross_entropy, ref_kd_loss

import numaccel as na
from numaccel import nn
from numaccel.training import cross_entropy


@pytest.fixture
def logits(rng):
    s = rng.standard_normal((6, 5)) * 3
    t = rng.standard_normal((6, 5)) * 3
    return s, t, rng.integers(0, 5, 6)


@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 1.0), (0.5, 0.0)],
                         ids=lambda v: f"{v}")
def test_kd_loss_matches_oracle_and_finite_differences(logits, temperature, alpha):
    s, t, y = logits
    loss, grad = na.kd_loss(s, t, y, temperature=temperature, alpha=alpha)
    assert loss == pytest.approx(ref_kd_loss(s, t, y, temperature, alpha), rel=1e-12, abs=1e-14)
    h = 1e-6
    fd = np.zeros_like(s)
    for idx in np.ndindex(s.shape):
        up, down = s.copy(), s.copy()
        up[idx] += h
        down[idx] -= h
        diff = ref_kd_loss(up, t, y, temperature, alpha) - ref_kd_loss(down, t, y, temperature, alpha)
        fd[idx] = diff / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)


def test_alpha_zero_is_cross_entropy(logits):
    s, t, y = logits
    for temperature in (1.0, 3.0, 50.0):
        loss, grad = na.kd_loss(s, t, y, temperature=temperature, alpha=0.0)
        assert loss == pytest.approx(ref_cross_entropy(s, y), rel=1e-12)
        np.testing.assert_allclose(grad, cross_entropy(s, y)[1], rtol=1e-12, atol=1e-15)


def test_t_one_alpha_one_with_one_hot_teacher_tends_to_cross_entropy(logits):
    s, _, y = logits
    teacher = np.full(s.shape, -60.0)
    teacher[np.arange(len(y)), y] = 60.0  # softmax(teacher) is one-hot to float64 precision
    loss, _ = na.kd_loss(s, teacher, y, temperature=1.0, alpha=1.0)
    assert loss == pytest.approx(ref_cross_entropy(s, y), rel=1e-9)


def test_student_equal_to_teacher_gives_zero(logits):
    _, t, y = logits
    for temperature in (1.0, 4.0, 100.0):
        loss, grad = na.kd_loss(t, t, y, temperature=temperature, alpha=1.0)
        assert abs(loss) < 1e-12
        np.testing.assert_allclose(grad, 0.0, atol=1e-15)


@pytest.mark.parametrize("scale,temperature", [(1e4, 1.0), (1e6, 4.0), (1.0, 1e4), (1e3, 1e3)],
                         ids=lambda v: f"{v:g}")
def test_stable_for_large_logits_and_temperatures(logits, scale, temperature):
    s, t, y = logits
    loss, grad = na.kd_loss(s * scale, t * scale, y, temperature=temperature, alpha=0.7)
    assert np.isfinite(loss) and loss >= 0 and np.isfinite(grad).all()
    shifted, grad2 = na.kd_loss(s * scale + 1e3, t * scale - 1e3, y, temperature=temperature, alpha=0.7)
    assert shifted == pytest.approx(loss, rel=1e-6, abs=1e-9)  # softmax is shift invariant
    np.testing.assert_allclose(grad2, grad, rtol=1e-6, atol=1e-9)


@given(temperature=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
                             st.booleans()),
       alpha=st.one_of(st.floats(-2, 2), st.just(float("nan"))))
def test_bad_temperature_or_alpha_raise(temperature, alpha):
    s = np.zeros((2, 3))
    ok = (not isinstance(temperature, bool) and np.isfinite(temperature) and temperature > 0
          and 0 <= alpha <= 1)
    if ok:
        loss, _ = na.kd_loss(s, s, np.array([0, 1]), temperature=temperature, alpha=alpha)
        assert np.isfinite(loss)
    else:
        with pytest.raises((TypeError, ValueError), match="temperature|alpha"):
            na.kd_loss(s, s, np.array([0, 1]), temperature=temperature, alpha=alpha)


@pytest.mark.parametrize(
    "s,t,y,match",
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), [0, 1], "same shape"),
        (np.zeros((2, 3)), np.zeros((2, 3)), [0, 3], r"\[0, 3\)"),
        (np.zeros((2, 3), np.int64), np.zeros((2, 3)), [0, 1], "float32 or float64"),
        (np.full((2, 3), np.inf), np.zeros((2, 3)), [0, 1], "finite"),
    ],
    ids=["shapes", "labels", "int-logits", "inf-logits"],
)
def test_bad_logits_raise(s, t, y, match):
    with pytest.raises((TypeError, ValueError), match=match):
        na.kd_loss(s, t, np.array(y), temperature=2.0, alpha=0.5)


def test_distill_trains_a_smaller_student(rng):
    X = rng.standard_normal((300, 8)).astype(np.float32)
    y = (X[:, :2].sum(1) > 0).astype(np.int64) + 2 * (X[:, 2] > 0)
    teacher = na.train(nn.MLP.init([8, 32, 4], seed=0), X, y, epochs=30, lr=1e-2, seed=0)
    student0 = nn.MLP.init([8, 6, 4], seed=1)
    student = na.distill(teacher, student0, X, y, temperature=3.0, alpha=0.8, epochs=30, lr=1e-2, seed=0)
    assert student.sizes == [8, 6, 4]
    agree = float((student.predict(X) == teacher.predict(X)).mean())
    assert agree > 0.9
    assert np.array_equal(student0.linears[0].weight, nn.MLP.init([8, 6, 4], seed=1).linears[0].weight)
    again = na.distill(teacher, student0, X, y, temperature=3.0, alpha=0.8, epochs=30, lr=1e-2, seed=0)
    assert np.array_equal(again.linears[0].weight, student.linears[0].weight)


def test_distill_from_a_compressed_teacher_and_mismatch(rng):
    X = rng.standard_normal((50, 8)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    teacher = na.compress(nn.MLP.init([8, 16, 4], seed=0), int8=True)
    assert na.distill(teacher, nn.MLP.init([8, 4, 4], seed=1), X, y, epochs=1).sizes == [8, 4, 4]
    with pytest.raises(ValueError, match="outputs"):
        na.distill(teacher, nn.MLP.init([8, 4, 3], seed=1), X, y % 3, epochs=1)


def test_tiny_temperature_that_overflows_raises():
    with pytest.raises(ValueError, match="too small"):
        na.kd_loss(np.ones((1, 2)), np.zeros((1, 2)), np.array([0]), temperature=1e-310, alpha=0.5)


# --------------------------------------------------------------------------------------------------
# early stopping

def _teacher_and_data(rng):
    X = rng.standard_normal((240, 8)).astype(np.float32)
    y = (X[:, :2].sum(1) > 0).astype(np.int64) + 2 * (X[:, 2] > 0)
    teacher = na.train(nn.MLP.init([8, 32, 4], seed=0), X[:160], y[:160], epochs=30, lr=1e-2,
                       validation_fraction=0, seed=0)
    return teacher, X[:160], y[:160], X[160:], y[160:]


@pytest.mark.parametrize("monitor", ["kd_loss", "cross_entropy"])
def test_distill_stops_early_on_the_monitored_loss_and_keeps_the_best(rng, monitor):
    teacher, X, y, Xv, yv = _teacher_and_data(rng)
    student0 = nn.MLP.init([8, 6, 4], seed=1)
    kw = dict(temperature=3.0, alpha=0.8, epochs=300, lr=3e-2, validation_data=(Xv, yv), patience=3, tol=1e-3,
              seed=0)
    student = na.distill(teacher, student0, X, y, monitor=monitor, **kw)
    h = student.history
    assert h["stopped_epoch"] is not None and len(h["loss"]) == len(h["val_loss"]) == h["stopped_epoch"] + 1 < 300
    assert h["best_epoch"] == int(np.argmin(h["val_loss"]))
    s = student(Xv).astype(np.float64)
    if monitor == "kd_loss":
        expected = na.kd_loss(s, teacher(Xv).astype(np.float64), yv, temperature=3.0, alpha=0.8)[0]
    else:
        expected = cross_entropy(s, yv)[0]
    assert expected == pytest.approx(min(h["val_loss"]), rel=1e-5)  # the best epoch's weights, on that loss
    again = na.distill(teacher, student0, X, y, monitor=monitor, **kw)
    assert again.history == h and np.array_equal(again.linears[0].weight, student.linears[0].weight)


def test_distill_default_split_and_validation_fraction_zero(rng):
    teacher, X, y, _, _ = _teacher_and_data(rng)
    student0 = nn.MLP.init([8, 6, 4], seed=1)
    split = na.distill(teacher, student0, X, y, epochs=8, lr=1e-2, seed=0)
    assert len(split.history["val_loss"]) == len(split.history["loss"]) >= 1
    plain = na.distill(teacher, student0, X, y, epochs=8, lr=1e-2, validation_fraction=0, seed=0)
    assert len(plain.history["loss"]) == 8 and plain.history["val_loss"] == []
    assert plain.history["best_epoch"] is None and plain.history["stopped_epoch"] is None
    assert not np.array_equal(split.linears[0].weight, plain.linears[0].weight)  # 10 % of the rows held out


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"monitor": "val_accuracy"}, ValueError, r"monitor must be one of \('kd_loss', 'cross_entropy'\)"),
        ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must be in \[0, 1\)"),
        ({"patience": 0}, ValueError, "patience must be a positive integer"),
        ({"validation_data": (np.zeros((3, 7), np.float32), np.zeros(3, int))}, ValueError,
         r"validation_data\[0\] must have 8 features"),
        ({"validation_data": (np.zeros((3, 8), np.float32), np.array([0, 1, 4]))}, ValueError,
         r"validation_data\[1\] must be class ids in \[0, 4\)"),
    ],
    ids=["monitor", "fraction", "patience", "val-features", "val-labels"],
)
def test_distill_rejects_bad_early_stopping_arguments(kwargs, exc, match):
    teacher = nn.MLP.init([8, 16, 4], seed=0)
    X = np.zeros((20, 8), np.float32)
    with pytest.raises(exc, match=match):
        na.distill(teacher, nn.MLP.init([8, 4, 4], seed=1), X, np.zeros(20, np.int64), epochs=1, **kwargs)


def test_kd_loss_of_no_rows_is_zero_as_cross_entropy():
    from numaccel.training import cross_entropy

    s, t, y = np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.int64)
    loss, grad = na.kd_loss(s, t, y)
    assert loss == 0.0 == cross_entropy(s, y)[0] and grad.shape == (0, 4)
