"""``save`` and ``load``: models in safetensors files (or ``.npz`` without pickle), every format exactly.

A file holds plain arrays and a JSON description of the layers in its metadata; nothing in it is ever
executed. Loading checks the metadata and rebuilds every weight through its format's constructor, so a
truncated, corrupted or hand-edited file gives a ``ValueError`` (or ``TypeError``) naming what is wrong.

Layout (format ``numaccel.model``, version 1): metadata keys ``format``, ``version``, ``model`` (class
name) and ``layers`` (JSON list, one entry per layer: ``{"type": "linear", "format": "dense" | "csr" |
"int8", "shape": [N, K], "bias": bool, "group_size": int | null}``, ``{"type": "relu"}``,
``{"type": "gelu", "approximate": "none" | "tanh"}``); tensors ``layers.<i>.<field>`` with the fields
``weight`` (dense), ``indptr``/``indices``/``data`` (CSR), ``qweight``/``scales``/``zero_points`` (int8) and
``bias``.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .nn import GELU, MLP, Linear, ReLU, Sequential, as_model
from .sparse import CSRWeight

__all__ = ["load", "save"]

FORMAT = "numaccel.model"
VERSION = 1
_NPZ_META = "__metadata__"
_MODELS = {"MLP": MLP, "Sequential": Sequential}
_FORMATS = ("dense", "csr", "int8")


def _layer_record(i: int, layer) -> tuple[dict, dict]:
    """The metadata entry and the tensors of one layer."""
    if isinstance(layer, ReLU):
        return {"type": "relu"}, {}
    if isinstance(layer, GELU):
        return {"type": "gelu", "approximate": layer.approximate}, {}
    if not isinstance(layer, Linear):
        raise TypeError(f"layer {i} is a {type(layer).__name__}; save supports Linear, ReLU and GELU layers")
    w = layer.weight
    fmt = layer.format
    spec = {"type": "linear", "format": fmt, "shape": [int(s) for s in w.shape],
            "bias": layer.bias is not None}
    if fmt == "dense":
        arrays = {"weight": w}
    elif fmt == "csr":
        arrays = {"indptr": w.indptr, "indices": w.indices, "data": w.data}
    elif fmt == "int8":
        arrays = {"qweight": w.qweight, "scales": w.scales}
        if w.zero_points is not None:
            arrays["zero_points"] = w.zero_points
        spec["group_size"] = w.group_size
    else:
        raise TypeError(
            f"layer {i} stores its weight as {type(w).__name__}; save supports dense, CSRWeight and "
            f"Int8Weight weights (gather a sharded weight into one of them first)"
        )
    if layer.bias is not None:
        arrays["bias"] = layer.bias
    return spec, {f"layers.{i}.{k}": np.ascontiguousarray(v) for k, v in arrays.items()}


def save(path, model) -> None:
    """Write ``model`` to ``path``: safetensors, or NumPy ``.npz`` (no pickle) when ``path`` ends in ``.npz``.

    Parameters
    ----------
    path : str or os.PathLike
    model : Sequential or MLP
        Linear layers with dense, CSR or int8 weights, and ReLU/GELU activations.

    Raises
    ------
    TypeError
        A layer or weight format that cannot be saved.
    ImportError
        A safetensors path without the ``safetensors`` package (``pip install 'numaccel[io]'``).

    See Also
    --------
    load

    Notes
    -----
    Arrays are stored exactly as held (float32 values, int32 CSR indices, int8 codes), so
    ``load(path)`` gives a model with bit-identical weights and outputs.

    Examples
    --------
    >>> import os, tempfile, numpy as np, numaccel as na
    >>> net = na.compress(na.nn.MLP.init([8, 16, 4], seed=0), sparsity=0.5)
    >>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
    >>> na.save(path, net)
    >>> x = np.ones(8, np.float32)
    >>> bool(np.array_equal(na.load(path)(x), net(x)))
    True
    """
    model = as_model(model)
    specs, tensors = [], {}
    for i, layer in enumerate(model.layers):
        spec, arrays = _layer_record(i, layer)
        specs.append(spec)
        tensors.update(arrays)
    metadata = {"format": FORMAT, "version": str(VERSION), "model": type(model).__name__,
                "layers": json.dumps(specs)}
    path = os.fspath(path)
    if path.endswith(".npz"):
        blob = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **tensors, **{_NPZ_META: blob})
        return
    safetensors_numpy = _safetensors()
    safetensors_numpy.save_file(tensors, path, metadata=metadata)


def _safetensors():
    try:
        import safetensors.numpy as safetensors_numpy
    except ImportError as exc:  # pragma: no cover - an optional extra
        raise ImportError(
            "saving or loading .safetensors files needs the safetensors package: pip install 'numaccel[io]' "
            "(or use a path ending in .npz)"
        ) from exc
    return safetensors_numpy


def _read(path: str) -> tuple[dict, dict]:
    """(metadata, tensors) of a file, with any failure to parse it turned into a ValueError."""
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                tensors = {k: f[k] for k in f.files}
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(
                f"{path} is not a readable .npz file ({exc}); it may be truncated or corrupted"
            ) from exc
        blob = tensors.pop(_NPZ_META, None)
        if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError(
                f"{path} has no numaccel metadata ('{_NPZ_META}'); it was not written by numaccel.save"
            )
        try:
            metadata = json.loads(blob.tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: the metadata is not valid JSON ({exc})") from exc
        if not isinstance(metadata, dict):
            raise ValueError(f"{path}: the metadata must be a JSON object, got {type(metadata).__name__}")
        return metadata, tensors
    safetensors_numpy = _safetensors()
    from safetensors import safe_open

    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = safetensors_numpy.load_file(path)
    except Exception as exc:  # noqa: BLE001 - safetensors reports any malformed file with its own error types
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); it may be "
            f"truncated or corrupted"
        ) from exc
    return metadata, tensors


def _spec_int(value, what: str, path: str, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{path}: {what} must be a non-negative integer, got {value!r}")
    return value


def _build_layer(path: str, i: int, spec, tensors: dict):
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"{path}: layers[{i}] must be an object with a 'type', got {spec!r}")
    kind = spec["type"]
    if kind == "relu":
        return ReLU()
    if kind == "gelu":
        approximate = spec.get("approximate", "none")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"{path}: layers[{i}].approximate must be 'none' or 'tanh', got {approximate!r}")
        return GELU(approximate=approximate)
    if kind != "linear":
        raise ValueError(
            f"{path}: layers[{i}] has unknown type {kind!r}; expected 'linear', 'relu' or 'gelu'"
        )
    fmt = spec.get("format")
    if fmt not in _FORMATS:
        raise ValueError(f"{path}: layers[{i}].format must be one of {list(_FORMATS)}, got {fmt!r}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise ValueError(f"{path}: layers[{i}].shape must be a list [N, K], got {shape!r}")
    n, k = (_spec_int(s, f"layers[{i}].shape", path) for s in shape)

    def take(field, required=True):
        key = f"layers.{i}.{field}"
        if key not in tensors:
            if required:
                raise ValueError(f"{path}: tensor {key!r} is missing (layer {i} is {fmt} and needs it)")
            return None
        return tensors.pop(key)

    if fmt == "dense":
        weight = take("weight")
    elif fmt == "csr":
        weight = CSRWeight(take("indptr"), take("indices"), take("data"), (n, k))
    else:
        from .quant import Int8Weight

        group_size = _spec_int(spec.get("group_size"), f"layers[{i}].group_size", path, allow_none=True)
        weight = Int8Weight(take("qweight"), take("scales"), take("zero_points", required=False),
                            group_size=group_size)
    if tuple(weight.shape) != (n, k):
        raise ValueError(
            f"{path}: layer {i}'s weight has shape {tuple(weight.shape)}, but the metadata says {(n, k)}"
        )
    bias = take("bias") if spec.get("bias", False) else None
    return Linear(weight, bias)


def load(path) -> Sequential:
    """Read a model written by :func:`save`, validating every array as the format's constructor does.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file, or a ``.npz`` file (read with ``allow_pickle=False``).

    Returns
    -------
    Sequential or MLP

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A truncated or corrupted file, missing or unknown metadata, a newer format version, missing or
        extra tensors, or arrays that break their format's rules (the message names the layer).
    TypeError
        Arrays of the wrong dtype for their format.

    See Also
    --------
    save

    Examples
    --------
    >>> import os, tempfile, numaccel as na
    >>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
    >>> na.save(path, na.nn.MLP.init([4, 3], seed=0))
    >>> na.load(path).sizes
    [4, 3]
    """
    path = os.fspath(path)
    metadata, tensors = _read(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path}: metadata 'format' must be {FORMAT!r}, got {metadata.get('format')!r}; "
            f"the file was not written by numaccel.save"
        )
    version = metadata.get("version")
    if version != str(VERSION):
        raise ValueError(
            f"{path}: format version {version!r} is not supported (this numaccel reads version {VERSION})"
        )
    model_cls = _MODELS.get(metadata.get("model"))
    if model_cls is None:
        raise ValueError(
            f"{path}: metadata 'model' must be one of {sorted(_MODELS)}, got {metadata.get('model')!r}"
        )
    try:
        specs = json.loads(metadata.get("layers", ""))
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: metadata 'layers' is not valid JSON ({exc})") from exc
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"{path}: metadata 'layers' must be a non-empty JSON list, got {specs!r}")
    layers = []
    for i, spec in enumerate(specs):
        try:
            layers.append(_build_layer(path, i, spec, tensors))
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            if not msg.startswith(path):
                msg = f"{path}: layer {i}: {msg}"
            raise type(exc)(msg) from exc
    if tensors:
        raise ValueError(
            f"{path}: unexpected tensors {sorted(tensors)}; the metadata describes no such fields"
        )
    try:
        return model_cls(layers)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: {exc}") from exc
