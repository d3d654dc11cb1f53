"""Models built from ``numaccel.linear``: ``Linear`` layers, activations, ``Sequential`` and ``MLP``.

A layer holds its weight in whatever format ``numaccel.linear`` accepts (a dense ndarray, a
:class:`~numaccel.CSRWeight`, an :class:`~numaccel.Int8Weight`, a sharded weight, ...); the forward pass
is one ``linear`` call per layer, so every format, present or future, runs through the same dispatch.
Models are plain Python objects holding NumPy arrays: no PyTorch is needed to run them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validate import as_float_array, check_finite
from .linear import check_bias, linear

__all__ = ["GELU", "MLP", "Linear", "ReLU", "Sequential", "densify", "erf", "weight_format"]


def weight_format(weight) -> str:
    """Short name of a weight's storage format: ``"dense"``, ``"csr"``, ``"int8"`` or the class name."""
    if isinstance(weight, np.ndarray):
        return "dense"
    name = type(weight).__name__
    return {"CSRWeight": "csr", "Int8Weight": "int8"}.get(name, name)


def densify(weight) -> np.ndarray:
    """Any weight as a dense float32 ``(N, K)`` array (the array itself, to_dense() or dequantize())."""
    if isinstance(weight, np.ndarray):
        return weight.astype(np.float32, copy=False)
    for method in ("to_dense", "dequantize"):
        if hasattr(weight, method):
            return np.asarray(getattr(weight, method)(), dtype=np.float32)
    raise TypeError(f"cannot densify a {type(weight).__name__} weight (no to_dense() or dequantize())")


def _weight_nbytes(weight) -> int:
    return int(weight.nbytes) if hasattr(weight, "nbytes") else 0


class Linear:
    """A fully connected layer ``y = x @ W.T + bias`` running through :func:`numaccel.linear`.

    Parameters
    ----------
    weight : ndarray (N, K) or any weight object ``numaccel.linear`` accepts
        ``(out_features, in_features)`` layout, as ``torch.nn.Linear.weight``. A dense weight must be a
        2-D float32/float64 array with finite values; it is used as given (not copied) and must not be
        modified afterwards. Other formats need a ``shape`` attribute ``(N, K)``.
    bias : ndarray (N,), optional
        Stored as float32 (a copy).

    Raises
    ------
    TypeError
        A weight without a 2-D ``shape``, a non-float dense weight or bias.
    ValueError
        A bias of the wrong length, NaN or inf in a dense weight or bias.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> layer = na.nn.Linear(np.eye(2, dtype=np.float32), bias=np.ones(2, np.float32))
    >>> layer(np.array([1.0, 2.0], np.float32))
    array([2., 3.], dtype=float32)
    """

    def __init__(self, weight, bias=None):
        if isinstance(weight, np.ndarray):
            if weight.dtype.kind != "f":
                raise TypeError(
                    f"weight must be float32 or float64, got {weight.dtype}; use weight.astype(np.float32)"
                )
            if weight.ndim != 2:
                raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
            if weight.dtype not in (np.float32, np.float64):
                weight = weight.astype(np.float32)
            check_finite(weight, "weight")
        else:
            shape = getattr(weight, "shape", None)
            if shape is None or len(shape) != 2:
                raise TypeError(
                    f"weight must be an ndarray or a weight object with a 2-D shape (CSRWeight, Int8Weight, "
                    f"...), got {type(weight).__name__}"
                )
        self.weight = weight
        n = int(weight.shape[0])
        if bias is not None:
            bias = check_bias(bias, n).astype(np.float32)
            check_finite(bias, "bias")
        self.bias = bias

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def format(self) -> str:
        return weight_format(self.weight)

    @property
    def nbytes(self) -> int:
        """Bytes held by the weight (as stored) and the bias."""
        return _weight_nbytes(self.weight) + (0 if self.bias is None else int(self.bias.nbytes))

    @property
    def num_params(self) -> int:
        """Parameters of the layer as a dense layer would count them: ``N * K (+ N)``."""
        n, k = self.weight.shape
        return int(n) * int(k) + (0 if self.bias is None else int(n))

    def dense_weight(self) -> np.ndarray:
        """The weight as a dense float32 ``(N, K)`` array (a new array for compressed formats)."""
        return densify(self.weight)

    def __call__(self, x, **kwargs):
        return linear(x, self.weight, self.bias, **kwargs)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, format={self.format!r})"


