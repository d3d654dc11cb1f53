"""Layers: ``Linear`` (one :func:`numaccel.linear` call) and the activations ``ReLU`` and ``GELU``."""

from __future__ import annotations

import math

import numpy as np

from .. import formats
from .._validate import FLOAT_DTYPES, as_float_array, check_finite, is_scipy_sparse, plain_array
from ..ops import linear

__all__ = ["GELU", "Linear", "ReLU"]


def _float_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """float32 and float64 as they are, narrower floats widened to float32; anything else a ``TypeError``."""
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind == "f" and not dtype.isnative:  # byte-swapped: the same values in this machine's order
        dtype = dtype.newbyteorder("=")
        if dtype in FLOAT_DTYPES:
            return dtype
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype(np.float32)  # float16 widens exactly
    if dtype.kind == "f":
        raise TypeError(f"{name} is {dtype}, wider than float64; use {name}.astype(np.float64)")
    raise TypeError(f"{name} must be float32 or float64, got {dtype}; use {name}.astype(np.float32)")


def _as_bias(bias, n: int) -> np.ndarray:
    """Return a new, finite ``(n,)`` bias in its own float dtype (float32 or float64; narrower floats widen)."""
    bias = plain_array(bias, "bias")
    if not isinstance(bias, np.ndarray):
        try:
            bias = np.asarray(bias)
        except Exception as exc:  # noqa: BLE001 - any failure to convert is a type problem
            raise TypeError(f"bias must be array-like, got {type(bias).__name__}") from exc
    dtype = _float_dtype(bias.dtype, "bias")
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},) (out_features), got {bias.shape}")
    bias = np.array(bias, dtype=dtype)  # a copy: the layer never shares the caller's bias
    check_finite(bias, "bias")
    return bias


class Linear:
    """A fully connected layer ``y = x @ W.T + bias`` running through :func:`numaccel.linear`.

    Parameters
    ----------
    weight : ndarray (N, K) or a weight of a registered format
        ``(out_features, in_features)`` layout, as ``torch.nn.Linear.weight``. A dense weight must be a
        2-D floating-point array with finite values: C-contiguous float32 and float64 are used as given
        (not copied, and must not be modified afterwards); other layouts are copied to C order (the one
        the kernels read and :func:`numaccel.save` writes, so a saved model computes the same bits), and
        float16 widens to a float32 copy. Any other weight must be
        of a format registered with :func:`numaccel.formats.register` (``CSRWeight``, ``Int8Weight``,
        sharded weights, formats of your own).
    bias : ndarray (N,), optional
        Finite; kept in its own dtype, float32 or float64 (narrower floats widen to float32), as a copy.
    activation_quant : {None, "int8"}, keyword-only
        The layer's own ``activation_quant`` for :func:`numaccel.linear` (``"int8"``: W8A8), used when a
        call does not pass one; only for a format that supports it (``Int8Weight``). This is how a model
        runs W8A8 in some layers and not others (:func:`numaccel.optimize` chooses it per layer).

    Attributes
    ----------
    weight : ndarray or WeightFormat
    bias : ndarray (N,) or None
    format : str
        The weight's registered format name (``"dense"``, ``"csr"``, ``"int8"``, ...).
    activation_quant : None or str

    Raises
    ------
    TypeError
        A weight of no registered format (a ``scipy.sparse`` matrix: convert it with
        ``CSRWeight.from_scipy``), a non-float dense weight or bias, or one wider than float64.
    ValueError
        A dense weight that is not 2-D, a bias of the wrong length, NaN or inf in a dense weight or bias,
        an ``activation_quant`` other than None and ``"int8"`` or one the weight's format does not support.

    Notes
    -----
    The layer computes ``linear(x, weight, bias, **kwargs)``, so its result dtype follows
    :func:`numaccel.linear`'s policy: ``np.result_type`` of ``x``, the weight's results and the bias; a
    float64 bias gives float64 outputs.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> layer = na.nn.Linear(np.eye(2, dtype=np.float32), bias=np.ones(2, np.float32))
    >>> layer(np.array([1.0, 2.0], np.float32))
    array([2., 3.], dtype=float32)
    >>> layer.format, na.nn.Linear(na.prune(np.eye(2, dtype=np.float32), 0.5)).format
    ('dense', 'csr')
    """

    def __init__(self, weight, bias=None, *, activation_quant=None):
        weight = plain_array(weight, "weight")
        if isinstance(weight, np.ndarray):
            dtype = _float_dtype(weight.dtype, "weight")
            if weight.ndim != 2:
                raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
            if dtype != weight.dtype or not weight.flags.c_contiguous:
                weight = np.ascontiguousarray(weight, dtype=dtype)  # the layout the kernels and save() use
            check_finite(weight, "weight")
        elif is_scipy_sparse(weight):
            raise TypeError(
                f"weight is a scipy.sparse {type(weight).__name__}; convert it once with "
                f"numaccel.CSRWeight.from_scipy(weight)"
            )
        else:
            formats.spec_for(weight, "weight")
        if activation_quant is not None:
            if not isinstance(activation_quant, str) or activation_quant != "int8":
                raise ValueError(f"activation_quant must be None or 'int8', got {activation_quant!r}")
            spec = formats.spec_for(weight, "weight")
            if activation_quant not in spec.quant:
                raise ValueError(f"activation_quant={activation_quant!r} is not supported for a {spec.name} "
                                 f"weight; use None (or an int8 weight, numaccel.quantize)")
        self.weight = weight
        self.bias = None if bias is None else _as_bias(bias, int(weight.shape[0]))
        self.activation_quant = activation_quant

    @property
    def in_features(self) -> int:
        """``K``, the number of input features."""
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        """``N``, the number of output features."""
        return int(self.weight.shape[0])

    @property
    def format(self) -> str:
        """The weight's registered format name (``"dense"`` for an ndarray)."""
        return formats.name_of(self.weight)

    @property
    def nbytes(self) -> int:
        """Bytes held by the weight (as stored) and the bias."""
        return formats.nbytes(self.weight) + (0 if self.bias is None else int(self.bias.nbytes))

    @property
    def num_params(self) -> int:
        """Parameters of the layer as a dense layer would count them: ``N * K (+ N)``."""
        n, k = self.weight.shape
        return int(n) * int(k) + (0 if self.bias is None else int(n))

    def dense_weight(self) -> np.ndarray:
        """Return the weight as a dense ``(N, K)`` array: a dense weight itself (do not modify it), else a new one."""
        return formats.to_dense(self.weight)

    def __call__(self, x, **kwargs):
        """``linear(x, weight, bias, **kwargs)`` (e.g. ``out=``, ``device=``, ``activation_quant=``).

        The layer's own ``activation_quant`` applies when ``kwargs`` has none.
        """
        if self.activation_quant is not None and "activation_quant" not in kwargs:
            kwargs["activation_quant"] = self.activation_quant
        return linear(x, self.weight, self.bias, **kwargs)

    def __repr__(self) -> str:
        """``Linear(in_features, out_features, format=...)`` (and ``activation_quant=`` when set)."""
        aq = "" if self.activation_quant is None else f", activation_quant={self.activation_quant!r}"
        return f"Linear({self.in_features}, {self.out_features}, format={self.format!r}{aq})"


