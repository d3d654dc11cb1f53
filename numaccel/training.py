"""A small, exact trainer for MLPs.

Softmax cross-entropy, Adam, mini-batches, masks that keep pruned weights at zero, and early stopping on
held-out rows that keeps the best epoch's weights.

Everything is NumPy: the matrix products go to BLAS. A run is reproducible: the same seed gives the same
shuffles and, on the same machine and thread count, the same weights.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys

import numpy as np

from . import _config, formats
from ._validate import as_float_array, as_positive_int, check_finite
from .nn import GELU, Linear, ReLU, Sequential
from .nn.containers import _as_model

__all__ = ["cross_entropy", "forward_backward", "log_softmax", "train"]


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``log(softmax(z))`` over the last axis, stable for any finite logits (row maximum subtracted)."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _as_labels(y, n: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Class ids: a 1-D integer array of length ``n`` with values in ``[0, n_classes)``."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.dtype == np.bool_:
        raise TypeError(f"{name} must hold integer class ids, got {y.dtype}; use {name}.astype(np.int64)")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one label per row of X), got {y.shape}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        bad = int(np.argmax((y < 0) | (y >= n_classes)))
        raise ValueError(
            f"{name} must be class ids in [0, {n_classes}) (the model's outputs), "
            f"got {name}[{bad}] = {y[bad]}"
        )
    return y.astype(np.int64)


def cross_entropy(logits, labels) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of ``logits`` (B, C) against class ids ``labels`` (B,), and its gradient.

    Returns
    -------
    loss : float
        ``-mean_b log softmax(logits[b])[labels[b]]``.
    grad : ndarray (B, C)
        ``(softmax(logits) - onehot(labels)) / B``, in the dtype of ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> from numaccel.training import cross_entropy
    >>> loss, grad = cross_entropy(np.zeros((1, 4)), np.array([2]))
    >>> round(loss, 6), grad.shape
    (1.386294, (1, 4))
    """
    logits = np.asarray(logits)
    b = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(b)
    loss = -float(logp[rows, labels].mean()) if b else 0.0
    grad = np.exp(logp)
    grad[rows, labels] -= 1.0
    grad /= max(b, 1)
    return loss, grad.astype(logits.dtype, copy=False)


# --------------------------------------------------------------------------------------------------
# forward and backward through a Sequential of dense weights

def _as_inputs(X, name: str = "X") -> np.ndarray:
    """Training inputs: a 2-D float array (float32/float64), finite."""
    X = as_float_array(X, name, ndims=(2,))
    check_finite(X, name)
    return X


def _check_trainable(model: Sequential) -> None:
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Linear):
            if not formats.is_trainable(layer.weight):
                raise TypeError(
                    f"layer {i} stores its weight as {layer.format}, which training cannot update: "
                    f"{formats.untrainable_reason(layer.weight)}"
                )
        elif not isinstance(layer, (ReLU, GELU)):
            raise TypeError(f"layer {i} is a {type(layer).__name__}; training supports Linear, ReLU and GELU")


def _structure_mask(layer: Linear):
    """Return the stored-entry pattern of a CSR layer as a bool (N, K) array; None for any other layer."""
    w = layer.weight
    if not isinstance(w, formats.CSRWeight):
        return None
    mask = np.zeros(w.shape, dtype=bool)
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    mask[rows, w.indices] = True
    return mask


def forward_backward(layers, weights, biases, X, loss_fn):
    """One forward and backward pass.

    ``layers`` is the model's layer list (Linear entries stand for ``weights[i]``/``biases[i]``, in order),
    ``loss_fn(logits) -> (loss, dlogits)``. Returns ``(loss, weight_grads, bias_grads)`` (a bias gradient is
    None where the bias is None). Computed in the dtype of ``X``.
    """
    inputs, pre = [], []
    h = X
    li = 0
    for layer in layers:
        if isinstance(layer, Linear):
            inputs.append(h)
            h = h @ weights[li].T
            if biases[li] is not None:
                h += biases[li]
            li += 1
        else:
            pre.append(h)
            h = layer(h)
    loss, g = loss_fn(h)
    gw: list = [None] * len(weights)
    gb: list = [None] * len(weights)
    for layer in reversed(layers):
        if isinstance(layer, Linear):
            li -= 1
            gw[li] = g.T @ inputs[li]
            if biases[li] is not None:
                gb[li] = g.sum(axis=0)
            if li:
                g = g @ weights[li]
        else:
            g = g * layer.grad(pre.pop())
    return loss, gw, gb