_erf_ufunc = None


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise (SciPy's when installed, else the standard library's)."""
    global _erf_ufunc
    if _erf_ufunc is None:
        try:
            from scipy.special import erf as scipy_erf

            _erf_ufunc = scipy_erf
        except ImportError:  # pragma: no cover - scipy is an optional extra
            _erf_ufunc = np.frompyfunc(math.erf, 1, 1)
    x = np.asarray(x)
    return np.asarray(_erf_ufunc(x), dtype=x.dtype)


class ReLU:
    """``max(x, 0)``, elementwise."""

    def __call__(self, x, **kwargs):
        return np.maximum(x, 0, dtype=x.dtype)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Derivative at ``x`` (0 at ``x == 0``, as PyTorch)."""
        return (x > 0).astype(x.dtype)

    def __repr__(self) -> str:
        return "ReLU()"


class GELU:
    """Gaussian error linear unit ``x * Phi(x)`` (``approximate="none"``) or its tanh form, as torch's GELU.

    Parameters
    ----------
    approximate : {"none", "tanh"}, keyword-only
    """

    _C = math.sqrt(2.0 / math.pi)

    def __init__(self, *, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _tanh_inner(self, x):
        return self._C * (x + 0.044715 * x**3)

    def __call__(self, x, **kwargs):
        if self.approximate == "tanh":
            return (0.5 * x * (1.0 + np.tanh(self._tanh_inner(x)))).astype(x.dtype, copy=False)
        return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Derivative at ``x``."""
        if self.approximate == "tanh":
            t = np.tanh(self._tanh_inner(x))
            dt = (1.0 - t * t) * self._C * (1.0 + 3 * 0.044715 * x * x)
            return (0.5 * (1.0 + t) + 0.5 * x * dt).astype(x.dtype, copy=False)
        cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return (cdf + x * pdf).astype(x.dtype, copy=False)

    def __repr__(self) -> str:
        return f"GELU(approximate={self.approximate!r})"


_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


def _activation(name):
    if isinstance(name, (ReLU, GELU)):
        return name
    if name == "gelu_tanh":
        return GELU(approximate="tanh")
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be 'relu', 'gelu' or 'gelu_tanh', got {name!r}")
    return _ACTIVATIONS[name]()


class Sequential:
    """Layers applied in order: ``Linear`` layers and activations (``ReLU``, ``GELU``).

    Parameters
    ----------
    layers : sequence
        Callables; the ``Linear`` ones hold the weights.

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
        self.report = None  # set by numaccel.compress: one dict per Linear layer

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
        """Forward pass; ``kwargs`` (e.g. ``device=``, ``activations=``) go to every ``linear`` call."""
        for layer in self.layers:
            x = layer(x, **kwargs) if isinstance(layer, Linear) else layer(x)
        return x

    def predict(self, x) -> np.ndarray:
        """Class ids: the argmax of the output over its last axis."""
        return np.argmax(self(x), axis=-1)

    def with_weights(self, weights, biases=None) -> Sequential:
        """A new model with the same layers and the given weights (and biases), one per ``Linear``."""
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
        """Per ``Linear`` layer: shape, format, density of the stored weight and bytes."""
        rows = []
        for i, layer in enumerate(self.linears):
            w = layer.weight
            density = getattr(w, "density", None)
            if density is None:
                try:
                    dense = layer.dense_weight()
                except TypeError:  # a format that cannot be densified (e.g. sharded on other machines)
                    density = float("nan")
                else:
                    density = float(np.count_nonzero(dense)) / dense.size if dense.size else 0.0
            rows.append(
                {"layer": i, "shape": tuple(int(s) for s in w.shape), "format": layer.format,
                 "density": float(density), "bytes": layer.nbytes}
            )
        return rows

    def __repr__(self) -> str:
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
        """An MLP from weight arrays in ``(out, in)`` layout (any formats ``linear`` accepts).

        Parameters
        ----------
        weights : sequence of weights, shapes ``(N_i, K_i)`` with ``K_{i+1} == N_i``
        biases : sequence of (N_i,) arrays or None, optional
        activation : {"relu", "gelu", "gelu_tanh"}, keyword-only
            Applied after every layer but the last.

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
        """A freshly initialised MLP with layer widths ``sizes = [in, hidden..., out]``.

        Weights are drawn as in ``torch.nn.Linear`` (Kaiming-uniform: ``U(-1/sqrt(K), 1/sqrt(K))`` for
        weights and biases), from ``numpy.random.default_rng(seed)``.

        Examples
        --------
        >>> import numaccel as na
        >>> na.nn.MLP.init([64, 32, 10], seed=0).sizes
        [64, 32, 10]
        """
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least [in_features, out_features], got {sizes}")
        for i, s in enumerate(sizes):
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0:
                raise ValueError(f"sizes[{i}] must be a positive integer, got {s!r}")
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for k, n in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(k)
            weights.append(rng.uniform(-bound, bound, size=(n, k)).astype(dtype))
            biases.append(rng.uniform(-bound, bound, size=n).astype(np.float32))
        return cls.from_arrays(weights, biases, activation=activation)

    @classmethod
    def from_torch(cls, module, *, activation: str | None = None) -> MLP:
        """Convert a PyTorch ``nn.Sequential``, a bare ``nn.Linear``, or a ``state_dict`` of Linear layers.

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
        if activation is not None:
            _activation(activation)  # an unknown name is refused even where it would not be used
        if hasattr(module, "named_children") and hasattr(module, "state_dict"):
            import torch  # an nn.Module was given, so torch is installed

            if not isinstance(module, torch.nn.Module):
                raise TypeError(f"module must be a torch.nn.Module or a state_dict, got {type(module).__name__}")
            pairs = _layers_from_torch(module, torch)
            if activation is not None:
                _check_activation_matches(pairs, activation)
            return cls([layer for _, layer in pairs])
        if not hasattr(module, "items"):
            raise TypeError(
                f"module must be a torch.nn.Sequential, a torch.nn.Linear or a state_dict, got "
                f"{type(module).__name__}"
            )
        weights, biases = _layers_from_state_dict(module, activation)
        # One layer has no activation to place: any name will do.
        return cls.from_arrays(weights, biases, activation="relu" if activation is None else activation)


# --------------------------------------------------------------------------------------------------
# PyTorch conversion (torch is imported only when a module is given)

_TORCH_WAYS_OUT = (
    "rebuild it as a torch.nn.Sequential of Linear, ReLU and GELU layers, or pass its state_dict() with the "
    "activation it applies between its Linear layers, e.g. MLP.from_torch(net.state_dict(), activation='relu') "
    "(the Linear layers are then taken in the order the state_dict lists them)"
)


def _to_numpy(t, name: str) -> np.ndarray:
    """A torch tensor or an array as a new float32 NumPy array (without importing torch).

    float16 and bfloat16 widen exactly; float64 (and anything wider) is a ``TypeError``: nothing is downcast
    silently. ``name`` says which tensor, in the message.
    """
    if hasattr(t, "detach"):  # a torch tensor
        t = t.detach().cpu()
        if t.is_floating_point() and t.element_size() < 4:
            t = t.float()  # exact; NumPy has no bfloat16
        t = t.numpy()
    a = np.asarray(t)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point tensor, got {a.dtype}")
    if a.dtype.itemsize > 4:
        raise TypeError(
            f"{name} is {a.dtype}; the converted model holds float32 weights and does not downcast silently: "
            f"convert first with module.float() (for a state_dict: {{k: v.float() for k, v in sd.items()}})"
        )
    return np.array(a, dtype=np.float32)  # a copy: the model never shares memory with torch


def _activation_name(layer) -> str:
    """``"relu"``, ``"gelu"`` or ``"gelu_tanh"``: the ``activation=`` spelling of a ReLU or GELU layer."""
    if isinstance(layer, ReLU):
        return "relu"
    return "gelu" if layer.approximate == "none" else "gelu_tanh"


def _torch_plain(child, cls) -> bool:
    """``child`` is a ``cls`` computing what ``cls`` computes: no overridden ``forward``, no forward hooks."""
    return (isinstance(child, cls) and type(child).forward is cls.forward
            and not getattr(child, "_forward_hooks", None) and not getattr(child, "_forward_pre_hooks", None))


def _torch_leaves(module, where: str, torch, out: list) -> list:
    """``(where, child)`` for every child of a (nested) Sequential, in the order its forward calls them."""
    # Iterate the Sequential itself, as its forward does: named_children() yields a module used twice only once.
    for i, child in enumerate(module):
        label = f"{where}[{i}]"
        if _torch_plain(child, torch.nn.Sequential):
            _torch_leaves(child, label, torch, out)
        else:
            out.append((label, child))
    return out


def _layers_from_torch(module, torch) -> list:
    """``(label, layer)`` pairs of numaccel layers computing what ``module`` computes; raises where they cannot."""
    nn_ = torch.nn
    if _torch_plain(module, nn_.Sequential):
        leaves = _torch_leaves(module, "module", torch, [])
    elif _torch_plain(module, nn_.Linear):
        leaves = [("module", module)]
    else:
        kind = type(module).__name__
        if isinstance(module, (nn_.Sequential, nn_.Linear)):
            why = f"a {kind} with its own forward() or with forward hooks"
        else:
            why = f"a {kind}, not a torch.nn.Sequential or torch.nn.Linear"
        raise TypeError(f"module is {why}: a conversion cannot see what its forward() computes; {_TORCH_WAYS_OUT}")
    pairs = []
    last_linear = None  # (label, out_features) of the latest Linear
    last_activation = None  # label of an activation with no Linear after it yet
    for label, child in leaves:
        kind = type(child).__name__
        if _torch_plain(child, nn_.Linear):
            weight = _to_numpy(child.weight, f"{label}.weight")
            bias = None if child.bias is None else _to_numpy(child.bias, f"{label}.bias")
            layer = Linear(weight, bias)
            if last_linear is not None and layer.in_features != last_linear[1]:
                raise ValueError(
                    f"{label} takes {layer.in_features} features but {last_linear[0]} gives {last_linear[1]}"
                )
            last_linear, last_activation = (label, layer.out_features), None
        elif _torch_plain(child, nn_.ReLU) or _torch_plain(child, nn_.GELU):
            layer = ReLU() if isinstance(child, nn_.ReLU) else GELU(approximate=child.approximate)
            if last_activation is not None:
                raise ValueError(
                    f"{label} ({layer!r}) follows the activation {last_activation} with no Linear layer between; "
                    f"an MLP applies at most one activation between Linear layers: remove one of them"
                )
            last_activation = label
        elif _torch_plain(child, nn_.Identity) or _torch_plain(child, nn_.Dropout):
            continue  # identities at inference
        elif _torch_plain(child, nn_.Flatten) and (child.start_dim, child.end_dim) == (1, -1) and not pairs:
            continue  # before any layer: the identity on the (B, K) inputs the converted model takes
        else:
            if isinstance(child, (nn_.Linear, nn_.ReLU, nn_.GELU, nn_.Identity, nn_.Dropout, nn_.Sequential)):
                kind = f"{kind} with its own forward() or with forward hooks"
            elif isinstance(child, nn_.Flatten):
                kind = f"Flatten(start_dim={child.start_dim}, end_dim={child.end_dim})"
                kind += " after another layer" if pairs else ""
            raise TypeError(
                f"{label} is a {kind}; a conversion takes Linear, ReLU, GELU, Identity and Dropout (the identity "
                f"at inference), nested Sequential containers and a leading Flatten(); replace or remove it"
            )
        pairs.append((label, layer))
    if last_linear is None:
        raise ValueError("module has no Linear layer; an MLP needs at least one")
    return pairs


def _check_activation_matches(pairs, activation) -> None:
    """``activation=`` given with a module: the module must be what ``from_arrays(..., activation=)`` builds."""
    want = _activation_name(_activation(activation))
    fail = f"activation={activation!r} does not match the module"
    fix = "leave activation out to take the module's activations as they are"
    prev = None
    for i, (label, layer) in enumerate(pairs):
        is_linear = isinstance(layer, Linear)
        if i % 2 == 0 and not is_linear:  # only i == 0: two activations in a row were refused before
            raise ValueError(f"{fail}: {label} ({layer!r}) comes before the first Linear layer; {fix}")
        if i % 2 == 1 and is_linear:
            raise ValueError(f"{fail}: {prev} and {label} are Linear layers with no activation between; {fix}")
        if not is_linear and _activation_name(layer) != want:
            raise ValueError(f"{fail}: {label} is {layer!r}; {fix}")
        prev = label
    if not isinstance(pairs[-1][1], Linear):
        raise ValueError(f"{fail}: {pairs[-1][0]} ({pairs[-1][1]!r}) follows the last Linear layer; {fix}")


def _layers_from_state_dict(state_dict, activation) -> tuple[list, list]:
    """Weights and biases of a state_dict's ``<layer>.weight`` / ``<layer>.bias`` pairs, in the order listed."""
    groups: dict[str, dict] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = str(key).rpartition(".")
        if leaf not in ("weight", "bias"):
            raise ValueError(f"state_dict key {key!r} is not a '<layer>.weight' or '<layer>.bias' entry")
        groups.setdefault(prefix, {})[leaf] = (key, value)
    if not groups:
        raise ValueError("state_dict is empty; it must hold at least one '<layer>.weight' entry")
    if len(groups) > 1 and activation is None:
        raise TypeError(
            f"activation is required for a state_dict of {len(groups)} layers: a state_dict holds no "
            f"activations; pass the one the model applies between its Linear layers (activation='relu', "
            f"'gelu' or 'gelu_tanh'), or convert the torch.nn.Sequential itself"
        )
    weights, biases = [], []
    prev = None  # (key, out_features)
    for prefix, entry in groups.items():
        if "weight" not in entry:
            weight_key = f"{prefix}.weight" if prefix else "weight"
            raise ValueError(f"state_dict has {entry['bias'][0]!r} but no {weight_key!r}")
        key, value = entry["weight"]
        w = _to_numpy(value, f"state_dict[{key!r}]")
        if w.ndim != 2:
            raise ValueError(
                f"state_dict[{key!r}] has shape {w.shape}; a Linear weight is 2-D (out_features, in_features): "
                f"a state_dict converts only when it holds Linear layers alone"
            )
        if prev is not None and w.shape[1] != prev[1]:
            raise ValueError(f"state_dict[{key!r}] takes {w.shape[1]} features but {prev[0]!r} gives {prev[1]}")
        prev = (key, w.shape[0])
        weights.append(w)
        if "bias" in entry:
            key, value = entry["bias"]
            biases.append(_to_numpy(value, f"state_dict[{key!r}]"))
        else:
            biases.append(None)
    return weights, biases


def as_model(model, name: str = "model") -> Sequential:
    """Check that ``model`` is a :class:`Sequential` with at least one ``Linear`` layer."""
    if not isinstance(model, Sequential):
        raise TypeError(f"{name} must be a numaccel.nn.Sequential or MLP, got {type(model).__name__}")
    if not model.linears:
        raise ValueError(f"{name} has no Linear layer")
    return model


def as_inputs(X, name: str = "X") -> np.ndarray:
    """Training inputs: a 2-D float array (float32/float64), finite."""
    X = as_float_array(X, name, ndims=(2,))
    check_finite(X, name)
    return X
