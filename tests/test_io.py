"""save/load: exact round trips of every format, and clear errors for truncated, corrupted or edited files."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numaccel as na
from numaccel import nn

pytest.importorskip("safetensors")
from safetensors.numpy import load_file, save_file  # noqa: E402

EXTS = ["safetensors", "npz"]


def _models():
    rng = np.random.default_rng(5)
    W1 = rng.standard_normal((12, 10)).astype(np.float32)
    W2 = rng.standard_normal((3, 12)).astype(np.float32)
    b1 = rng.standard_normal(12).astype(np.float32)
    return {
        "dense-relu": nn.MLP.from_arrays([W1, W2], [b1, None]),
        "dense-f64-gelu": nn.MLP.from_arrays([W1.astype(np.float64), W2], [b1, None], activation="gelu"),
        "csr-gelu-tanh": nn.MLP.from_arrays([na.prune(W1, 0.8), na.prune(W2, 1.0)], [b1, None],
                                            activation="gelu_tanh"),
        "int8": nn.MLP.from_arrays([na.quantize(W1), na.quantize(W2, group_size=5, symmetric=False)],
                                   [b1, None]),
        "mixed-sequential": nn.Sequential([nn.Linear(na.prune(W1, 0.5), b1), nn.ReLU(),
                                           nn.Linear(na.quantize(W2))]),
    }


def _arrays(w):
    if isinstance(w, np.ndarray):
        return [w]
    if isinstance(w, na.CSRWeight):
        return [w.indptr, w.indices, w.data]
    return [w.qweight, w.scales, w.zero_points, w.group_size]


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("name", list(_models()))
def test_round_trip_is_exact(tmp_path, name, ext):
    model = _models()[name]
    path = tmp_path / f"model.{ext}"
    na.save(path, model)
    back = na.load(path)
    assert type(back) is type(model)
    assert [repr(layer) for layer in back.layers] == [repr(layer) for layer in model.layers]
    for a, b in zip(model.linears, back.linears, strict=True):
        assert type(a.weight) is type(b.weight)
        for x, y in zip(_arrays(a.weight), _arrays(b.weight), strict=True):
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y)
            else:
                assert x == y
        assert (a.bias is None and b.bias is None) or np.array_equal(a.bias, b.bias)
    x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float64 if "f64" in name else np.float32)
    assert np.array_equal(back(x), model(x))


def test_metadata_names_format_and_version(tmp_path):
    path = tmp_path / "m.safetensors"
    na.save(path, _models()["csr-gelu-tanh"])
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "numaccel.model" and meta["version"] == "1" and meta["model"] == "MLP"
    first = {"type": "linear", "format": "csr", "shape": [12, 10], "bias": True}
    assert json.loads(meta["layers"])[0] == first


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("keep", [0, 7, 60, 0.5, -1], ids=lambda k: f"{keep_id(k)}")
def test_truncated_files_raise(tmp_path, ext, keep):
    path = tmp_path / f"m.{ext}"
    na.save(path, _models()["mixed-sequential"])
    blob = path.read_bytes()
    n = int(keep * len(blob)) if isinstance(keep, float) else (keep if keep >= 0 else len(blob) + keep)
    path.write_bytes(blob[:n])
    with pytest.raises(ValueError, match="truncated or corrupted|not a readable"):
        na.load(path)


def keep_id(k):
    return {0: "empty", 7: "7-bytes", 60: "60-bytes", 0.5: "half", -1: "last-byte-cut"}[k]


def _edit(tmp_path, model, *, meta=None, tensors=None, drop=(), add=None):
    """Save ``model``, then rewrite the file with edited metadata or tensors (what a hand edit does)."""
    path = tmp_path / "m.safetensors"
    na.save(path, model)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        metadata = dict(f.metadata())
    arrays = load_file(str(path))
    metadata.update(meta or {})
    arrays.update(tensors or {})
    for key in drop:
        del arrays[key]
    arrays.update(add or {})
    save_file(arrays, str(path), metadata=metadata)
    return path


_LAYERS = json.dumps([
    {"type": "linear", "format": "csr", "shape": [12, 10], "bias": True},
    {"type": "relu"},
    {"type": "linear", "format": "int8", "shape": [3, 12], "bias": False, "group_size": None},
])


@pytest.mark.parametrize(
    "edit,exc,match",
    [
        ({"meta": {"format": "other"}}, ValueError, "not written by numaccel"),
        ({"meta": {"version": "2"}}, ValueError, "version '2'"),
        ({"meta": {"model": "Transformer"}}, ValueError, "'model'"),
        ({"meta": {"layers": "[{"}}, ValueError, "not valid JSON"),
        ({"meta": {"layers": "[]"}}, ValueError, "non-empty"),
        ({"meta": {"layers": _LAYERS.replace('"relu"', '"exec"')}}, ValueError, "unknown type 'exec'"),
        ({"meta": {"layers": _LAYERS.replace('"csr"', '"bsr"')}}, ValueError, "format"),
        ({"meta": {"layers": _LAYERS.replace("[12, 10]", "[12, 9]")}}, ValueError, r"in \[0, 9\)"),
        ({"meta": {"layers": _LAYERS.replace("[3, 12]", "[3, -12]")}}, ValueError, "non-negative integer"),
        ({"drop": ["layers.0.data"]}, ValueError, "'layers.0.data' is missing"),
        ({"add": {"layers.9.weight": np.zeros(3, np.float32)}}, ValueError, "unexpected tensors"),
        ({"tensors": {"layers.0.indices": np.full(60, 99, np.int32)}}, ValueError, r"in \[0, 10\)"),
        ({"tensors": {"layers.0.indptr": np.arange(13, dtype=np.int32)}}, ValueError, "indptr"),
        ({"tensors": {"layers.0.data": np.full(60, np.inf, np.float32)}}, ValueError, "finite"),
        ({"tensors": {"layers.0.indices": np.zeros(60, np.float32)}}, TypeError, "integer"),
        ({"tensors": {"layers.2.qweight": np.zeros((3, 12), np.int16)}}, TypeError, "int8"),
        ({"tensors": {"layers.2.scales": -np.ones(3, np.float32)}}, ValueError, "scale"),
        ({"tensors": {"layers.0.bias": np.ones(5, np.float32)}}, ValueError, r"\(12,\)"),
    ],
    ids=["format-name", "version", "model-class", "bad-json", "no-layers", "layer-type", "weight-format",
         "shape-vs-indices", "negative-shape", "missing-tensor", "extra-tensor", "index-range", "indptr",
         "inf-data", "float-indices", "int16-codes", "negative-scale", "bias-length"],
)
def test_hand_edited_files_raise(tmp_path, edit, exc, match):
    model = _models()["mixed-sequential"]
    model = nn.MLP(model.layers)  # same layers, saved as an MLP
    assert model.linears[0].weight.nnz == 60
    path = _edit(tmp_path, model, **edit)
    with pytest.raises(exc, match=match) as info:
        na.load(path)
    assert str(path) in str(info.value)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __metadata__=np.array([{"format": "numaccel.model"}], dtype=object))
    with pytest.raises(ValueError, match="not a readable .npz|pickle"):
        na.load(path)


def test_foreign_files_raise(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(ValueError, match="no numaccel metadata"):
        na.load(path)
    path = tmp_path / "plain.safetensors"
    save_file({"w": np.ones(3, np.float32)}, str(path))
    with pytest.raises(ValueError, match="not written by numaccel"):
        na.load(path)
    with pytest.raises(FileNotFoundError):
        na.load(tmp_path / "missing.safetensors")


def test_unsavable_weights_raise(tmp_path):
    class Opaque:
        shape = (2, 2)

        def _linear(self, x, out, *, activations=None):
            out[...] = 0

    with pytest.raises(TypeError, match="Opaque"):
        na.save(tmp_path / "m.safetensors", nn.MLP.from_arrays([Opaque()]))
    with pytest.raises(TypeError, match="Sequential"):
        na.save(tmp_path / "m.safetensors", {"weight": np.ones((2, 2))})


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_corruption_never_crashes(tmp_path, data):
    ext = data.draw(st.sampled_from(EXTS))
    path = tmp_path / f"m.{ext}"
    model = _models()["mixed-sequential"]
    na.save(path, model)
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(blob))
    try:
        back = na.load(path)
    except (ValueError, TypeError):
        return
    y = back(np.ones(10, np.float32))  # a file that still loads is a valid model
    assert y.shape == (3,)
