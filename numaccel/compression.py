"""``compress``: prune (with fine-tuning), quantize, or both, returning a new model and a per-layer report."""

from __future__ import annotations

import numpy as np

from . import formats
from ._validate import as_fraction
from .nn import Sequential
from .nn.containers import _as_model
from .pruning import magnitude_mask

__all__ = ["compress"]

_FORMATS = ("best", "csr", "int8", "csr-int8")


def _dense32(w) -> np.ndarray:
    """Any weight as a dense float32 ``(N, K)`` array (the array itself where it already is one)."""
    return np.asarray(formats.to_dense(w), dtype=np.float32)


def _relative_error(w, ref: np.ndarray) -> float:
    approx = _dense32(w).astype(np.float64)
    denom = float(np.linalg.norm(ref))
    err = float(np.linalg.norm(approx - ref))
    return err / denom if denom else err


def _csr_source(layer_weight, w: np.ndarray, changed: bool):
    """Return the float CSR form of a layer's new weight ``w``.

    Built from ``w`` when pruning changed it, else from the layer's own pattern (a CSR weight itself, a
    pruned-int8 weight's dequantized values).
    """
    if not changed:
        if isinstance(layer_weight, formats.CSRWeight):
            return layer_weight
        if isinstance(layer_weight, formats.CSRInt8Weight):
            return layer_weight.dequantize()
    return formats.CSRWeight.from_dense(w)


def _check_requests(sparsity, granularity, int8, group_size, symmetric, format) -> None:
    """Refuse the combinations ``compress`` could only honour by dropping part of the request."""
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
    if not isinstance(int8, (bool, np.bool_)):
        raise TypeError(f"int8 must be a bool, got {type(int8).__name__}")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if not int8:
        if format in ("int8", "csr-int8"):
            raise ValueError(f"format={format!r} stores int8 codes and needs int8=True; for float32 storage use "
                             f"format='csr' or 'best'")
        if group_size is not None or not symmetric:
            raise ValueError(f"group_size={group_size!r} and symmetric={symmetric!r} say how to quantize, but "
                             f"int8=False; pass int8=True, or leave them at their defaults")
    elif not symmetric and format in ("csr", "csr-int8"):
        raise ValueError(f"format={format!r} with int8=True stores the pruned-int8 format (csr-int8), whose "
                         f"scales are symmetric so that its zeros stay exact; use symmetric=True, or "
                         f"format='int8' for asymmetric dense int8 codes")
    if sparsity is None and granularity != "tensor":
        raise ValueError(f"granularity={granularity!r} says how sparsity= prunes, but sparsity is None; pass "
                         f"sparsity=..., or leave granularity at 'tensor'")


def schedule(sparsity: float, steps: int) -> list[float]:
    """Sparsities of an iterative prune -> fine-tune run, ending at ``sparsity``.

    The cubic ramp of Zhu & Gupta (2017): ``s_i = s * (1 - (1 - i / steps) ** 3)`` for ``i = 1..steps``,
    which prunes much at first, while there are many small weights, and little near the end.
    """
    return [sparsity * (1.0 - (1.0 - i / steps) ** 3) for i in range(1, steps + 1)]


