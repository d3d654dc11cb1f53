"""Containers: ``Sequential`` (layers in order) and ``MLP`` (Linear layers with one activation between)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import formats
from .._validate import FLOAT_DTYPES
from ..ops import _is_dask_array
from . import torch as _torch
from .layers import Linear, _activation

__all__ = ["MLP", "Sequential"]


class Sequential:
    """Layers applied in order: ``Linear`` layers and activations (``ReLU``, ``GELU``).

    Parameters
    ----------
    layers : sequence
        Callables; the ``Linear`` ones hold the weights.

    Attributes
    ----------
    layers : list
    report : list of dict or None
        Set by :func:`numaccel.compress` (one entry per Linear layer) and by :func:`numaccel.optimize`
        (an :class:`numaccel.optimization.OptimizeReport`, a list of the same kind with whole-model figures).
    history : dict or None
        Set by :func:`numaccel.train` and :func:`numaccel.distill`: the loss per epoch, the validation loss
        per epoch, the best and the stopping epoch.

    Raises
    ------
    TypeError
        An entry that is not callable.
    ValueError
        Consecutive Linear layers whose feature counts do not chain.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> net = na.nn.Sequential([na.nn.Linear(np.ones((2, 3), np.float32)), na.nn.ReLU()])
    >>> net(np.array([1.0, -2.0, 0.5], np.float32))
    array([0., 0.], dtype=float32)
    """

    def __init__(self, layers):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(
                    f"layers[{i}] must be a layer (Linear, ReLU, GELU), got {type(layer).__name__}"
                )
        prev = None
        for i, layer in enumerate(layers):
            if isinstance(layer, Linear):
                if prev is not None and layer.in_features != prev:
                    raise ValueError(
                        f"layers[{i}] takes {layer.in_features} features but the layer before it gives {prev}"
                    )
                prev = layer.out_features
        self.layers = layers
        self.report = None  # set by numaccel.compress and numaccel.optimize
        self.history = None  # set by numaccel.train and numaccel.distill

    # ----------------------------------------------------------------------------------------------
    @property
    def linears(self) -> list[Linear]:
        """The ``Linear`` layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    @property
    def sizes(self) -> list[int]:
        """Feature counts ``[in, hidden..., out]``."""
        lin = self.linears
        return [lin[0].in_features] + [layer.out_features for layer in lin] if lin else []

    @property
    def nbytes(self) -> int:
        """Bytes held by all weights (as stored) and biases."""
        return sum(layer.nbytes for layer in self.linears)

    @property
    def num_params(self) -> int:
        """Parameters counted as in the dense model (``N * K + N`` per layer)."""
        return sum(layer.num_params for layer in self.linears)

    def __call__(self, x, **kwargs):
        """Forward pass; ``kwargs`` (e.g. ``device=``, ``activation_quant=``) go to every ``linear`` call.

        ``client=`` goes only to the layers that run on a cluster (sharded weights, or Dask-array
        activations), so a model may mix sharded and local layers.
        """
        local = kwargs
        if kwargs.get("client") is not None:
            local = {k: v for k, v in kwargs.items() if k != "client"}
        for layer in self.layers:
            if isinstance(layer, Linear):
                here = not _is_dask_array(x) and formats.spec_for(layer.weight).call is None
                x = layer(x, **(local if here else kwargs))
            else:
                x = layer(x)
        return x

    def predict(self, x, **kwargs) -> np.ndarray:
        """Class ids: the argmax of the output over its last axis (``kwargs`` as for a forward pass)."""
        return np.argmax(self(x, **kwargs), axis=-1)

    def with_weights(self, weights, biases=None) -> Sequential:
        """Return a new model with the same layers and the given weights (and biases), one per ``Linear``.

        The new ``Linear`` layers have no ``activation_quant`` of their own (the weights may be of another
        format).
        """
        weights = list(weights)
        n = len(self.linears)
        biases = [layer.bias for layer in self.linears] if biases is None else list(biases)
        if len(weights) != n or len(biases) != n:
            raise ValueError(
                f"weights and biases must have {n} entries (one per Linear), got {len(weights)} and "
                f"{len(biases)}"
            )
        it = iter(zip(weights, biases, strict=True))
        layers = [Linear(*next(it)) if isinstance(layer, Linear) else layer for layer in self.layers]
        return type(self)(layers)

    def summary(self) -> list[dict]:
        """Per ``Linear`` layer: shape, format name, ``activation_quant``, density and bytes of the stored weight.

        ``density`` is :func:`numaccel.formats.density`: the fraction of nonzeros of a dense weight, the
        fraction of stored entries of any other format (1.0 for a format that stores every entry).
        """
        return [
            {"layer": i, "shape": tuple(int(s) for s in layer.weight.shape), "format": layer.format,
             "activation_quant": layer.activation_quant, "density": formats.density(layer.weight),
             "bytes": layer.nbytes}
            for i, layer in enumerate(self.linears)
        ]

    def __repr__(self) -> str:
        """``Sequential([...])`` (or the subclass's name) with every layer's repr."""
        inner = ", ".join(map(repr, self.layers))
        return f"{type(self).__name__}([{inner}])"


