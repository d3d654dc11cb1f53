"""``save`` and ``load``: models in safetensors files (or ``.npz`` without pickle), every format exactly.

A file holds plain arrays and a JSON description of the layers in its metadata; nothing in it is ever
executed. Loading checks the file's layout and the digests in its metadata, then rebuilds every weight
through its registered format (:func:`numaccel.formats.from_arrays`, which validates completely), so a
truncated, corrupted or hand-edited file gives a ``ValueError`` (or ``TypeError``) naming the file and what
is wrong. Nothing here knows a particular format: any format registered with
:func:`numaccel.formats.register` saves and loads, through its ``to_arrays`` / ``from_arrays``.

Layout (format ``numaccel.model``, version 3). Metadata, all strings:

* ``format``, ``version``, ``model`` (``"MLP"`` or ``"Sequential"``);
* ``layers``: JSON list, one entry per layer: ``{"type": "linear", "format": "<registered name>",
  "shape": [N, K], "bias": bool, "params": {...}}`` (``params``: the JSON object the format's
  ``to_arrays`` gives; and ``"activation_quant": "int8"`` for a layer that runs W8A8),
  ``{"type": "relu"}``, ``{"type": "gelu", "approximate": "none" | "tanh"}``;
* ``layers_sha256``: SHA-256 (hex) of the ``layers`` string, UTF-8 encoded;
* ``tensors``: JSON object, for every tensor ``{"dtype": "float32", "shape": [N, K], "sha256": "<hex>"}``,
  the digest taken over the tensor's raw bytes (little-endian, C order).

Tensors are named ``layers.<i>.<array>`` for every array the weight's format gives (``weight`` for a
dense weight, ``indptr``/``indices``/``data`` for CSR, ``qweight``/``scales``/``zero_points`` for int8),
and ``layers.<i>.bias``. Older files still load exactly as before: version 2 (formats ``"dense"``,
``"csr"`` and ``"int8"`` only, an int8 layer's ``group_size`` at the top of its entry, no ``params``) and
version 1 (as version 2, written before the digests existed: no ``layers_sha256`` or ``tensors``; checked
by the formats' rules only).

Reading is strict. A safetensors file is exactly an 8-byte little-endian header length, that many bytes of
JSON header, and the tensors' bytes tiling the rest of the file: no gap, no overlap, no byte after the
last tensor, the header padded with spaces only. An ``.npz`` file holds only ``.npy`` members of plain
numeric dtypes, stored uncompressed as ``np.savez`` writes them (so a small file cannot inflate into a
large allocation; zip CRCs checked), and nothing before its first member or after its end record; the zip
bookkeeping that ``zipfile`` does not use (timestamps, attributes, the local copies of sizes) is not
checked, as no value depends on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile

import numpy as np

from . import formats
from .nn import GELU, MLP, Linear, ReLU, Sequential
from .nn.containers import _as_model

__all__ = ["load", "save"]

FORMAT = "numaccel.model"
VERSION = 3
_READABLE_VERSIONS = ("1", "2", "3")  # version 1 has no digests; versions 1 and 2 know three formats
_NPZ_META = "__metadata__"
_MODELS = {"MLP": MLP, "Sequential": Sequential}
_OLD_FORMATS = ("dense", "csr", "int8")  # the formats of version 1 and 2 files
_INT_MAX = 2**63 - 1  # integers in a header or in the layer metadata must fit int64

# safetensors dtype codes and their little-endian NumPy dtypes: the numeric types a model can hold.
_ST_DTYPES = {
    "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2", "U32": "<u4", "I32": "<i4",
    "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8",
}

_ARRAY_NAME = re.compile(r"[A-Za-z0-9_]+")
_SAVABLE = {np.dtype(code).newbyteorder("=") for code in _ST_DTYPES.values()}


class _Malformed(ValueError):
    """A file whose bytes do not follow its container's layout (the message says where)."""


def _sha256(a: np.ndarray) -> str:
    """SHA-256 (hex) of an array's raw bytes, little-endian and in C order."""
    raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return hashlib.sha256(raw.reshape(-1).view(np.uint8)).hexdigest()


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _check_params(params, where: str) -> None:
    """Format parameters must be JSON (finite numbers, string keys) so that the file can hold them exactly."""
    if not isinstance(params, dict):
        raise TypeError(f"{where}: params must be a dict, got {type(params).__name__}")
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: params must be JSON values (str keys; int, finite float, str, bool, None, "
                        f"lists and dicts of them), got {params!r} ({exc})") from None


