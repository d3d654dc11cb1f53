"""The planner's kernel variants, the wisdom file and ``numaccel.tune``.

Every variant of a choice computes the same product (checked against the float64 oracle, and the AVX-512
batch-1 variants against each other bit for bit); the wisdom file is read by later processes, keyed by
host, and a file that is corrupt in any way is ignored with a warning; ``tune`` records what it measured,
with the host default kept on ties (timers are replaced here: no test depends on this machine's speed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from reference import ref_linear

import numaccel as na
from numaccel import _config, tuning
from numaccel.plan import amx, csr, dense, wisdom
from numaccel.plan import int8 as plan_int8

HAS_AVX512 = _config.CSR_USE_TILES
GEMV_VARIANTS = ["scalar", "lanes", "lanes-prefetch", "gather"]


@pytest.fixture
def wisdom_file(tmp_path, monkeypatch):
    """A wisdom file of this test's own (the suite otherwise runs with NUMACCEL_WISDOM=off)."""
    p = tmp_path / "wisdom.json"
    monkeypatch.setenv("NUMACCEL_WISDOM", str(p))
    wisdom.load(reload=True)
    yield p
    monkeypatch.setenv("NUMACCEL_WISDOM", "off")
    wisdom.load(reload=True)


def _write(p, hosts, **top):
    doc = {"format": wisdom.FORMAT, "version": wisdom.VERSION, "hosts": hosts, **top}
    p.write_text(json.dumps(doc))


def _rows_0_to_69(rng, k=97, dtype=np.int32):
    rows = [np.sort(rng.choice(k, size=i, replace=False)) for i in range(70)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int32)
    indices = np.concatenate(rows).astype(dtype)
    return na.CSRWeight(indptr, indices, rng.standard_normal(indices.size).astype(np.float32), (70, k))


