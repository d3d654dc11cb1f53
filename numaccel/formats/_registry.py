"""The weight-format protocol and the one registry every layer above the formats goes through.

A *weight format* holds a layer's ``(out_features, in_features)`` weight in some storage (dense, CSR, int8,
...). The data side of a format is the :class:`WeightFormat` protocol: shape, size, conversion to dense, a
row block (for sharding), the arrays it is saved as and how it is rebuilt from them, whether it can be
trained. The execution side is registered with the class (:func:`register`): the function that computes
``out = x @ W.T`` for it on the CPU, optionally one for ``spmm``, a device copy, or a handler that takes the
whole ``linear`` call (sharded and device-resident weights). A dense weight is a plain
``numpy.ndarray``: the registry knows it as the format ``"dense"``.

Nothing here imports a planner, a kernel or a device runtime.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from .._validate import FLOAT_DTYPES, check_finite, check_row_range, plain_array

__all__ = [
    "WeightFormat", "FormatSpec", "register", "spec_of", "spec_for", "lookup", "registered",
    "name_of", "to_dense", "nbytes", "row_block", "to_arrays", "from_arrays", "is_trainable",
    "untrainable_reason", "density",
]


class WeightFormat(abc.ABC):
    """What a weight format provides; subclass it and :func:`register` the subclass.

    A format is immutable data plus validation: its public constructor validates completely, and every
    method below returns new objects (or read-only arrays). How a format is executed is registered beside
    it (:func:`register`), never part of the class.

    Attributes
    ----------
    trainable : bool
        Class attribute: whether :func:`numaccel.train` can update a weight of this format in place of a
        dense one (the stored pattern is kept). False by default.
    untrainable_hint : str
        Class attribute: the way out named in the ``TypeError`` training raises for this format.

    Examples
    --------
    A diagonal weight, in a few lines:

    >>> import numpy as np, numaccel as na
    >>> class Diagonal(na.formats.WeightFormat):
    ...     def __init__(self, d):
    ...         self.d = np.array(d, dtype=np.float32); self.d.setflags(write=False)
    ...     shape = property(lambda self: (self.d.size, self.d.size))
    ...     nbytes = property(lambda self: self.d.nbytes)
    ...     def to_dense(self): return np.diag(self.d)
    ...     def row_block(self, start, stop): raise TypeError("a diagonal is not split by rows")
    ...     def to_arrays(self): return {"d": self.d}, {}
    ...     @classmethod
    ...     def from_arrays(cls, arrays, params): return cls(arrays["d"])
    >>> _ = na.formats.register(Diagonal, name="diagonal", linear=lambda w, x, out, quant: np.multiply(x, w.d, out=out))
    >>> na.linear(np.ones(3, np.float32), Diagonal([1, 2, 3]))
    array([1., 2., 3.], dtype=float32)
    """

    __slots__ = ()

    trainable: ClassVar[bool] = False
    untrainable_hint: ClassVar[str] = "train or fine-tune a dense or CSR model first, then convert it"

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int]:
        """``(N, K)`` = ``(out_features, in_features)``."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """Bytes of the format's own arrays (not of caches a planner keeps beside it)."""

    @abc.abstractmethod
    def to_dense(self) -> np.ndarray:
        """Return the weight as a new dense ``(N, K)`` array (float32 unless the format stores wider values)."""

    @abc.abstractmethod
    def row_block(self, start: int, stop: int) -> WeightFormat:
        """Rows ``start:stop`` as a new weight of the same format (``0 <= start < stop <= N``)."""

    @abc.abstractmethod
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Return the arrays the format is saved as, and its parameters (JSON values: numbers, strings, lists, ...)."""

    @classmethod
    @abc.abstractmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> WeightFormat:
        """Rebuild (and validate completely) a weight from what :meth:`to_arrays` gave."""

    def result_dtype(self, x_dtype) -> np.dtype:
        """Return the dtype of ``linear(x, self)`` for activations of ``x_dtype`` (float32 or float64): the same."""
        return np.dtype(x_dtype)

    @property
    def density(self) -> float:
        """Fraction of the ``N * K`` entries that are stored (1.0 unless the format prunes)."""
        return 1.0


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """One registered format.

    Attributes
    ----------
    name : str
        The format's name in reports and saved files (``"dense"``, ``"csr"``, ``"int8"``, ...).
    cls : type
        The class whose instances (and subclasses' instances) are of this format.
    linear : callable or None
        ``linear(weight, x, out, quant)`` computes ``out = x @ W.T`` on the CPU for validated, C-contiguous
        ``x`` (B, K) and ``out`` (B, N) of the result dtype; ``quant`` is None or ``"int8"`` (activations
        quantized on the fly). It must raise ``ValueError`` for a ``quant`` it does not support.
    spmm : callable or None
        ``spmm(weight, b, out)``: ``out = W @ b`` for C-contiguous ``b`` (K,) or (K, P); formats without one
        are refused by :func:`numaccel.spmm`.
    to_device : callable or None
        ``to_device(weight)`` returns a device-resident copy (``device="cuda"``).
    call : callable or None
        Takes the whole call instead of ``linear``:
        ``call(x, weight, bias, out=, device=, quant=, client=)`` returns the result (sharded weights,
        device-resident weights). Its arguments are not validated before.
    device : str
        Where the weight's data lives: ``"cpu"`` or ``"cuda"``. For a ``"cuda"`` format, ``spmm`` takes
        ``spmm(weight, B, out)`` unvalidated and returns the result.
    quant : tuple of str
        The ``activation_quant`` values ``linear`` accepts besides None (``("int8",)`` for W8A8).
    """

    name: str
    cls: type
    linear: Callable | None = None
    spmm: Callable | None = None
    to_device: Callable | None = None
    call: Callable | None = None
    device: str = "cpu"
    quant: tuple = ()


_lock = threading.Lock()
_by_name: dict[str, FormatSpec] = {}
_by_class: dict[type, FormatSpec] = {}


def register(cls: type, *, name: str, linear=None, spmm=None, to_device=None, call=None,
             device: str = "cpu", quant=()) -> FormatSpec:
    """Register a weight format: ``linear``, ``nn.Linear``, ``save``/``load``, ``shard`` then accept it.

    Parameters
    ----------
    cls : type
        A :class:`WeightFormat` subclass (``numpy.ndarray`` for ``"dense"``).
    name : str
        Unique name of the format (used in saved files: keep it stable).
    linear, spmm, to_device, call : callable, optional
        The execution side; see :class:`FormatSpec`.
    device : {"cpu", "cuda"}
    quant : tuple of str
        ``activation_quant`` values the format's ``linear`` supports (e.g. ``("int8",)``).

    Returns
    -------
    FormatSpec

    Raises
    ------
    TypeError
        ``cls`` is not a class implementing the protocol, or a given callable is not callable.
    ValueError
        ``name`` is empty or already names another class.

    Notes
    -----
    Registering the same class again replaces its entry (e.g. to attach a device copy later).
    """
    if not isinstance(cls, type):
        raise TypeError(f"cls must be a class, got {type(cls).__name__}")
    if cls is not np.ndarray and not issubclass(cls, WeightFormat):
        raise TypeError(f"cls must subclass numaccel.formats.WeightFormat, got {cls.__qualname__}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    for label, fn in (("linear", linear), ("spmm", spmm), ("to_device", to_device), ("call", call)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{label} must be callable or None, got {type(fn).__name__}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    quant = tuple(quant)
    if not all(isinstance(q, str) for q in quant):
        raise TypeError(f"quant must be a tuple of strings, got {quant!r}")
    spec = FormatSpec(name, cls, linear, spmm, to_device, call, device, quant)
    with _lock:
        held = _by_name.get(name)
        if held is not None and held.cls is not cls:
            raise ValueError(f"format name {name!r} is already registered for {held.cls.__qualname__}")
        old = _by_class.get(cls)
        if old is not None and old.name != name:
            del _by_name[old.name]
        _by_name[name] = spec
        _by_class[cls] = spec
    return spec


def spec_of(weight) -> FormatSpec | None:
    """Return the registered format of ``weight`` (by its class and base classes), or None."""
    spec = _by_class.get(type(weight))
    if spec is not None:
        return spec
    for klass in type(weight).__mro__:
        spec = _by_class.get(klass)
        if spec is not None:
            return spec
    return None


def spec_for(weight, name: str = "weight") -> FormatSpec:
    """:func:`spec_of`, or a ``TypeError`` naming the registered formats."""
    spec = spec_of(weight)
    if spec is None:
        raise TypeError(
            f"{name} must be a numpy.ndarray or a weight of a registered format ({', '.join(registered())}), "
            f"got {type(weight).__name__}; register new formats with numaccel.formats.register"
        )
    return spec


def lookup(name: str) -> FormatSpec:
    """Return the format registered as ``name``; raise ``ValueError`` for an unknown name."""
    spec = _by_name.get(name)
    if spec is None:
        raise ValueError(f"unknown weight format {name!r}; registered: {', '.join(registered())}")
    return spec


def registered() -> list[str]:
    """Names of the registered formats."""
    return sorted(_by_name)


# --------------------------------------------------------------------------------------------------
# the protocol for any weight, dense arrays included
def name_of(weight) -> str:
    """Return the registered name of ``weight``'s format (``"dense"`` for an ndarray)."""
    return spec_for(weight).name


def to_dense(weight) -> np.ndarray:
    """``weight`` as a dense ``(N, K)`` array: the array itself (float32 or float64) or ``to_dense()``."""
    if isinstance(weight, np.ndarray):
        return weight
    spec_for(weight)
    return weight.to_dense()


def nbytes(weight) -> int:
    """Bytes held by ``weight``'s format."""
    if isinstance(weight, np.ndarray):
        return int(weight.nbytes)
    spec_for(weight)
    return int(weight.nbytes)


def density(weight) -> float:
    """Fraction of stored entries (the nonzero fraction for a dense array)."""
    if isinstance(weight, np.ndarray):
        return float(np.count_nonzero(weight)) / weight.size if weight.size else 0.0
    spec_for(weight)
    return float(weight.density)


def row_block(weight, start: int, stop: int):
    """Rows ``start:stop`` of ``weight`` in its own format, as a new, independent object."""
    if isinstance(weight, np.ndarray):
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
        start, stop = check_row_range(start, stop, weight.shape[0])
        return np.array(weight[start:stop], order="C")
    spec_for(weight)
    return weight.row_block(start, stop)


def to_arrays(weight) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """``(format name, arrays, params)`` to save ``weight``; ``from_arrays`` rebuilds it."""
    spec = spec_for(weight)
    if isinstance(weight, np.ndarray):
        return spec.name, {"weight": weight}, {}
    arrays, params = weight.to_arrays()
    return spec.name, dict(arrays), dict(params)


def from_arrays(name: str, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]):
    """Rebuild a weight saved by :func:`to_arrays`, validated by the format's own rules."""
    spec = lookup(name)
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping (use {{}} for none), got {type(params).__name__}")
    if spec.cls is np.ndarray:
        if set(arrays) != {"weight"}:
            raise ValueError(f"a dense weight is saved as one array 'weight', got arrays {sorted(arrays)}")
        if params:
            raise ValueError(f"a dense weight has no parameters, got {sorted(params)}")
        w = plain_array(arrays["weight"], "weight")
        if not isinstance(w, np.ndarray) or w.dtype not in FLOAT_DTYPES:
            raise TypeError(f"a dense weight must be a float32 or float64 ndarray, got "
                            f"{getattr(w, 'dtype', type(w).__name__)}")
        if w.ndim != 2:
            raise ValueError(f"a dense weight must be 2-D (out_features, in_features), got shape {w.shape}")
        check_finite(w, "weight")
        return w
    try:
        return spec.cls.from_arrays(arrays, params)
    except KeyError as exc:  # a format's from_arrays that looks up what it needs without checking first
        raise ValueError(f"a {name} weight needs {exc} among its arrays {sorted(arrays)} and params "
                         f"{sorted(params)}") from None


def is_trainable(weight) -> bool:
    """Whether training can update ``weight`` (dense arrays and formats with ``trainable = True``)."""
    if isinstance(weight, np.ndarray):
        return True
    spec_for(weight)
    return bool(getattr(type(weight), "trainable", False))


def untrainable_reason(weight) -> str:
    """Return the way out for a weight training cannot update (the format's ``untrainable_hint``)."""
    return str(getattr(type(weight), "untrainable_hint", WeightFormat.untrainable_hint))