def compress(model, *, sparsity=None, granularity: str = "tensor", int8: bool = False, group_size=None,
             symmetric: bool = True, format: str = "best", data=None, finetune_epochs: int = 0,
             steps: int = 3, lr: float = 5e-4, batch_size: int = 64, validation_fraction: float = 0.1,
             validation_data=None, patience: int = 20, tol: float = 1e-4, seed=0,
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
        Passed to :func:`numaccel.quantize`; only with ``int8=True``. In the pruned-int8 format a group is
        ``group_size`` consecutive *stored* values of a row; its scales are always symmetric.
    format : {"best", "csr", "int8", "csr-int8"}, keyword-only
        How each layer is stored; see the table in the Notes. Never a silent choice: a combination that
        would drop part of the request is a ``ValueError``.
    data : (X, y), optional, keyword-only
        Training data for fine-tuning; needed when ``finetune_epochs > 0``.
    finetune_epochs : int, keyword-only
        At most this many epochs of masked training (:func:`numaccel.train`) after each pruning step; each
        step stops early and keeps its best epoch's weights as ``train`` does, unless
        ``validation_fraction=0``.
    steps : int, keyword-only
        With fine-tuning, prune in this many steps along :func:`schedule` (Deep Compression's prune ->
        fine-tune -> repeat); without it, prune once.
    lr, batch_size, seed, progress : keyword-only
        Passed to :func:`numaccel.train`.
    validation_fraction, validation_data, patience, tol : keyword-only
        Early stopping of each fine-tuning step, passed to :func:`numaccel.train`: by default 10 % of the
        rows of ``data`` are held out (the same rows at every step, for a given ``seed``);
        ``validation_fraction=0`` fine-tunes exactly ``finetune_epochs`` epochs on all of ``data``.
        ``validation_data`` needs fine-tuning.

    Returns
    -------
    Sequential
        Same class as ``model``. ``result.report`` lists, per Linear layer, its ``format`` (registered
        name), ``density`` (:func:`numaccel.formats.density`: nonzeros / N K of a dense array, stored
        entries / N K of another format), ``bytes`` and ``error``, the relative Frobenius distance
        ``||W_new - W|| / ||W||`` of the layer's weight to the input model's weight.

    Raises
    ------
    TypeError
        An argument of the wrong type; a layer whose weight cannot be densified.
    ValueError
        A value out of range, or a combination that cannot be honoured whole: ``format="int8"`` or
        ``"csr-int8"`` without ``int8=True``; ``group_size`` or ``symmetric=False`` without ``int8=True``;
        ``symmetric=False`` with ``format="csr"`` or ``"csr-int8"`` (pruned-int8 scales are symmetric);
        ``granularity`` other than ``"tensor"`` without ``sparsity``; ``validation_data`` without
        fine-tuning; early-stopping options that :func:`numaccel.train` refuses.

    See Also
    --------
    numaccel.prune, numaccel.quantize, numaccel.train

    Notes
    -----
    What each layer is stored as (the report's ``format`` names it):

    ==============  =========================================  ===================================================
    ``format``      ``int8=False``                             ``int8=True``
    ==============  =========================================  ===================================================
    ``"best"``      ``csr`` for the layers pruned here, the    per layer, the smaller in bytes of ``csr-int8``
                    other layers unchanged                     and ``int8`` (``int8`` alone with
                                                               ``symmetric=False``)
    ``"csr"``       ``csr``: every layer's stored (or          ``csr-int8``: the same entries as int8 codes
                    nonzero) entries as float32 values
    ``"csr-int8"``  ``ValueError``                             ``csr-int8``, as ``"csr"``
    ``"int8"``      ``ValueError``                             ``int8``: a code for every entry (a pruned entry
                                                               is code 0)
    ==============  =========================================  ===================================================

    With neither ``sparsity`` nor ``int8`` and ``format="best"`` the model is returned with the same
    weights. A layer keeps its ``activation_quant`` (W8A8) where its new format runs it (``int8`` and
    ``csr-int8``). A layer that is not pruned here keeps its own pattern where it has one (a ``csr`` or
    ``csr-int8`` input layer). Quantization always follows pruning and fine-tuning: the pruned-int8
    format quantizes the final pruned float weights, row by row (or by groups of a row's stored values).

    Fine-tuning changes the kept weights too, so ``error`` measures the whole change, not only the
    pruning. Weights are pruned and quantized as float32; biases are kept as they are (dtype included).

    Examples
    --------
    >>> import numaccel as na
    >>> net = na.nn.MLP.init([32, 64, 10], seed=0)
    >>> small = na.compress(net, sparsity=0.9)
    >>> [row["format"] for row in small.report], round(small.report[0]["density"], 2)
    (['csr', 'csr'], 0.1)
    >>> [row["format"] for row in na.compress(net, sparsity=0.9, int8=True).report]
    ['csr-int8', 'csr-int8']
    """
    from .training import _as_labels, _positive_int, train

    model = _as_model(model)
    _check_requests(sparsity, granularity, int8, group_size, symmetric, format)
    if sparsity is not None:
        sparsity = as_fraction(sparsity, "sparsity")
    finetune_epochs = 0 if finetune_epochs == 0 else _positive_int(finetune_epochs, "finetune_epochs")
    steps = _positive_int(steps, "steps")
    if validation_data is not None and not (finetune_epochs and sparsity is not None):
        raise ValueError("validation_data= is for fine-tuning; it needs sparsity=... and finetune_epochs > 0")
    originals = [_dense32(layer.weight) for layer in model.linears]
    weights = list(originals)
    biases = None
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
                                validation_fraction=validation_fraction, validation_data=validation_data,
                                patience=patience, tol=tol, seed=seed, masks=masks, progress=progress)
                weights = [_dense32(layer.weight) for layer in current.linears]
            biases = [layer.bias for layer in current.linears]
        else:
            weights = [np.where(magnitude_mask(w, sparsity, granularity=granularity), w, np.float32(0))
                       for w in weights]
    elif finetune_epochs:
        raise ValueError("finetune_epochs needs sparsity=...: fine-tuning follows pruning")
    pruned = sparsity is not None
    layers = [layer.weight for layer in model.linears]
    if not int8:
        if format == "csr" or pruned:
            stored = [_csr_source(lw, w, pruned) for lw, w in zip(layers, weights, strict=True)]
        else:
            stored = layers
    else:
        from .quantization import quantize

        stored = []
        for lw, w in zip(layers, weights, strict=True):
            candidates = []
            if format in ("best", "csr", "csr-int8") and symmetric:
                candidates.append(quantize(_csr_source(lw, w, pruned), group_size=group_size))
            if format in ("best", "int8"):
                candidates.append(quantize(w, group_size=group_size, symmetric=symmetric))
            stored.append(min(candidates, key=formats.nbytes))  # ties: csr-int8, the first
    result = model.with_weights(stored, biases)
    for new, old in zip(result.linears, model.linears, strict=True):  # W8A8 stays where the format runs it
        if old.activation_quant is not None and old.activation_quant in formats.spec_for(new.weight).quant:
            new.activation_quant = old.activation_quant
    result.report = [
        {"layer": row["layer"], "shape": row["shape"], "format": row["format"], "density": row["density"],
         "bytes": row["bytes"], "error": _relative_error(layer.weight, ref.astype(np.float64))}
        for row, layer, ref in zip(result.summary(), result.linears, originals, strict=True)
    ]
    return result