@pytest.mark.parametrize("serial", [True, False], ids=["calling-thread", "threads"])
@pytest.mark.parametrize("idx", [np.int32, np.uint16], ids=["int32", "uint16"])
def test_csr_gemv_variants_agree(rng, monkeypatch, serial, idx):
    """Rows of 0 to 69 nonzeros (every split into groups of 16 and a tail), each variant forced: all match
    the oracle row by row, and the AVX-512 variants give the same bits."""
    monkeypatch.setattr(_config, "CSR_SERIAL_WORK", 1 << 40 if serial else 0)
    w = _rows_0_to_69(rng, dtype=idx)
    for weight in (w, na.quantize(w), na.quantize(w, group_size=5)):
        x = rng.standard_normal(97).astype(np.float32)
        ref = ref_linear(x[None], weight)[0]
        got = {}
        for v in GEMV_VARIANTS:
            with wisdom.forced({"csr-gemv": v}):
                assert csr.gemv_variant(weight.shape, weight.nnz, np.dtype(np.float32),
                                        np.dtype(np.float32) if isinstance(weight, na.CSRWeight) else np.dtype(np.int8)
                                        ) == (v if HAS_AVX512 else "scalar")
                out = np.full(70, np.nan, dtype=np.float32)
                got[v] = na.linear(x, weight, out=out)
            np.testing.assert_allclose(got[v], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        for v in ("lanes-prefetch", "gather"):
            np.testing.assert_array_equal(got[v], got["lanes"])


@pytest.mark.parametrize("idx", [np.int32, np.uint16], ids=["int32", "uint16"])
def test_csr_gemv_tail_ignores_the_next_rows(rng, idx):
    """A row's last 1-15 nonzeros read sixteen stored values where the arrays hold them, the next rows' among
    them: an activation only the next rows use may be inf or NaN without touching the row's result."""
    k = 64
    rows = [np.sort(rng.choice(k - 2, size=i % 20, replace=False)) for i in range(30)]
    rows[7] = np.array([k - 2, k - 1])  # the only row that reads the last two activations
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int32)
    indices = np.concatenate(rows).astype(idx)
    w = na.CSRWeight(indptr, indices, rng.standard_normal(indices.size).astype(np.float32), (30, k))
    x = rng.standard_normal(k).astype(np.float32)
    x[k - 2], x[k - 1] = np.inf, np.nan
    for weight in (w, na.quantize(w)):
        ref = ref_linear(np.where(np.isfinite(x), x, 0)[None], weight)[0]
        for v in GEMV_VARIANTS:
            with wisdom.forced({"csr-gemv": v}):
                out = na.linear(x, weight, out=np.full(30, -1.0, dtype=np.float32))
            assert np.isnan(out[7]), v
            keep = np.arange(30) != 7
            np.testing.assert_allclose(out[keep], ref[keep], rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_gather_variant_on_wide_rows(rng):
    """Indices spread over a wide K (a gather's lanes far apart) and the last column used."""
    n, k = 33, 70_000
    dense_w = np.zeros((n, k), dtype=np.float32)
    for i in range(n):
        cols = rng.choice(k, size=37 + i, replace=False)
        cols[0] = k - 1
        dense_w[i, cols] = rng.standard_normal(cols.size)
    w = na.CSRWeight.from_dense(dense_w)
    x = rng.standard_normal(k).astype(np.float32)
    ref = ref_linear(x[None], w)[0]
    with wisdom.forced({"csr-gemv": "gather"}):
        out = na.linear(x, w)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_forced_variant_the_host_cannot_run(monkeypatch):
    monkeypatch.setattr(_config, "CSR_USE_TILES", False)
    with wisdom.forced({"csr-gemv": "gather"}):
        assert csr.gemv_variant((8, 8), 10, np.dtype(np.float32), np.dtype(np.float32)) == "scalar"
    monkeypatch.setattr(_config, "INT8_USE_AMX", False)
    w = na.quantize(np.ones((16, 64), np.float32))
    with wisdom.forced({"int8-w8a8": "amx"}):
        assert not amx.eligible(w, 64)


def test_wisdom_is_applied_and_read_by_later_processes(wisdom_file, rng):
    w = rng.standard_normal((64, 128)).astype(np.float32)
    x = rng.standard_normal((1, 128)).astype(np.float32)
    default = dense.uses_gemv(w, x)
    flipped = "blas" if default else "gemv"
    p = wisdom.record({"dense-gemv": {wisdom.case_key("dense", w.shape, 1): flipped}})
    assert p == str(wisdom_file)
    if dense.gemv_possible(w, x):
        assert dense.uses_gemv(w, x) == (flipped == "gemv")
        np.testing.assert_allclose(na.linear(x, w), x @ w.T, rtol=1e-5)
    code = ("import numpy as np\nfrom numaccel.plan import dense\n"
            "w = np.zeros((64, 128), np.float32); x = np.zeros((1, 128), np.float32)\n"
            "print(dense.uses_gemv(w, x), dense.gemv_possible(w, x))\n")
    env = {**os.environ, "NUMACCEL_WISDOM": str(wisdom_file)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    uses, possible = res.stdout.split()
    if possible == "True":
        assert uses == str(flipped == "gemv")


def test_record_merges_and_keeps_other_hosts(wisdom_file):
    other = "Some other CPU | 64 CPUs | numaccel 0.0.1"
    _write(wisdom_file, {other: {"choices": {"dense-gemv": {"dense 8x8 b1": "blas"}}}})
    wisdom.load(reload=True)
    wisdom.record({"csr-gemv": {"csr 8x8 b1 d0.50": "lanes"}})
    wisdom.record({"csr-gemv": {"csr 16x8 b1 d0.50": "gather"}})
    doc = json.loads(wisdom_file.read_text())
    assert doc["hosts"][other]["choices"]["dense-gemv"] == {"dense 8x8 b1": "blas"}
    mine = doc["hosts"][wisdom.host_key()]["choices"]["csr-gemv"]
    assert mine == {"csr 8x8 b1 d0.50": "lanes", "csr 16x8 b1 d0.50": "gather"}
    assert not [f for f in os.listdir(wisdom_file.parent) if f.startswith(".wisdom-")]  # no temporary left
    assert wisdom.load(reload=True)["csr-gemv"]["csr 16x8 b1 d0.50"] == "gather"


def test_other_hosts_entries_are_not_applied(wisdom_file):
    other = "Another CPU | 2 CPUs | numaccel 0.1.0"
    _write(wisdom_file, {other: {"choices": {"csr-gemv": {"csr 8x8 b1 d0.50": "gather"}}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wisdom.load(reload=True) == {}


@pytest.mark.parametrize("content", [
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[]",
    b'{"format": "something-else", "version": 1, "hosts": {}}',
    b'{"format": "numaccel-wisdom", "version": 99, "hosts": {}}',
    b'{"format": "numaccel-wisdom", "version": 1, "hosts": []}',
    b"[" * 100_000,
], ids=["truncated", "binary", "list", "format", "version", "hosts-list", "deep"])
def test_corrupt_file_is_ignored_with_a_warning(wisdom_file, content, rng):
    wisdom_file.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="wisdom"):
        assert wisdom.load(reload=True) == {}
    w = rng.standard_normal((20, 30)).astype(np.float32)
    x = rng.standard_normal((1, 30)).astype(np.float32)
    np.testing.assert_allclose(na.linear(x, w), x @ w.T, rtol=1e-5)


def test_bad_entries_are_dropped_with_a_warning(wisdom_file):
    _write(wisdom_file, {wisdom.host_key(): {"choices": {
        "csr-gemv": {"csr 8x8 b1 d0.50": "warp-drive", "csr 9x8 b1 d0.50": 3, "csr 10x8 b1 d0.50": "lanes"},
        "no-such-choice": {"x": "y"},
    }}})
    with pytest.warns(RuntimeWarning, match="2|3"):
        table = wisdom.load(reload=True)
    assert table == {"csr-gemv": {"csr 10x8 b1 d0.50": "lanes"}}
    _write(wisdom_file, {wisdom.host_key(): ["not", "an", "object"]})
    with pytest.warns(RuntimeWarning):
        assert wisdom.load(reload=True) == {}


def test_off_reads_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMACCEL_WISDOM", "off")
    assert wisdom.path() is None
    assert wisdom.record({"csr-gemv": {"csr 8x8 b1 d0.50": "lanes"}}) is None
    monkeypatch.delenv("NUMACCEL_WISDOM")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert wisdom.path() == str(tmp_path / "numaccel" / "wisdom.json")
    monkeypatch.setenv("NUMACCEL_WISDOM", "off")
    wisdom.load(reload=True)


def test_record_refuses_unknown_names():
    with pytest.raises(ValueError, match="choice"):
        wisdom.record({"nope": {"a": "b"}}, save=False)
    with pytest.raises(ValueError, match="variant"):
        wisdom.record({"csr-gemv": {"a": "b"}}, save=False)


def test_case_key():
    assert wisdom.case_key("int8", (4096, 4096), 50) == "int8 4096x4096 b64"
    assert wisdom.case_key("csr", (10, 20), 1, 0.1) == "csr 10x20 b1 d0.10"


def test_tune_records_the_winner_and_keeps_the_default_on_ties(wisdom_file, rng, monkeypatch):
    w = rng.standard_normal((64, 96)).astype(np.float32)
    csr_w = na.prune(w, 0.8)
    q = na.quantize(w)
    seen = []

    def fake_hot(cands, repeats, force, bar):
        seen.append(sorted(cands))
        # every variant 1.0 except: "gather" 2 % faster (a tie), "blas" 10 % and "convert" 15 % faster
        speed = {"gather": 0.98, "convert": 0.85, "blas": 0.9}
        return {k: [speed.get(k, 1.0)] * repeats for k in cands}

    monkeypatch.setattr(tuning, "_time_hot", fake_hot)
    rep = na.tune([w, csr_w, q], (1, 64), repeats=2, cold=False)
    by = {(r["choice"], r["case"]): r for r in rep}
    assert rep.path == (str(wisdom_file) if len(rep) else None)  # no choice exists without the JIT
    if HAS_AVX512:
        r = by[("csr-gemv", wisdom.case_key("csr", csr_w.shape, 1, csr_w.density))]
        assert r["winner"] == r["default"]  # 2 % is within the margin
    if ("int8-panels", wisdom.case_key("int8", q.shape, 64)) in by:
        assert by[("int8-panels", wisdom.case_key("int8", q.shape, 64))]["winner"] == "convert"
    if len(rep):
        stored = json.loads(wisdom_file.read_text())["hosts"][wisdom.host_key()]["choices"]
        for r in rep:
            assert stored[r["choice"]][r["case"]] == r["winner"]
            offered = set(wisdom.CHOICES[r["choice"]]) - {"scalar"}
            if r["choice"] == "int8-panels" and not plan_int8.blas_possible():
                offered.discard("blas")
            assert set(r["times"]) == offered
    else:
        assert not wisdom_file.exists()
    assert "| choice |" in rep.table() and wisdom.host_key() in rep.table()


def test_tune_for_real_on_small_weights(wisdom_file, rng):
    """A real (tiny) timing run: every row names a variant the choice has, and the layers still compute
    the right thing afterwards, whatever won."""
    w = rng.standard_normal((48, 80)).astype(np.float32)
    layers = [w, na.prune(w, 0.9), na.quantize(w)]
    rep = na.tune(layers, (1, 16), repeats=1, cold=False)
    for r in rep:
        assert r["winner"] in wisdom.CHOICES[r["choice"]]
        assert all(m > 0 for m, _, _ in r["times"].values())
    for b in (1, 16):
        x = rng.standard_normal((b, 80)).astype(np.float32)
        for layer in layers:
            np.testing.assert_allclose(na.linear(x, layer), ref_linear(x, layer), rtol=2e-5, atol=1e-4)


def test_tune_model_and_w8a8(wisdom_file, rng, monkeypatch):
    model = na.nn.MLP.init([32, 64, 10], seed=0)
    monkeypatch.setattr(tuning, "_time_hot", lambda cands, repeats, force, bar: {k: [1.0] for k in cands})
    rep = na.tune(model, 1, repeats=1, cold=False)
    assert all(r["choice"] == "dense-gemv" for r in rep)
    q = na.quantize(rng.standard_normal((64, 128)).astype(np.float32))
    rep = na.tune(q, (8, 64), activation_quant="int8", repeats=1, cold=False)
    assert all(r["choice"] == "int8-w8a8" for r in rep) and (len(rep) == 2) == amx.possible(q)
    rep = na.tune(q, 1, activation_quant="int8", repeats=1, cold=False)
    choices = {r["choice"] for r in rep}
    assert ("w8a8-gemv" in choices) == (plan_int8._USE_VNNI and plan_int8._USE_PANELS)


@pytest.mark.parametrize(("kw", "err"), [
    ({"batch_sizes": ()}, ValueError),
    ({"batch_sizes": (0,)}, ValueError),
    ({"batch_sizes": (1.5,)}, ValueError),
    ({"batch_sizes": "x"}, TypeError),
    ({"repeats": 0}, ValueError),
    ({"activation_quant": "int4"}, ValueError),
])
def test_tune_rejects_bad_arguments(kw, err):
    with pytest.raises(err):
        na.tune(np.ones((4, 4), np.float32), **kw)


def test_tune_rejects_what_is_not_a_weight():
    with pytest.raises(TypeError, match="tune expects"):
        na.tune("model.safetensors")
    with pytest.raises(ValueError, match="must be 2-D"):
        na.tune(np.ones(8, np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        na.tune(np.ones((4, 8), np.int64))


@pytest.mark.parametrize("vendor, family, want", [("GenuineIntel", 6, "gather"), ("AuthenticAMD", 25, "lanes-prefetch"),
                                                  ("AuthenticAMD", 26, "lanes"), ("", -1, "lanes")])
def test_csr_gemv_default_by_host(monkeypatch, vendor, family, want):
    from numaccel import _config
    from numaccel.plan import csr

    monkeypatch.setattr(_config, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(_config, "cpu_family", lambda: family)
    csr.gemv_default.cache_clear()
    try:
        assert csr.gemv_default() == want
    finally:
        csr.gemv_default.cache_clear()