class _Adam:
    """Adam (Kingma & Ba 2015) with bias correction and decoupled weight decay; masked entries never move."""

    def __init__(self, params, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, masks=None):
        self.params = params
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.masks = masks if masks is not None else [None] * len(params)
        self.t = 0

    def step(self, grads) -> None:
        self.t += 1
        c1 = 1.0 - self.b1**self.t
        c2 = 1.0 - self.b2**self.t
        for p, g, m, v, mask in zip(self.params, grads, self.m, self.v, self.masks, strict=True):
            if g is None:
                continue
            if mask is not None:
                g = g * mask
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            update = (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)
            if self.wd:
                update += self.lr * self.wd * p
            p -= update.astype(p.dtype, copy=False)
            if mask is not None:
                p *= mask


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_float(value, name, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value}")
    return float(value)


def _blas_single_thread(enabled: bool):
    """Limit BLAS to one thread inside the block (through threadpoolctl, when installed)."""
    if enabled:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl is optional (numaccel[examples])
            pass
        else:
            return threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()


def _progress_bar(total: int, desc: str, enabled: bool):
    """Return a tqdm bar when tqdm is installed and ``enabled``, else an object with the same few methods.

    The bar shows only when stderr is a terminal (tqdm's ``disable=None``), so logs stay readable.
    """
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False, disable=None)
        except ImportError:
            pass
    return _PlainProgress(total, desc, enabled and sys.stderr.isatty())