class MLP(Sequential):
    """A multilayer perceptron: ``Linear`` layers with one activation between consecutive ones.

    Build one with :meth:`from_arrays`, :meth:`init` or :meth:`from_torch`.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> net = na.nn.MLP.init([4, 8, 3], activation="relu", seed=0)
    >>> net(np.ones((2, 4), np.float32)).shape
    (2, 3)
    """

    @classmethod
    def from_arrays(cls, weights, biases=None, *, activation: str = "relu") -> MLP:
        """Make an MLP from weights in ``(out, in)`` layout (dense arrays or weights of registered formats).

        Parameters
        ----------
        weights : sequence of weights, shapes ``(N_i, K_i)`` with ``K_{i+1} == N_i``
        biases : sequence of (N_i,) arrays or None, optional
            Kept in their own dtype (see :class:`Linear`).
        activation : {"relu", "gelu", "gelu_tanh"}, keyword-only
            Applied after every layer but the last.

        Returns
        -------
        MLP

        Raises
        ------
        TypeError, ValueError
            As :class:`Linear` and :class:`Sequential`; an empty ``weights``, a ``biases`` of another length.

        Examples
        --------
        >>> import numpy as np, numaccel as na
        >>> net = na.nn.MLP.from_arrays([np.ones((3, 2), np.float32), np.ones((1, 3), np.float32)])
        >>> net(np.array([1.0, 1.0], np.float32))
        array([6.], dtype=float32)
        """
        weights = list(weights)
        if not weights:
            raise ValueError("weights must hold at least one weight matrix, got an empty sequence")
        biases = [None] * len(weights) if biases is None else list(biases)
        if len(biases) != len(weights):
            raise ValueError(f"biases must have {len(weights)} entries (one per weight), got {len(biases)}")
        layers = []
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if i:
                layers.append(_activation(activation))
            layers.append(Linear(w, b))
        return cls(layers)

    @classmethod
    def init(cls, sizes, *, activation: str = "relu", seed=0, dtype=np.float32) -> MLP:
        """Make a freshly initialised MLP with layer widths ``sizes = [in, hidden..., out]``.

        Parameters
        ----------
        sizes : sequence of int
            At least ``[in_features, out_features]``, all positive.
        activation : {"relu", "gelu", "gelu_tanh"}, keyword-only
        seed : int or None, keyword-only
            Seeds ``numpy.random.default_rng``.
        dtype : {numpy.float32, numpy.float64}, keyword-only
            dtype of the weights and the biases.

        Returns
        -------
        MLP

        Raises
        ------
        TypeError
            ``dtype`` is not float32 or float64.
        ValueError
            Fewer than two sizes, a size that is not a positive integer, an unknown activation.

        Notes
        -----
        Weights and biases are drawn as in ``torch.nn.Linear`` (Kaiming-uniform: ``U(-1/sqrt(K), 1/sqrt(K))``),
        in float64, then rounded once to ``dtype``.

        Examples
        --------
        >>> import numpy as np, numaccel as na
        >>> na.nn.MLP.init([64, 32, 10], seed=0).sizes
        [64, 32, 10]
        >>> na.nn.MLP.init([4, 2], dtype=np.float64, seed=0).linears[0].bias.dtype
        dtype('float64')
        """
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least [in_features, out_features], got {sizes}")
        for i, s in enumerate(sizes):
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0:
                raise ValueError(f"sizes[{i}] must be a positive integer, got {s!r}")
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from exc
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dt}")
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for k, n in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(k)
            weights.append(rng.uniform(-bound, bound, size=(n, k)).astype(dt))
            biases.append(rng.uniform(-bound, bound, size=n).astype(dt))
        return cls.from_arrays(weights, biases, activation=activation)

    @classmethod
    def from_torch(cls, module, *, activation: str | None = None) -> MLP:
        """Convert a PyTorch ``nn.Sequential`` / ``nn.Linear`` or a ``state_dict`` of Linear layers to an MLP.

        Only modules whose order of children *is* the computation convert: a ``torch.nn.Sequential``
        (nested ones included) and a ``torch.nn.Linear``. Any other ``nn.Module`` is refused, because its
        ``forward`` may combine its children in ways a conversion cannot see (a ``torch.relu`` there would
        be lost).

        Parameters
        ----------
        module : torch.nn.Sequential, torch.nn.Linear or mapping of str to tensor
            A Sequential may hold ``Linear``, ``ReLU``, ``GELU`` (``approximate="none"`` or ``"tanh"``),
            ``Identity`` and ``Dropout`` (the identity at inference), nested ``Sequential`` containers and a
            leading ``Flatten()``. Each activation stays where it stands, so a model with different
            activations in different places converts as it is. A ``state_dict`` (e.g. read back with
            ``torch.load``) or any mapping of ``<layer>.weight`` / ``<layer>.bias`` to tensors or arrays gives
            one Linear layer per ``<layer>``, in the order the mapping lists them.
        activation : {"relu", "gelu", "gelu_tanh"} or None, keyword-only
            A ``state_dict`` holds no activations: for one of two or more layers this is required and is put
            between consecutive layers. For a module it is read from the module and need not be given; when
            given, the module must be exactly ``Linear, activation, Linear, ..., Linear`` with this activation.

        Returns
        -------
        MLP
            Holding float32 copies of the weights and biases in torch's ``(out, in)`` layout; it runs without
            torch, on inputs of shape ``(B, K)`` or ``(K,)``.

        Raises
        ------
        TypeError
            ``module`` is another kind of ``nn.Module`` (a custom module, a subclass of ``Sequential`` or
            ``Linear`` with its own ``forward``, a module with forward hooks) or neither a module nor a mapping;
            a child of an unsupported kind (named with its position, e.g. ``module[2][1]``); a tensor that is
            not floating point, or is float64; ``activation`` missing for a state_dict of several layers.
        ValueError
            Two activations with no Linear layer between them; no Linear layer; feature counts that do not
            chain; ``activation`` unknown or not matching the module; a state_dict entry other than
            ``<layer>.weight`` / ``<layer>.bias``, or a weight that is not 2-D; NaN or inf in a weight or bias.

        See Also
        --------
        from_arrays : The same from weight arrays and an activation.

        Notes
        -----
        The model computes what ``module.eval()`` computes: ``h = h @ W.T + b`` for each Linear layer and the
        activations where they stand. float16 and bfloat16 tensors widen exactly to float32. float64 tensors are
        refused rather than downcast (float32 is numaccel's working precision for weights): convert the module
        with ``module.float()`` first. With torch::

            net = numaccel.nn.MLP.from_torch(
                torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.GELU(), torch.nn.Linear(256, 10)))
            net = numaccel.nn.MLP.from_torch(torch.load("mlp_state.pt"), activation="gelu")

        Examples
        --------
        A state_dict of NumPy arrays, named as ``Sequential(Linear(2, 3), ReLU(), Linear(3, 1))`` names them:

        >>> import numpy as np, numaccel as na
        >>> sd = {"0.weight": np.ones((3, 2), np.float32), "0.bias": np.full(3, -1.0, np.float32),
        ...       "2.weight": np.ones((1, 3), np.float32)}
        >>> net = na.nn.MLP.from_torch(sd, activation="relu")
        >>> net
        MLP([Linear(2, 3, format='dense'), ReLU(), Linear(3, 1, format='dense')])
        >>> net(np.array([1.0, 1.0], np.float32))
        array([3.], dtype=float32)
        >>> na.nn.MLP.from_torch(sd)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: activation is required for a state_dict of 2 layers: ...
        """
        layers = _torch._convert(module, activation)
        if layers is not None:
            return cls(layers)
        weights, biases = _torch._layers_from_state_dict(module, activation)
        # One layer has no activation to place: any name will do.
        return cls.from_arrays(weights, biases, activation="relu" if activation is None else activation)


def _as_model(model, name: str = "model") -> Sequential:
    """Check that ``model`` is a :class:`Sequential` with at least one ``Linear`` layer."""
    if not isinstance(model, Sequential):
        raise TypeError(f"{name} must be a numaccel.nn.Sequential or MLP, got {type(model).__name__}")
    if not model.linears:
        raise ValueError(f"{name} has no Linear layer")
    return model