_erf_ufunc = None


def _erf(x: np.ndarray) -> np.ndarray:
    """Compute the error function, elementwise (SciPy's when installed, else the standard library's)."""
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
        """``max(x, 0)`` in ``x``'s dtype (keyword arguments are ignored)."""
        x = as_float_array(x, "x", ndims=None)
        return np.maximum(x, 0, dtype=x.dtype)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Return the derivative at ``x`` (0 at ``x == 0``, as PyTorch)."""
        return (x > 0).astype(x.dtype)

    def __repr__(self) -> str:
        """``ReLU()``."""
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
        """GELU of ``x`` in ``x``'s dtype (keyword arguments are ignored)."""
        x = as_float_array(x, "x", ndims=None)
        if self.approximate == "tanh":
            return (0.5 * x * (1.0 + np.tanh(self._tanh_inner(x)))).astype(x.dtype, copy=False)
        return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Return the derivative at ``x``."""
        if self.approximate == "tanh":
            t = np.tanh(self._tanh_inner(x))
            dt = (1.0 - t * t) * self._C * (1.0 + 3 * 0.044715 * x * x)
            return (0.5 * (1.0 + t) + 0.5 * x * dt).astype(x.dtype, copy=False)
        cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return (cdf + x * pdf).astype(x.dtype, copy=False)

    def __repr__(self) -> str:
        """``GELU(approximate=...)``."""
        return f"GELU(approximate={self.approximate!r})"


_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


def _activation(name):
    """Return the activation layer for ``name`` (``"relu"``, ``"gelu"``, ``"gelu_tanh"``), or a given layer."""
    if isinstance(name, (ReLU, GELU)):
        return name
    if name == "gelu_tanh":
        return GELU(approximate="tanh")
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be 'relu', 'gelu' or 'gelu_tanh', got {name!r}")
    return _ACTIVATIONS[name]()


def _activation_name(layer) -> str:
    """``"relu"``, ``"gelu"`` or ``"gelu_tanh"``: the ``activation=`` spelling of a ReLU or GELU layer."""
    if isinstance(layer, ReLU):
        return "relu"
    return "gelu" if layer.approximate == "none" else "gelu_tanh"
