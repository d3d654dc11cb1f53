"""Malformed inputs for every public entry point, run in a child interpreter by ``test_crash_fuzz.py``.

``python fuzz_cases.py FAMILY SEED COUNT`` builds ``COUNT`` malformed inputs of one family from ``SEED``,
passes each to its entry point and prints one JSON line per input that did *not* raise ``ValueError`` or
``TypeError`` (it returned, or raised something else), then a last line ``{"done": N}``. Before each
input it prints ``{"case": i, "what": ...}``, so when the interpreter dies (a segfault or abort in
compiled code) the parent can name the input that killed it. Every input here breaks a documented rule,
so returning is as wrong as crashing.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

import numaccel as na


def _say(**kw) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# raw compressed arrays


def _valid_csr(rng):
    n, k = int(rng.integers(1, 9)), int(rng.integers(1, 12))
    counts = rng.integers(0, k + 1, n)
    indices = np.concatenate([np.sort(rng.choice(k, c, replace=False)) for c in counts]).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    data = rng.standard_normal(indices.size).astype(np.float32)
    return indptr, indices, data, n, k


_STRUCT_KINDS = ("indptr_dec", "indptr_past_nnz", "indptr_short", "indptr_long", "indptr_start", "idx_high",
                 "idx_neg", "idx_huge", "len_idx", "len_data", "dtype_idx", "dtype_indptr", "dtype_data",
                 "data_2d", "nan", "inf", "indptr_uint_huge")


def _break_compressed(rng, indptr, indices, data, minor, kinds=_STRUCT_KINDS):
    """One broken copy of valid compressed arrays; ``kind`` names the rule it breaks."""
    indptr, indices, data = indptr.copy(), indices.copy(), data.copy()
    nnz = indices.size
    kind = str(rng.choice(kinds))
    if kind in ("idx_high", "idx_neg", "idx_huge", "nan", "inf") and nnz == 0:
        kind = "indptr_past_nnz"
    if kind == "indptr_dec" and indptr.size < 2:
        kind = "indptr_start"
    p = int(rng.integers(0, max(nnz, 1)))
    if kind == "indptr_dec":
        i = int(rng.integers(1, indptr.size))
        indptr[i] = indptr[i - 1] - int(rng.integers(1, 4))
    elif kind == "indptr_past_nnz":  # the case that corrupted SciPy's heap: an entry past nnz
        i = int(rng.integers(1, indptr.size)) if indptr.size > 1 else 0
        indptr[i] = nnz + int(rng.integers(1, 1000))
        if i == 0:
            indptr[0] = 1
    elif kind == "indptr_short":
        indptr = indptr[:-1]
    elif kind == "indptr_long":
        indptr = np.append(indptr, indptr[-1])
    elif kind == "indptr_start":
        indptr = indptr + int(rng.integers(1, 4))
    elif kind == "idx_high":
        indices[p] = minor + int(rng.integers(0, 100))
    elif kind == "idx_neg":
        indices[p] = -int(rng.integers(1, 100))
    elif kind == "idx_huge":
        indices = indices.astype(np.int64)
        indices[p] = np.int64(2**40)
    elif kind == "len_idx":
        indices = np.append(indices, 0).astype(indices.dtype)
    elif kind == "len_data":
        data = data[:-1] if nnz else np.ones(1, np.float32)
    elif kind == "dtype_idx":
        indices = indices.astype(np.float64)
    elif kind == "dtype_indptr":
        indptr = indptr.astype(np.float32)
    elif kind == "dtype_data":
        data = data.astype(np.int32) if rng.random() < 0.5 else data.astype(np.complex64)
    elif kind == "data_2d":
        data = data.reshape(1, -1)
    elif kind == "nan":
        data[p] = np.nan
    elif kind == "inf":
        data[p] = np.inf if rng.random() < 0.5 else -np.inf
    elif kind == "indptr_uint_huge":
        indptr = indptr.astype(np.uint64)
        indptr[-1] = np.uint64(2**64 - 1)
    return kind, indptr, indices, data


def family_csr_weight(rng):
    indptr, indices, data, n, k = _valid_csr(rng)
    kind, ip, ix, d = _break_compressed(rng, indptr, indices, data, k)
    return kind, lambda: na.CSRWeight(ip, ix, d, (n, k))


def _hand_assigned(rng, fmt):
    """A scipy.sparse matrix of format ``fmt`` whose arrays were then assigned by hand, broken."""
    import scipy.sparse as sp

    indptr, indices, data, n, k = _valid_csr(rng)
    kinds = tuple(x for x in _STRUCT_KINDS if x not in ("nan", "inf"))  # scipy objects may hold NaN: see below
    if fmt == "csr":
        m = sp.csr_array((data, indices, indptr), shape=(n, k))
        kind, m.indptr, m.indices, m.data = _break_compressed(rng, m.indptr, m.indices, m.data, k, kinds)
    elif fmt == "csc":
        m = sp.csc_array(sp.csr_array((data, indices, indptr), shape=(n, k)))
        kind, m.indptr, m.indices, m.data = _break_compressed(rng, m.indptr, m.indices, m.data, n, kinds)
    elif fmt == "bsr":
        m = sp.bsr_array(sp.csr_array((data, indices, indptr), shape=(n, k)), blocksize=(1, 1))
        kinds = tuple(x for x in kinds if x not in ("dtype_data", "data_2d", "len_data"))
        kind, m.indptr, m.indices, _ = _break_compressed(rng, m.indptr, m.indices, m.data.ravel(), k, kinds)
    else:  # coo
        m = sp.coo_array(sp.csr_array((data, indices, indptr), shape=(n, k)))
        kind = str(rng.choice(["row_high", "row_neg", "col_high", "col_neg", "len", "dtype"]))
        if m.nnz == 0:
            kind = "len"
        row, col = m.coords[0].copy(), m.coords[1].copy()
        p = int(rng.integers(0, max(m.nnz, 1)))
        if kind == "row_high":
            row[p] = n + int(rng.integers(0, 50))
        elif kind == "row_neg":
            row[p] = -1
        elif kind == "col_high":
            col[p] = k + int(rng.integers(0, 50))
        elif kind == "col_neg":
            col[p] = -int(rng.integers(1, 50))
        elif kind == "len":
            row = np.append(row, 0).astype(row.dtype)
        else:
            col = col.astype(np.float64)
        m.coords = (row, col)
    if rng.random() < 0.15 and m.data.size and fmt in ("csr", "csc", "coo") and kind not in ("dtype_data", "len_data",
                                                                                           "data_2d"):
        # a NaN value on top: still malformed for numaccel, which keeps weights finite
        m.data[int(rng.integers(0, m.data.size))] = np.nan
    return f"{fmt}:{kind}", m


def family_from_scipy(rng):
    fmt = str(rng.choice(["csr", "csc", "coo", "bsr"]))
    what, m = _hand_assigned(rng, fmt)
    return what, lambda: na.CSRWeight.from_scipy(m)


def family_spmm(rng):
    fmt = str(rng.choice(["csr", "csc", "coo"]))
    what, m = _hand_assigned(rng, fmt)
    B = rng.standard_normal((m.shape[1], 3)).astype(np.float32)
    return what, lambda: na.spmm(m, B)


def family_dense_entries(rng):
    """Entry points that take a dense weight, given a broken scipy.sparse matrix instead."""
    what, m = _hand_assigned(rng, "csr")
    entry = str(rng.choice(["prune", "quantize", "magnitude_mask", "from_dense"]))
    call = {
        "prune": lambda: na.prune(m, 0.5),
        "quantize": lambda: na.quantize(m),
        "magnitude_mask": lambda: na.magnitude_mask(m, 0.5),
        "from_dense": lambda: na.CSRWeight.from_dense(m),
    }[entry]
    return f"{entry}:{what}", call


# --------------------------------------------------------------------------------------------------
# int8


def family_int8_weight(rng):
    n, k = int(rng.integers(1, 6)), int(rng.integers(1, 20))
    g = None if rng.random() < 0.5 else int(rng.integers(1, k + 1))
    ng = None if g is None else -(-k // g)
    q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    s = rng.random((n,) if g is None else (n, ng)).astype(np.float32)
    z = rng.integers(-128, 128, s.shape).astype(np.int8) if rng.random() < 0.5 else None
    kind = str(rng.choice(["q_dtype", "q_1d", "q_3d", "s_shape", "s_nan", "s_inf", "s_neg", "s_dtype", "z_range",
                           "z_dtype", "z_shape", "g_zero", "g_neg", "g_float", "g_bool"]))
    p = tuple(int(rng.integers(0, d)) for d in s.shape)
    if kind == "q_dtype":
        q = q.astype(rng.choice([np.int16, np.uint8, np.float32]))
    elif kind == "q_1d":
        q = q.ravel()
    elif kind == "q_3d":
        q = q[None]
    elif kind == "s_shape":
        s = np.append(s.ravel(), 1.0).astype(np.float32)
    elif kind == "s_nan":
        s[p] = np.nan
    elif kind == "s_inf":
        s[p] = np.inf
    elif kind == "s_neg":
        s[p] = -1.0
    elif kind == "s_dtype":
        s = s.astype(np.int32)
    elif kind == "z_range":
        z = np.zeros(s.shape, np.int16)
        z[p] = rng.choice([-129, 128, 1000])
    elif kind == "z_dtype":
        z = np.zeros(s.shape, np.float32)
    elif kind == "z_shape":
        z = np.zeros(s.size + 1, np.int8)
    elif kind == "g_zero":
        g = 0
    elif kind == "g_neg":
        g = -int(rng.integers(1, 5))
    elif kind == "g_float":
        g = 2.0
    else:
        g = True
    return kind, lambda: na.Int8Weight(q, s, z, group_size=g)


# --------------------------------------------------------------------------------------------------
# linear, shard


def _some_weight(rng, n, k):
    W = rng.standard_normal((n, k)).astype(np.float32)
    return [W, na.prune(W, 0.5), na.quantize(W), na.quantize(W, group_size=3, symmetric=False),
            na.quantize(na.prune(W, 0.5))][int(rng.integers(5))]


def family_linear(rng):
    n, k, b = int(rng.integers(1, 9)), int(rng.integers(1, 12)), int(rng.integers(1, 5))
    w = _some_weight(rng, n, k)
    x = rng.standard_normal((b, k)).astype(np.float32)
    kwargs, bias = {}, None
    kind = str(rng.choice(["x_dtype", "x_k", "x_3d_k", "x_scalar", "x_str", "out_dtype", "out_shape",
                           "out_strided", "out_readonly", "out_is_x", "bias_len", "bias_dtype", "bias_2d",
                           "activations", "device", "weight_type", "weight_1d", "weight_int", "x_masked",
                           "out_is_bias", "out_is_weight", "weight_masked"]))
    if kind == "x_dtype":
        x = x.astype(rng.choice([np.int64, np.float16, np.complex64, np.bool_]))
    elif kind == "x_k":
        x = rng.standard_normal((b, k + int(rng.integers(1, 4)))).astype(np.float32)
    elif kind == "x_3d_k":
        x = rng.standard_normal((2, b, k + 1)).astype(np.float32)
    elif kind == "x_scalar":
        x = np.float32(1.0)
    elif kind == "x_str":
        x = "x"
    elif kind == "out_dtype":
        kwargs["out"] = np.empty((b, n), np.float64)
    elif kind == "out_shape":
        kwargs["out"] = np.empty((b, n + 1), np.float32)
    elif kind == "out_strided":  # two rows at least: an array of one element is contiguous whatever its strides
        b = max(b, 2)
        x = rng.standard_normal((b, k)).astype(np.float32)
        kwargs["out"] = np.empty((b, 2 * n), np.float32)[:, ::2]
    elif kind == "out_readonly":
        out = np.empty((b, n), np.float32)
        out.setflags(write=False)
        kwargs["out"] = out
    elif kind == "out_is_x":  # out overlapping x: a kernel would read what it already overwrote
        w = _some_weight(rng, k, k)
        n = k
        kwargs["out"] = x
    elif kind == "bias_len":
        bias = np.zeros(n + 1, np.float32)
    elif kind == "bias_dtype":
        bias = np.zeros(n, np.int32)
    elif kind == "bias_2d":
        bias = np.zeros((1, n), np.float32)
    elif kind == "activations":
        kwargs["activations"] = str(rng.choice(["int4", "INT8", "fp8"]))
    elif kind == "device":
        kwargs["device"] = str(rng.choice(["gpu", "CPU", ""]))
    elif kind == "weight_type":
        w = str(rng.choice(["W", "csr"]))
    elif kind == "weight_1d":
        w = np.ones(k, np.float32)
    elif kind == "x_masked":  # a mask the kernels would ignore
        x = np.ma.array(x, mask=rng.random(x.shape) < 0.5)
    elif kind == "out_is_bias":  # the bias a row of the output it is added to
        buf = np.zeros((b, n), np.float32)
        bias, kwargs["out"] = buf[int(rng.integers(b))], buf
    elif kind == "out_is_weight":  # out, (b, N), written over the first rows of the dense (N, N) weight
        w = rng.standard_normal((n + b, n + b)).astype(np.float32)
        x = rng.standard_normal((b, n + b)).astype(np.float32)
        kwargs["out"] = w[:b]
    elif kind == "weight_masked":
        w = np.ma.array(rng.standard_normal((n, k)).astype(np.float32), mask=rng.random((n, k)) < 0.5)
    else:
        w = np.ones((n, k), np.int32)
    if kind != "activations" and isinstance(w, (na.Int8Weight, na.CSRInt8Weight)) and rng.random() < 0.5:
        kwargs["activation_quant"] = "int8"  # the W8A8 paths check the same arguments first
    return f"{type(w).__name__}:{kind}", lambda: na.linear(x, w, bias, **kwargs)


def family_row_block(rng):
    n, k = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    w = _some_weight(rng, n, k)
    kind = str(rng.choice(["neg_start", "neg_stop", "reversed", "empty", "past_end", "float", "bool", "none"]))
    a = int(rng.integers(0, n))
    start, stop = {"neg_start": (-int(rng.integers(1, n + 2)), n), "neg_stop": (0, -int(rng.integers(1, n + 1))),
                   "reversed": (a + 1, a), "empty": (a, a), "past_end": (a, n + int(rng.integers(1, 5))),
                   "float": (0.0, float(n)), "bool": (False, True), "none": (None, n)}[kind]
    return f"{type(w).__name__}:{kind}", lambda: na.formats.row_block(w, start, stop)


def family_shard(rng):
    n, k = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    w = _some_weight(rng, n, k)
    kind = str(rng.choice(["n_zero", "n_neg", "n_big", "n_float", "n_bool", "n_none", "w_type", "w_int", "twice"]))
    count = {"n_zero": 0, "n_neg": -int(rng.integers(1, 5)), "n_big": n + int(rng.integers(1, 5)),
             "n_float": 1.0, "n_bool": True, "n_none": None}.get(kind, 1)
    if kind == "w_type":
        w = [[1.0]]
    elif kind == "w_int":
        w = np.ones((n, k), np.int64)
    elif kind == "twice":
        w = na.shard(w, 1)
    return kind, lambda: na.shard(w, count)


# --------------------------------------------------------------------------------------------------
# saved files


_MODEL_FILE = None


def _saved_model_bytes(rng) -> bytes:
    global _MODEL_FILE
    if _MODEL_FILE is None:
        W1 = rng.standard_normal((6, 5)).astype(np.float32)
        W2 = rng.standard_normal((4, 6)).astype(np.float32)
        W3 = rng.standard_normal((3, 4)).astype(np.float32)
        model = na.nn.MLP.from_arrays([na.prune(W1, 0.5), na.quantize(W2, group_size=2, symmetric=False), W3],
                                      biases=[np.ones(6, np.float32), None, np.zeros(3, np.float32)])
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            na.save(path, model)
            with open(path, "rb") as f:
                _MODEL_FILE = f.read()
    return _MODEL_FILE


def family_load(rng):
    original = _saved_model_bytes(rng)
    raw = bytearray(original)
    while raw == original:  # a change that changes nothing (zeroing zeros) is no malformed file
        raw, kind = _mutate_file(rng, bytearray(original))

    def call():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            with open(path, "wb") as f:
                f.write(raw)
            return na.load(path)

    return kind, call


def _mutate_file(rng, raw: bytearray):
    kind = str(rng.choice(["flip", "flip", "flip", "truncate", "append", "zero_tail", "empty", "random"]))
    if kind == "flip":
        p = int(rng.integers(0, len(raw)))
        raw[p] ^= 1 << int(rng.integers(0, 8))
        kind = f"flip@{p}"
    elif kind == "truncate":
        cut = int(rng.integers(0, len(raw)))
        raw = raw[:cut]
        kind = f"truncate@{cut}"
    elif kind == "append":
        raw += bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    elif kind == "zero_tail":
        p = int(rng.integers(8, len(raw)))
        raw[p:] = bytes(len(raw) - p)
        kind = f"zero_tail@{p}"
    elif kind == "empty":
        raw = bytearray()
    else:
        raw = bytearray(rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes())
    return raw, kind


FAMILIES = {name[len("family_"):]: fn for name, fn in globals().items() if name.startswith("family_")}


def main(family: str, seed: int, count: int) -> None:
    make = FAMILIES[family]
    rng = np.random.default_rng(seed)
    for i in range(count):
        what, call = make(rng)
        _say(case=i, what=what)
        try:
            result = call()
        except (ValueError, TypeError):
            continue
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            _say(bad=i, what=what, error=f"{type(exc).__name__}: {exc}")
        else:
            _say(bad=i, what=what, error=f"returned {type(result).__name__}")
    _say(done=count)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
