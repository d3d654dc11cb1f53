"""``compress``: prune (with fine-tuning), quantize, or both, returning a new model and a per-layer report."""

from __future__ import annotations

import numpy as np

from . import formats
from ._validate import as_fraction
from .nn import Sequential
from .nn.containers import _as_model
from .pruning import magnitude_mask

__all__ = ["compress"]

_FORMATS = ("best", "csr", "int8")


def _dense32(w) -> np.ndarray:
    """Any weight as a dense float32 ``(N, K)`` array (the array itself where it already is one)."""
    return np.asarray(formats.to_dense(w), dtype=np.float32)


def _relative_error(w, ref: np.ndarray) -> float:
    approx = _dense32(w).astype(np.float64)
    denom = float(np.linalg.norm(ref))
    err = float(np.linalg.norm(approx - ref))
    return err / denom if denom else err


def schedule(sparsity: float, steps: int) -> list[float]:
    """Sparsities of an iterative prune -> fine-tune run, ending at ``sparsity``.

    The cubic ramp of Zhu & Gupta (2017): ``s_i = s * (1 - (1 - i / steps) ** 3)`` for ``i = 1..steps``,
    which prunes much at first, while there are many small weights, and little near the end.
    """
    return [sparsity * (1.0 - (1.0 - i / steps) ** 3) for i in range(1, steps + 1)]


def compress(model, *, sparsity=None, granularity: str = "tensor", int8: bool = False, group_size=None,
             symmetric: bool = True, format: str = "best", data=None, finetune_epochs: int = 0,
             steps: int = 3, lr: float = 5e-4, batch_size: int = 64, seed=0,
             progress: bool = False) -> Sequential:
    """Prune, quantize, or both; return a new model (the input model is not modified).

    Parameters
    ----------
    model : Sequential or MLP
        Weights of any registered format (densified first, through :func:`numaccel.formats.to_dense`).
    sparsity : float in [0, 1], optional, keyword-only
        Fraction of each layer's weights to remove by magnitude (:func:`numaccel.magnitude_mask`).
    granularity : {"tensor", "row"}, keyword-only
        Passed to :func:`numaccel.magnitude_mask`.
    int8 : bool, keyword-only
        Quantize every layer with :func:`numaccel.quantize` (after pruning and fine-tuning, if any).
    group_size, symmetric : keyword-only
        Passed to :func:`numaccel.quantize`.
    format : {"best", "csr", "int8"}, keyword-only
        With both ``sparsity`` and ``int8``: store each layer as CSR (float32 values), as dense int8 codes,
        or as whichever of the two takes fewer bytes (``"best"``). Ignored otherwise.
    data : (X, y), optional, keyword-only
        Training data for fine-tuning; needed when ``finetune_epochs > 0``.
    finetune_epochs : int, keyword-only
        Epochs of masked training (:func:`numaccel.train`) after each pruning step.
    steps : int, keyword-only
        With fine-tuning, prune in this many steps along :func:`schedule` (Deep Compression's prune ->
        fine-tune -> repeat); without it, prune once.
    lr, batch_size, seed, progress : keyword-only
        Passed to :func:`numaccel.train`.

    Returns
    -------
    Sequential
        Same class as ``model``. ``result.report`` lists, per Linear layer, its ``format`` (registered
        name), ``density`` (:func:`numaccel.formats.density`: nonzeros / N K of a dense array, stored
        entries / N K of another format), ``bytes`` and ``error``, the relative Frobenius distance
        ``||W_new - W|| / ||W||`` of the layer's weight to the input model's weight.

    Raises
    ------
    TypeError, ValueError
        Bad arguments; a layer whose weight cannot be densified.

    See Also
    --------
    numaccel.prune, numaccel.quantize, numaccel.train

    Notes
    -----
    Fine-tuning changes the kept weights too, so ``error`` measures the whole change, not only the
    pruning. Weights are pruned and quantized as float32; biases are kept as they are (dtype included).

    Examples
    --------
    >>> import numaccel as na
    >>> net = na.nn.MLP.init([32, 64, 10], seed=0)
    >>> small = na.compress(net, sparsity=0.9)
    >>> [row["format"] for row in small.report], round(small.report[0]["density"], 2)
    (['csr', 'csr'], 0.1)
    """
    from .training import _as_labels, _positive_int, train

    model = _as_model(model)
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
    if sparsity is not None:
        sparsity = as_fraction(sparsity, "sparsity")
    finetune_epochs = 0 if finetune_epochs == 0 else _positive_int(finetune_epochs, "finetune_epochs")
    steps = _positive_int(steps, "steps")
    originals = [_dense32(layer.weight) for layer in model.linears]
    weights = list(originals)
    if sparsity is not None:
        if finetune_epochs:
            if data is None:
                raise ValueError("finetune_epochs > 0 needs data=(X, y) to fine-tune on")
            X, y = data
            _as_labels(y, len(y), model.linears[-1].out_features)
            current = model.with_weights(weights)
            for s in schedule(sparsity, steps):
                masks = [magnitude_mask(w, s, granularity=granularity) for w in weights]
                current = train(current, X, y, epochs=finetune_epochs, lr=lr, batch_size=batch_size,
                                seed=seed, masks=masks, progress=progress)
                weights = [_dense32(layer.weight) for layer in current.linears]
            biases = [layer.bias for layer in current.linears]
        else:
            weights = [np.where(magnitude_mask(w, sparsity, granularity=granularity), w, np.float32(0))
                       for w in weights]
            biases = None
        stored = [formats.CSRWeight.from_dense(w) for w in weights]
    else:
        if finetune_epochs:
            raise ValueError("finetune_epochs needs sparsity=...: fine-tuning follows pruning")
        biases = None
        stored = [layer.weight for layer in model.linears]
    if int8:
        from .quantization import quantize

        quantized = [quantize(w, group_size=group_size, symmetric=symmetric) for w in weights]
        if format == "int8":
            stored = quantized
        else:
            # a sparse layer (pruned here or CSR already) stays CSR unless int8 is forced or smaller
            sparse = [sparsity is not None or isinstance(layer.weight, formats.CSRWeight)
                      for layer in model.linears]
            stored = [formats.CSRWeight.from_dense(w) if sp else q
                      for w, q, sp in zip(weights, quantized, sparse, strict=True)]
            if format == "best":
                stored = [q if formats.nbytes(q) < formats.nbytes(c) else c
                          for q, c in zip(quantized, stored, strict=True)]
    result = model.with_weights(stored, biases)
    result.report = [
        {"layer": row["layer"], "shape": row["shape"], "format": row["format"], "density": row["density"],
         "bytes": row["bytes"], "error": _relative_error(layer.weight, ref.astype(np.float64))}
        for row, layer, ref in zip(result.summary(), result.linears, originals, strict=True)
    ]
    return result