class _PlainProgress:
    def __init__(self, total, desc, enabled):
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, 0

    def update(self, k=1):
        self.n += k
        if self.enabled and (self.n == self.total or self.n % max(1, self.total // 4) == 0):
            print(f"  {self.desc}: {self.n}/{self.total}", flush=True)

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def _forward(layers, weights, biases, X):
    """Logits of ``X`` through ``layers`` with the trainer's dense ``weights``/``biases`` (no backward pass)."""
    h = X
    li = 0
    for layer in layers:
        if isinstance(layer, Linear):
            h = h @ weights[li].T
            if biases[li] is not None:
                h += biases[li]
            li += 1
        else:
            h = layer(h)
    return h


def _epoch(layers, weights, biases, X, rows, loss_fn, opt, rng, batch_size) -> float:
    """One pass over ``X[rows]`` in a shuffled order; return the mean loss of its mini-batches (row-weighted)."""
    n = rows.size
    order = rows[rng.permutation(n)]
    total = 0.0
    for s in range(-(-n // batch_size)):
        batch = order[s * batch_size:(s + 1) * batch_size]
        loss, gw, gb = forward_backward(layers, weights, biases, X[batch],
                                        lambda z, batch=batch: loss_fn(batch, z))
        opt.step(gw + [g for g, b in zip(gb, biases, strict=True) if b is not None])
        total += loss * batch.size
    return total / max(n, 1)


# rows of a validation forward pass at a time: bounds the memory of the activations
_VALIDATION_CHUNK = 4096


def _validation_loss(layers, weights, biases, X, score) -> float:
    """Row-weighted mean of ``score(rows, logits)`` over ``X``, in chunks of rows."""
    n = X.shape[0]
    total = 0.0
    for start in range(0, n, _VALIDATION_CHUNK):
        rows = np.arange(start, min(n, start + _VALIDATION_CHUNK))
        total += float(score(rows, _forward(layers, weights, biases, X[rows]))) * rows.size
    return total / n


def _as_validation_fraction(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"validation_fraction must be a real number in [0, 1), got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise ValueError(f"validation_fraction must be in [0, 1) (0 turns early stopping off), got {value}")
    return value


def _as_validation_data(validation_data, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``validation_data=(X_val, y_val)``: the same rules as ``X`` and ``y``, and at least one row."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        got = (f"a {type(validation_data).__name__} of length {len(validation_data)}"
               if isinstance(validation_data, (tuple, list)) else type(validation_data).__name__)
        raise TypeError(f"validation_data must be a pair (X_val, y_val), got {got}")
    X_val = _as_inputs(validation_data[0], "validation_data[0]")
    if X_val.shape[0] == 0:
        raise ValueError("validation_data[0] has no rows; pass at least one validation row, or "
                         "validation_data=None to hold out validation_fraction of X")
    if X_val.shape[1] != n_features:
        raise ValueError(f"validation_data[0] must have {n_features} features (the model's inputs), got shape "
                         f"{X_val.shape}")
    y_val = _as_labels(validation_data[1], X_val.shape[0], n_classes, "validation_data[1]")
    return X_val, y_val


def _split_rows(n: int, fraction: float, strata, rng) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``ceil(fraction * n)`` of ``n`` rows, stratified by ``strata`` (class ids) when given.

    Rows are shuffled by ``rng``, grouped by class (stable sort, so the order within a class stays random)
    and taken at evenly spaced positions: each class gets its share of the validation rows within one row.
    Returns ``(train_rows, val_rows)``, both sorted.
    """
    n_val = math.ceil(round(fraction * n, 9))
    if n_val == 0:
        raise ValueError(f"validation_fraction={fraction} of the {n} rows of X leaves no validation rows; pass "
                         f"more rows, validation_data=(X_val, y_val), or validation_fraction=0")
    if n_val >= n:
        raise ValueError(f"validation_fraction={fraction} holds out {n_val} of the {n} rows of X and leaves no "
                         f"training rows; pass a smaller validation_fraction, validation_data=(X_val, y_val), or "
                         f"validation_fraction=0")
    order = rng.permutation(n)
    if strata is not None:
        order = order[np.argsort(strata[order], kind="stable")]
    held = np.zeros(n, dtype=bool)
    held[order[((np.arange(n_val) + 0.5) * (n / n_val)).astype(np.int64)]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _fit(model, X, loss_fn, *, epochs=1000, batch_size=64, lr=1e-3, weight_decay=0.0, seed=0, masks=None,
         validation_fraction=0.0, strata=None, monitor=None, validation=None, patience=20, tol=1e-4,
         progress=False, desc="train"):
    """Train ``model`` on rows of ``X`` with ``loss_fn(rows, logits) -> (loss, dlogits)``; return a new model.

    The shared loop of :func:`train` and :func:`numaccel.distill`. ``rows`` are the indices into ``X`` of the
    mini-batch, so the loss can look up its targets. Masks (one bool (N, K) array or None per Linear; the
    stored pattern of CSR layers is always kept) hold pruned weights at exactly zero.

    Early stopping monitors ``validation = (X_val, score)`` when given (``score(rows, logits) -> float``,
    ``rows`` indexing ``X_val``); otherwise, when ``validation_fraction > 0``, it holds out that fraction of
    the rows of ``X`` (stratified by ``strata``) and monitors ``monitor(rows, logits) -> float`` on them
    (``rows`` indexing ``X``; by default ``loss_fn``'s loss). The split is drawn first from the generator
    seeded by ``seed``, the shuffles after it, so ``validation_fraction=0`` gives the run of a trainer
    without early stopping. The returned model carries ``history`` (see :func:`train`).
    """
    model = _as_model(model)
    _check_trainable(model)
    X = _as_inputs(X)
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    lr = _non_negative_float(lr, "lr", positive=True)
    weight_decay = _non_negative_float(weight_decay, "weight_decay")
    validation_fraction = _as_validation_fraction(validation_fraction)
    patience = as_positive_int(patience, "patience")
    tol = _non_negative_float(tol, "tol")
    linears = model.linears
    if masks is None:
        masks = [None] * len(linears)
    masks = list(masks)
    if len(masks) != len(linears):
        raise ValueError(
            f"masks must have {len(linears)} entries (one per Linear, or None), got {len(masks)}"
        )
    if X.shape[1] != linears[0].in_features:
        raise ValueError(
            f"X must have {linears[0].in_features} features (the model's inputs), got shape {X.shape}"
        )
    # computed in the widest of X's and the dense weights' dtypes; each parameter returns in its own dtype
    dense = [layer.weight.dtype for layer in linears if isinstance(layer.weight, np.ndarray)]
    dtype = np.result_type(X.dtype, *dense, *[layer.bias.dtype for layer in linears if layer.bias is not None])
    weights, biases, all_masks = [], [], []
    for i, layer in enumerate(linears):
        w = np.array(layer.dense_weight(), dtype=dtype)  # a private copy
        mask = _structure_mask(layer)
        if masks[i] is not None:
            m = np.asarray(masks[i])
            if m.dtype != np.bool_ or m.shape != w.shape:
                raise ValueError(
                    f"masks[{i}] must be a bool array of shape {w.shape}, got {m.dtype} {m.shape}"
                )
            mask = m if mask is None else (mask & m)
        if mask is not None:
            mask = mask.astype(dtype)
            w *= mask
        weights.append(w)
        biases.append(None if layer.bias is None else layer.bias.astype(dtype))
        all_masks.append(mask)
    Xc = X.astype(dtype, copy=False)
    rng = np.random.default_rng(seed)
    train_rows = np.arange(X.shape[0])
    if validation is not None:
        X_val, score = validation
        X_val = X_val.astype(dtype, copy=False)
    elif validation_fraction:
        train_rows, val_rows = _split_rows(X.shape[0], validation_fraction, strata, rng)
        X_val = Xc[val_rows]
        if monitor is None:
            def monitor(rows, z):
                return loss_fn(rows, z)[0]

        def score(rows, z):
            return monitor(val_rows[rows], z)
    else:
        X_val = None
    params = weights + [b for b in biases if b is not None]
    pmasks = all_masks + [None] * (len(params) - len(weights))
    opt = _Adam(params, lr=lr, weight_decay=weight_decay, masks=pmasks)
    widths = model.sizes
    largest = max(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    small = batch_size * largest < _config.TRAIN_SMALL_MATMUL
    history = {"loss": [], "val_loss": [], "best_epoch": None, "stopped_epoch": None}
    best, best_params, wait = np.inf, None, 0
    bar = _progress_bar(epochs, desc, progress)
    with _blas_single_thread(small):
        for epoch in range(epochs):
            loss = _epoch(model.layers, weights, biases, Xc, train_rows, loss_fn, opt, rng, batch_size)
            history["loss"].append(loss)
            if X_val is None:
                bar.set_postfix_str(f"loss={loss:.4f}")
                bar.update(1)
                continue
            val = _validation_loss(model.layers, weights, biases, X_val, score)
            history["val_loss"].append(val)
            wait = 0 if val < best - tol else wait + 1  # a NaN loss is no improvement
            if val < best:
                best, history["best_epoch"] = val, epoch
                best_params = [p.copy() for p in params]
            bar.set_postfix_str(f"loss={loss:.4f} val_loss={val:.4f}")
            bar.update(1)
            if wait >= patience and epoch + 1 < epochs:
                history["stopped_epoch"] = epoch
                break
    bar.close()
    if best_params is not None:  # restore the best epoch's weights and biases (masked entries are zero there)
        for p, b in zip(params, best_params, strict=True):
            p[...] = b
    new = [_stored_like(layer.weight, w) for layer, w in zip(linears, weights, strict=True)]
    new_biases = [None if layer.bias is None else b.astype(layer.bias.dtype, copy=False)
                  for layer, b in zip(linears, biases, strict=True)]
    result = model.with_weights(new, new_biases)
    result.history = history
    return result


def _stored_like(old, w: np.ndarray):
    """Store a trained dense ``w`` as ``old`` was: CSR with its pattern kept, a dense array in its own dtype.

    A weight of another trainable format comes back as a dense float32 array.
    """
    if isinstance(old, formats.CSRWeight):
        return formats.CSRWeight.from_dense(w)
    return w.astype(old.dtype if isinstance(old, np.ndarray) else np.float32, copy=False)


def train(model, X, y, *, epochs: int = 1000, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
          validation_fraction: float = 0.1, validation_data=None, patience: int = 20, tol: float = 1e-4,
          seed=0, masks=None, progress: bool = False) -> Sequential:
    """Train a classifier with softmax cross-entropy and Adam on mini-batches; return the trained copy.

    By default it holds out 10 % of the rows, stops when their loss has not improved for ``patience``
    epochs, and returns the weights of the best epoch (early stopping, as scikit-learn's
    ``early_stopping=True`` and Keras' ``EarlyStopping(restore_best_weights=True)``).

    Parameters
    ----------
    model : Sequential or MLP
        Linear layers and ReLU/GELU activations; the last layer gives the logits. Every weight must be of a
        trainable format (:func:`numaccel.formats.is_trainable`: dense arrays and ``CSRWeight``). Not
        modified.
    X : ndarray (n, K), float32 or float64
    y : ndarray (n,) of int
        Class ids in ``[0, C)`` for ``C`` outputs.
    epochs : int, keyword-only
        At most this many passes over the training rows (exactly this many when nothing is monitored).
    batch_size : int, keyword-only
        Rows per Adam step (the last batch of an epoch may be shorter).
    lr, weight_decay : float, keyword-only
        Adam step size; decoupled weight decay (AdamW), 0 by default.
    validation_fraction : float in [0, 1), keyword-only
        Fraction of the rows of ``X`` held out to monitor (``ceil(validation_fraction * n)`` rows, each class
        in proportion); the model trains on the rest. ``0`` turns early stopping off: exactly ``epochs``
        epochs on all of ``X``, the same run as without early stopping. Ignored when ``validation_data`` is
        given.
    validation_data : (X_val, y_val), optional, keyword-only
        Rows to monitor instead of a split of ``X`` (then all of ``X`` is trained on); the same rules as
        ``X`` and ``y``, at least one row.
    patience : int >= 1, keyword-only
        Stop after this many epochs in a row without an improvement of the validation loss by more than
        ``tol`` over the best so far.
    tol : float >= 0, keyword-only
        The smallest decrease of the validation loss that counts as an improvement (as scikit-learn's
        ``tol``, Keras' ``min_delta``).
    seed : int or None, keyword-only
        Seeds the split and the shuffles: the same seed gives the same run.
    masks : sequence of (bool ndarray or None), optional, keyword-only
        One per Linear: entries where the mask is False are set to zero and stay exactly zero (masked
        training, as in Deep Compression's prune -> fine-tune loop). A CSR layer keeps its stored pattern.
    progress : bool, keyword-only
        Show a progress bar (tqdm when installed).

    Returns
    -------
    Sequential
        Same class and layers as ``model``; dense weights and all biases come back in their own dtype
        (float32 or float64), CSR layers as ``CSRWeight`` with their pattern kept, weights of other
        trainable formats as dense float32 arrays. Its ``history`` attribute is a dict (Keras'
        ``History.history`` names, epochs counted from 0):

        ``"loss"``
            list of float, one per epoch run: the mean training loss of the epoch's mini-batches, each
            taken before its Adam step.
        ``"val_loss"``
            list of float, one per epoch run: the validation loss after the epoch (empty when nothing is
            monitored).
        ``"best_epoch"``
            int, the epoch whose weights are returned (the first minimum of ``val_loss``); None when
            nothing is monitored (the last epoch's weights are returned).
        ``"stopped_epoch"``
            int, the epoch after which early stopping ended the run, before ``epochs``; None when every
            epoch ran.

    Raises
    ------
    TypeError
        A weight of a format training cannot update (``Int8Weight``; the message gives the format's
        :func:`numaccel.formats.untrainable_reason`), non-float ``X``, non-integer ``y``, a
        ``validation_data`` that is not a pair, a non-integer ``patience``.
    ValueError
        Shapes that disagree, labels out of range, bad hyperparameters (``validation_fraction`` outside
        [0, 1), ``patience < 1``, ``tol < 0``), a split that leaves no training or no validation rows, a
        ``validation_data`` with no rows or of the wrong shape or labels.

    See Also
    --------
    numaccel.distill : the same loop with the distillation loss.
    numaccel.compress : prune with fine-tuning through this trainer.

    Notes
    -----
    Loss ``-mean log softmax(f(x))[y]``; gradient by backpropagation in ``np.result_type`` of ``X``, the
    dense weights and the biases. Adam with
    ``betas = (0.9, 0.999)``, ``eps = 1e-8`` and bias correction; gradients of masked entries are zeroed
    before the moment updates, so their moments stay zero and the weights do not move.

    Early stopping: after epoch ``e`` the validation loss ``v_e`` (the same cross-entropy, without weight
    decay) is computed; the run stops after epoch ``e`` once ``v_j >= min_{i<j} v_i - tol`` for the
    ``patience`` epochs ``j = e - patience + 1 .. e``, and the weights and biases of the epoch with the
    lowest ``v`` are returned (masked entries are zero in every epoch's weights). ``epochs`` is therefore
    a maximum: the defaults (1000 epochs, ``patience=20``) are chosen so that the runs measured in
    ``docs/performance.md`` (section "Early stopping") end on their own, distillation's included. The split
    is drawn from the seeded generator before the first shuffle.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype(np.float32); y = (X[:, 0] > 0).astype(np.int64)
    >>> net = na.train(na.nn.MLP.init([4, 16, 2], seed=0), X, y, lr=1e-2, seed=0)
    >>> float((net.predict(X) == y).mean()) > 0.9
    True
    >>> h = net.history; len(h["val_loss"]) == len(h["loss"]), h["val_loss"][h["best_epoch"]] == min(h["val_loss"])
    (True, True)
    >>> len(na.train(na.nn.MLP.init([4, 16, 2], seed=0), X, y, epochs=20, validation_fraction=0).history["loss"])
    20
    """
    model = _as_model(model)
    X = _as_inputs(X)
    n_classes = model.linears[-1].out_features
    y = _as_labels(y, X.shape[0], n_classes)
    validation = None
    if validation_data is not None:
        X_val, y_val = _as_validation_data(validation_data, model.linears[0].in_features, n_classes)
        validation = (X_val, lambda rows, z: cross_entropy(z, y_val[rows])[0])
    return _fit(model, X, lambda rows, z: cross_entropy(z, y[rows]), epochs=epochs, batch_size=batch_size,
                lr=lr, weight_decay=weight_decay, seed=seed, masks=masks,
                validation_fraction=validation_fraction, strata=y, validation=validation, patience=patience,
                tol=tol, progress=progress, desc="train")