def _layer_record(i: int, layer) -> tuple[dict, dict]:
    """Return the metadata entry and the tensors of one layer."""
    if isinstance(layer, ReLU):
        return {"type": "relu"}, {}
    if isinstance(layer, GELU):
        return {"type": "gelu", "approximate": layer.approximate}, {}
    if not isinstance(layer, Linear):
        raise TypeError(f"layer {i} is a {type(layer).__name__}; save supports Linear, ReLU and GELU layers")
    w = layer.weight
    try:
        name, arrays, params = formats.to_arrays(w)
    except (TypeError, ValueError) as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"layer {i} ({type(w).__name__} weight) cannot be saved: {exc}") from exc
    where = f"layer {i} (format {name!r})"
    _check_params(params, where)
    for key, a in arrays.items():
        if not isinstance(key, str) or not _ARRAY_NAME.fullmatch(key) or key == "bias":
            raise TypeError(f"{where}: array names must be words of letters, digits and '_' other than "
                            f"'bias', got {key!r}")
        if not isinstance(a, np.ndarray) or a.dtype.newbyteorder("=") not in _SAVABLE:
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{where}: array {key!r} must be a numpy.ndarray of a plain numeric dtype "
                            f"(int8..int64, uint8..uint64, float16/32/64), got {got}")
    spec = {"type": "linear", "format": name, "shape": [int(s) for s in w.shape],
            "bias": layer.bias is not None, "params": params}
    if layer.activation_quant is not None:
        spec["activation_quant"] = layer.activation_quant
    if layer.bias is not None:
        arrays["bias"] = layer.bias
    return spec, {f"layers.{i}.{k}": np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
                  for k, v in arrays.items()}


def save(path, model) -> None:
    """Write ``model`` to ``path``: safetensors, or NumPy ``.npz`` (no pickle) when ``path`` ends in ``.npz``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; an existing file is replaced.
    model : Sequential or MLP
        Linear layers with weights of any registered format whose ``to_arrays`` gives plain numeric
        arrays (dense, CSR, int8, formats of your own), and ReLU/GELU activations.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        A layer or weight that cannot be saved (a format whose ``to_arrays`` refuses, e.g. a sharded
        weight, or gives arrays or params a file cannot hold), or ``model`` is not a model.
    ImportError
        A safetensors path without the ``safetensors`` package (``pip install 'numaccel[io]'``).
    OSError
        ``path`` cannot be written.

    See Also
    --------
    load

    Notes
    -----
    Each weight is stored as :func:`numaccel.formats.to_arrays` gives it (format name, arrays exactly as
    held, JSON parameters), so ``load(path)`` gives a model with bit-identical weights and outputs. The
    metadata (format ``numaccel.model``, version 3) describes the layers and records, for every tensor,
    its dtype, shape and the SHA-256 of its raw bytes, and the SHA-256 of the layer description, which
    :func:`load` checks: a changed value is reported, never loaded.

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
    model = _as_model(model)
    specs, tensors = [], {}
    for i, layer in enumerate(model.layers):
        spec, arrays = _layer_record(i, layer)
        specs.append(spec)
        tensors.update(arrays)
    layers = json.dumps(specs)
    records = {name: {"dtype": a.dtype.name, "shape": [int(s) for s in a.shape], "sha256": _sha256(a)}
               for name, a in tensors.items()}
    kind = "MLP" if isinstance(model, MLP) else "Sequential"
    metadata = {"format": FORMAT, "version": str(VERSION), "model": kind,
                "layers": layers, "layers_sha256": _text_sha256(layers), "tensors": json.dumps(records)}
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
            "saving .safetensors files needs the safetensors package: pip install 'numaccel[io]' "
            "(or use a path ending in .npz)"
        ) from exc
    return safetensors_numpy


# --------------------------------------------------------------------------------------------------
# reading: the containers

def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT_MAX


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Malformed(f"the JSON header names {key!r} twice")
        out[key] = value
    return out


def _parse_safetensors(blob: bytes) -> tuple[dict, dict]:
    """(metadata, tensors) of a safetensors file's bytes; ``_Malformed`` for anything off the layout."""
    if len(blob) < 8:
        raise _Malformed(f"{len(blob)} bytes, fewer than the 8-byte header length that starts the format")
    n = int.from_bytes(blob[:8], "little")
    if n > len(blob) - 8:
        raise _Malformed(f"the header length says {n} bytes, but only {len(blob) - 8} bytes follow it")
    view = memoryview(blob)
    try:
        text = bytes(view[8:8 + n]).decode("utf-8")
        header, end = json.JSONDecoder(object_pairs_hook=_unique_keys).raw_decode(text)
    except _Malformed:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _Malformed(f"the header is not valid UTF-8 JSON ({type(exc).__name__}: {exc})") from None
    if text[end:].strip(" "):  # the format pads the header with spaces (0x20) only
        raise _Malformed(f"the header holds {text[end:][:20]!r} after its JSON object, where only space "
                         f"padding may follow")
    if not isinstance(header, dict):
        raise _Malformed(f"the header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise _Malformed(f"the header's __metadata__ must be a JSON object, got {type(metadata).__name__}")
    data = view[8 + n:]
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _Malformed(f"tensor {name!r}: the header entry must hold exactly dtype, shape and "
                             f"data_offsets, got {info!r}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _ST_DTYPES:
            raise _Malformed(f"tensor {name!r}: dtype must be one of {sorted(_ST_DTYPES)}, got {code!r}")
        if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
            raise _Malformed(f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or offsets[0] > offsets[1]):
            raise _Malformed(f"tensor {name!r}: data_offsets must be [start, end] with 0 <= start <= end, "
                             f"got {offsets!r}")
        dtype = np.dtype(_ST_DTYPES[code])
        count = math.prod(shape)
        start, end = offsets
        if end - start != count * dtype.itemsize:
            raise _Malformed(f"tensor {name!r}: {code} of shape {shape} takes {count * dtype.itemsize} bytes, "
                             f"but data_offsets {offsets} span {end - start}")
        spans.append((start, end, name, dtype, shape, count))
    spans.sort(key=lambda s: (s[0], s[1]))
    pos = 0
    for start, end, name, *_ in spans:
        if start != pos:
            raise _Malformed(f"tensor {name!r} starts at data byte {start}, expected {pos}: the tensors must "
                             f"tile the data without gaps or overlaps")
        pos = end
    if len(data) != pos:
        if len(data) < pos:
            raise _Malformed(f"the header describes {pos} bytes of tensor data, but only {len(data)} follow it")
        raise _Malformed(f"{len(data) - pos} bytes follow the {pos} bytes of tensor data the header describes")
    tensors = {}
    for start, _end, name, dtype, shape, count in spans:
        native = dtype.newbyteorder("=")
        if count == 0:
            tensors[name] = np.empty(shape, dtype=native)
        else:
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=start)
            tensors[name] = raw.reshape(shape).astype(native)  # a copy: writable, owns its memory
    return metadata, tensors


def _uint(blob: bytes, start: int, size: int) -> int:
    return int.from_bytes(blob[start:start + size], "little")


def _check_zip_bounds(blob: bytes) -> None:
    """Check that the archive fills the file: a member first, the central directory ending at the end record.

    ``zipfile`` itself tolerates bytes before the archive and after its end record (self-extracting
    archives, comments); a file written by ``np.savez`` has neither, so either means damage.
    """
    end = len(blob) - 22  # the end-of-central-directory record: 22 bytes, and no comment from np.savez
    if end < 0 or not blob.startswith(b"PK\x03\x04") or blob[end:end + 4] != b"PK\x05\x06" or _uint(blob, end + 20, 2):
        raise _Malformed("the file does not begin with a zip member and end with the zip end record (it is "
                         "truncated, or bytes were added)")
    size, offset = _uint(blob, end + 12, 4), _uint(blob, end + 16, 4)
    if offset == 0xFFFFFFFF:  # ZIP64: the sizes are in the ZIP64 end record, found through its locator
        locator = end - 20
        if locator < 0 or blob[locator:locator + 4] != b"PK\x06\x07":
            raise _Malformed("the ZIP64 end-record locator is missing")
        end = _uint(blob, locator + 8, 8)
        if blob[end:end + 4] != b"PK\x06\x06":
            raise _Malformed("the ZIP64 end record is missing")
        size, offset = _uint(blob, end + 40, 8), _uint(blob, end + 48, 8)
    if offset + size != end:
        raise _Malformed(f"the zip central directory spans bytes {offset}..{offset + size}, but the end record "
                         f"is at byte {end} (bytes were added or removed)")


def _parse_npz(blob: bytes) -> dict:
    """Read the arrays of an ``.npz`` file's bytes without pickle; raise for anything malformed."""
    _check_zip_bounds(blob)
    tensors = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in tensors:
                raise _Malformed(f"member {name!r} is not a .npy array with a name of its own")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                # np.savez stores members as they are; inflating one could take far more memory than the file
                raise _Malformed(f"member {name!r} is compressed; numaccel's .npz files store their members "
                                 f"uncompressed (as np.savez writes them)")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise _Malformed(f"member {name!r}: .npy format version {version} is not supported")
                if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
                    raise _Malformed(f"member {name!r}: dtype {dtype} is not a plain numeric type")
                if not all(_is_count(s) for s in shape):
                    raise _Malformed(f"member {name!r}: shape {shape} is not a tuple of non-negative integers")
                count = math.prod(shape)
                nbytes = count * dtype.itemsize
                if nbytes > info.file_size:
                    raise _Malformed(f"member {name!r}: {dtype} of shape {shape} takes {nbytes} bytes, more than "
                                     f"the member's {info.file_size}")
                raw = f.read(nbytes + 1)  # one byte more, to see the end (and have the CRC checked)
            if len(raw) != nbytes:
                raise _Malformed(f"member {name!r}: {dtype} of shape {shape} takes {nbytes} bytes, the member "
                                 f"holds {len(raw)}")
            arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
            tensors[name[:-4]] = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))
    return tensors


def _read(path: str) -> tuple[dict, dict]:
    """(metadata, tensors) of a file, with any failure to parse it turned into a ValueError."""
    npz = path.endswith(".npz")
    kind = ".npz" if npz else "safetensors"
    with open(path, "rb") as f:  # FileNotFoundError, PermissionError, IsADirectoryError pass through
        blob = f.read()
    try:
        if npz:
            tensors = _parse_npz(blob)
        else:
            metadata, tensors = _parse_safetensors(blob)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile and numpy.lib.format report malformed bytes many ways
        why = str(exc) if isinstance(exc, _Malformed) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path} is not a readable {kind} file ({why}); it may be truncated or corrupted") from exc
    if npz:
        blob = tensors.pop(_NPZ_META, None)
        if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError(
                f"{path} has no numaccel metadata ('{_NPZ_META}'); it was not written by numaccel.save"
            )
        try:
            metadata = json.loads(blob.tobytes().decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ValueError(f"{path}: the metadata is not valid JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(metadata, dict):
            raise ValueError(f"{path}: the metadata must be a JSON object, got {type(metadata).__name__}")
    bad = [k for k, v in metadata.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{path}: metadata values must be strings; {bad[0]!r} holds "
                         f"{type(metadata[bad[0]]).__name__}")
    return metadata, tensors


# --------------------------------------------------------------------------------------------------
# reading: digests and layers

def _verify(path: str, metadata: dict, tensors: dict) -> None:
    """Check the layer description and every tensor against the digests recorded in the metadata."""
    version = metadata["version"]
    for key in ("layers", "layers_sha256", "tensors"):
        if key not in metadata:
            raise ValueError(f"{path}: metadata {key!r} is missing; a version {version} file records it")
    got = _text_sha256(metadata["layers"])
    if got != metadata["layers_sha256"]:
        raise ValueError(
            f"{path}: metadata 'layers' fails its SHA-256 check (it hashes to {got[:16]}..., the metadata "
            f"records {metadata['layers_sha256'][:16]!r}...); the file is corrupted"
        )
    try:
        records = json.loads(metadata["tensors"])
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: metadata 'tensors' is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(records, dict):
        raise ValueError(f"{path}: metadata 'tensors' must be a JSON object, got {type(records).__name__}")
    missing = sorted(set(records) - set(tensors))
    if missing:
        raise ValueError(f"{path}: tensor {missing[0]!r} is missing (the metadata records {len(records)} "
                         f"tensors, the file holds {len(tensors)}); the file is corrupted")
    extra = sorted(set(tensors) - set(records))
    if extra:
        raise ValueError(f"{path}: unexpected tensors {extra}; the metadata records no digest for them")
    for name in sorted(records):
        record, a = records[name], tensors[name]
        if not isinstance(record, dict):
            raise ValueError(f"{path}: metadata 'tensors' entry {name!r} must be an object, got {record!r}")
        have = [a.dtype.name, list(a.shape)]
        want = [record.get("dtype"), record.get("shape")]
        if have != want:
            raise ValueError(f"{path}: tensor {name!r} is {have[0]} of shape {have[1]}, but the metadata "
                             f"records {want[0]!r} of shape {want[1]!r}; the file is corrupted")
        got = _sha256(a)
        if got != record.get("sha256"):
            raise ValueError(
                f"{path}: tensor {name!r} fails its SHA-256 check (its bytes hash to {got[:16]}..., the "
                f"metadata records {str(record.get('sha256'))[:16]!r}...); the file is corrupted"
            )


def _spec_int(value, what: str, path: str, *, allow_none=False):
    if value is None and allow_none:
        return None
    if not _is_count(value):
        raise ValueError(f"{path}: {what} must be a non-negative integer below 2**63, got {value!r}")
    return value


# Versions 1 and 2: the three formats they know, the tensors each layer has (required, optional), and the
# params their from_arrays takes, built from the layer entry (an int8 entry holds its group_size itself).
_OLD_LAYOUT = {
    "dense": (("weight",), ()),
    "csr": (("indptr", "indices", "data"), ()),
    "int8": (("qweight", "scales"), ("zero_points",)),
}


def _old_params(path: str, i: int, fmt: str, spec: dict, n: int, k: int) -> dict:
    if fmt == "csr":
        return {"shape": [n, k]}
    if fmt == "int8":
        return {"group_size": _spec_int(spec.get("group_size"), f"layers[{i}].group_size", path, allow_none=True)}
    return {}


def _check_json_ints(value, what: str, path: str) -> None:
    """Integers anywhere in a layer's params must fit int64, as everywhere else in a file."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT_MAX - 1 <= value <= _INT_MAX:
            raise ValueError(f"{path}: {what} must be an integer of magnitude below 2**63, got {value!r}")
    elif isinstance(value, list):
        for j, v in enumerate(value):
            _check_json_ints(v, f"{what}[{j}]", path)
    elif isinstance(value, dict):
        for key, v in value.items():
            _check_json_ints(v, f"{what}.{key}", path)


def _build_layer(path: str, version: str, i: int, spec, tensors: dict):
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
    old = version in ("1", "2")
    if old and (not isinstance(fmt, str) or fmt not in _OLD_FORMATS):
        raise ValueError(f"{path}: layers[{i}].format must be one of {list(_OLD_FORMATS)}, got {fmt!r}")
    if not old:
        if not isinstance(fmt, str):
            raise ValueError(f"{path}: layers[{i}].format must be a string, got {fmt!r}")
        formats.lookup(fmt)  # an unknown name: a ValueError naming the registered ones
    shape = spec.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise ValueError(f"{path}: layers[{i}].shape must be a list [N, K], got {shape!r}")
    n, k = (_spec_int(s, f"layers[{i}].shape", path) for s in shape)
    has_bias = spec.get("bias", False)
    if not isinstance(has_bias, bool):
        raise ValueError(f"{path}: layers[{i}].bias must be true or false, got {has_bias!r}")
    prefix = f"layers.{i}."
    if old:
        if "params" in spec:  # a version 3 entry under an older version number: refused, not guessed at
            raise ValueError(f"{path}: layers[{i}] has 'params', which version {version} files do not have")
        required, optional = _OLD_LAYOUT[fmt]
        arrays = {}
        for field in required + optional:
            key = prefix + field
            if key in tensors:
                arrays[field] = tensors.pop(key)
            elif field in required:
                raise ValueError(f"{path}: tensor {key!r} is missing (layer {i} is {fmt} and needs it)")
        params = _old_params(path, i, fmt, spec, n, k)
    else:
        params = spec.get("params")
        if not isinstance(params, dict):
            raise ValueError(f"{path}: layers[{i}].params must be a JSON object, got {params!r}")
        _check_json_ints(params, f"layers[{i}].params", path)
        names = [key[len(prefix):] for key in tensors if key.startswith(prefix)]
        arrays = {name: tensors.pop(prefix + name) for name in names
                  if name != "bias" and _ARRAY_NAME.fullmatch(name)}
    try:
        weight = formats.from_arrays(fmt, arrays, params)
    except (TypeError, ValueError) as exc:  # the same kind of error, naming the file and the layer
        kind = ValueError if isinstance(exc, ValueError) else TypeError
        raise kind(f"{path}: layer {i} (format {fmt!r}): {exc}") from None
    if tuple(weight.shape) != (n, k):
        raise ValueError(
            f"{path}: layer {i}'s weight has shape {tuple(weight.shape)}, but the metadata says {(n, k)}"
        )
    bias = None
    if has_bias:
        key = prefix + "bias"
        if key not in tensors:
            raise ValueError(f"{path}: tensor {key!r} is missing (layer {i} has a bias)")
        bias = tensors.pop(key)
    aq = spec.get("activation_quant")
    if aq is not None and (old or aq != "int8" or "int8" not in formats.spec_for(weight).quant):
        raise ValueError(f"{path}: layers[{i}].activation_quant must be absent or 'int8' on a format that "
                         f"supports it, got {aq!r} on a {fmt} weight")
    return Linear(weight, bias, activation_quant=aq)


def _with_path(path: str, exc: Exception, prefix: str) -> Exception:
    """``exc`` as a plain ValueError or TypeError whose message starts with ``path``."""
    msg = str(exc)
    if not msg.startswith(path):
        msg = f"{path}: {prefix}{msg}"
    return (ValueError if isinstance(exc, ValueError) else TypeError)(msg)


def load(path) -> Sequential:
    """Read a model written by :func:`save`, checking its digests and validating every array.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file, or a ``.npz`` file (read without pickle).

    Returns
    -------
    Sequential or MLP
        The class named in the file, with bit-identical weights and biases.

    Raises
    ------
    FileNotFoundError
        No file at ``path`` (other ``OSError`` when it cannot be opened).
    ValueError
        The file is not a well-formed safetensors or ``.npz`` file (empty, truncated, trailing bytes,
        a malformed header, offsets or shapes that do not match the data); its metadata is missing,
        unknown or of a newer version; a layer names a format that is not registered; a tensor or the
        layer description fails its SHA-256 check; tensors are missing or extra; or arrays break their
        format's rules. The message names the file and, where there is one, the tensor or layer.
    TypeError
        Arrays of the wrong dtype for their format.

    See Also
    --------
    save

    Notes
    -----
    Version 3 files (written by this :func:`save`) and version 2 files record the SHA-256 of every
    tensor's raw bytes, its dtype and shape, and the SHA-256 of the layer description; all are compared
    before any weight is built, so a changed byte gives a ``ValueError``, never a model with altered
    numbers. In an ``.npz`` file, zip bookkeeping that no value depends on (timestamps, attributes) is not
    checked: a change there loads the model that was saved. Version 1 files carry no digests and are
    checked by the layout and the formats' rules only.

    Weights are rebuilt by their registered format (:func:`numaccel.formats.from_arrays`), which
    validates exactly as the format's public constructor does for arrays passed in by hand; then
    :class:`~numaccel.nn.Linear` checks the layer. A format name the file gives that is not registered is
    a ``ValueError`` listing the registered ones (register a format of your own before loading files
    that use it). Nothing in a file is ever executed or unpickled.

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
    if version not in _READABLE_VERSIONS:
        raise ValueError(
            f"{path}: format version {version!r} is not supported (this numaccel reads versions "
            f"{', '.join(_READABLE_VERSIONS)})"
        )
    model_cls = _MODELS.get(metadata.get("model"))
    if model_cls is None:
        raise ValueError(
            f"{path}: metadata 'model' must be one of {sorted(_MODELS)}, got {metadata.get('model')!r}"
        )
    if version != "1":
        _verify(path, metadata, tensors)
    try:
        specs = json.loads(metadata.get("layers", ""))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: metadata 'layers' is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"{path}: metadata 'layers' must be a non-empty JSON list, got {specs!r}")
    layers = []
    for i, spec in enumerate(specs):
        try:
            layers.append(_build_layer(path, version, i, spec, tensors))
        except (TypeError, ValueError) as exc:
            raise _with_path(path, exc, f"layer {i}: ") from exc
    if tensors:
        raise ValueError(
            f"{path}: unexpected tensors {sorted(tensors)}; the metadata describes no such fields"
        )
    try:
        return model_cls(layers)
    except (TypeError, ValueError) as exc:
        raise _with_path(path, exc, "") from exc
