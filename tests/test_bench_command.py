"""``numaccel bench`` and the benchmark support it ships: arguments, an end-to-end run on a tiny shape, the
report with and without a roofline, and the host and roofline readers. No timing assertions."""

import importlib.util
import json
import math

import pytest

from numaccel import cli
from numaccel.benchmarks import command, host, plugin, report, roofline, rotation, suite_headline


@pytest.mark.parametrize("argv", [
    ["bench", "--rounds", "0"],
    ["bench", "--rounds", "two"],
    ["bench", "--impls", "numaccel,foo"],
    ["bench", "--impls", ","],
    ["bench", "--weights", "warm"],
], ids=["rounds-0", "rounds-text", "impls-unknown", "impls-empty", "weights"])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "numaccel bench: error:" in capsys.readouterr().err


def test_bad_shape_exits_2_with_the_rule(capsys):
    assert cli.main(["bench", "--shape", "3", "--impls", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "shape must be N or NxK" in err and "'3'" in err


def test_missing_pytest_benchmark_exits_2_naming_the_extra(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytest_benchmark" else real(name, *a))
    assert cli.main(["bench", "--shape", "256"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pytest-benchmark" in err and 'pip install "numaccel[bench]"' in err


def test_command_knows_the_suite_libraries():
    assert cli._BENCH_LIBRARIES == suite_headline.LIBRARIES
    with pytest.raises(ValueError, match="impls must be"):
        command.available_libraries(["numpy", "blas"])
    libs, skipped = command.available_libraries(["numaccel", "cuda"])
    assert libs == ["numaccel"] and "cuda" in skipped  # the tests run under the CUDA simulator: no GPU


def test_bench_tiny_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUMACCEL_BENCH_TARGET", "0.01")
    out = tmp_path / "out"
    rc = cli.main(["bench", "--shape", "256", "--weights", "hot", "--rounds", "1", "--impls", "numaccel,numpy",
                   "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    table = (out / "bench.md").read_text()
    assert table.strip() in printed
    assert table.startswith("# numaccel bench: 256×256, hot weights")
    assert f"Host: {host.describe()['cpu_model']}" in table
    assert "Roofline, measured in the same run" in table and "cold sgemv" in table
    head = next(ln for ln in table.splitlines() if ln.startswith("| case |"))
    assert "of ceiling" in head and "vs NumPy" in head
    row = next(ln for ln in table.splitlines() if "**numaccel CSR**" in ln)
    assert " % (" in row.split("|")[-2]  # the fraction cell
    for name in ("numaccel int8 weight-only", "numaccel W8A8", "NumPy dense fp32"):
        assert name in table
    for lib in ("numaccel", "numpy"):
        doc = json.loads((out / "raw" / f"{lib}_r1.json").read_text())
        assert doc["benchmarks"] and doc["machine_info"]["host"]["cpu_model"]
        for bench in doc["benchmarks"]:
            info = bench["extra_info"]
            assert info["N"] == info["K"] == 256 and info["weights"] == "hot" and info["nbytes"] > 0
    assert "roofline" in json.loads((out / "raw" / "numaccel_r1.json").read_text())["machine_info"]
    assert "roofline" not in json.loads((out / "raw" / "numpy_r1.json").read_text())["machine_info"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").stat().st_size > 0


def _doc(tmp_path, name, benches, roof=None):
    mi = {"host": {"cpu_model": "Test CPU", "logical_cpus": 2, "mhz": 2000.0, "caches": {"L3": 32 << 20},
                   "isa": ["avx2"]}}
    if roof is not None:
        mi["roofline"] = roof
    path = tmp_path / name
    path.write_text(json.dumps({"machine_info": mi, "benchmarks": benches}))
    return path


def _bench(impl, batch, median, **extra):
    info = dict(family="csr", impl=impl, N=64, K=64, batch=batch, dtype="float32", sparsity=0.9, group_size=None,
                weights="cold", threads=2, device="cpu", **extra)
    return {"stats": {"median": median, "min": median * 0.9, "rounds": 10}, "extra_info": info}


ROOF = {"host": "Test CPU", "threads": 2, "quick": True, "sgemv_gbs": 40.0, "fma_gflops": 100.0,
        "vnni_gops": None, "amx_tops": None}


def test_report_without_roofline_has_no_fraction_column(tmp_path):
    path = _doc(tmp_path, "old.json", [_bench("numaccel", 1, 1e-4), _bench("numpy", 1, 5e-4)])
    table, machine = report.load([path]), report.load_machine([path])
    assert machine["roofline"] is None
    for text in (report.headline(table, "t", machine=machine), report.markdown(table, "t", machine=machine)):
        assert "Host: Test CPU" in text
        assert "of ceiling" not in text and "Roofline" not in text
    assert "5.00×" in report.headline(table, "t", machine=machine)


def test_report_with_roofline_gives_fractions(tmp_path):
    benches = [_bench("numaccel", 1, 1e-3, nbytes=20_000_000, ops=100, compute="fp32"),
               _bench("numaccel", 64, 1e-3, nbytes=20_000_000, ops=50_000_000, compute="fp32"),
               _bench("numpy", 1, 2e-3), _bench("numpy", 64, 2e-3)]
    paths = [_doc(tmp_path, "a.json", benches, ROOF), _doc(tmp_path, "b.json", benches, dict(ROOF, sgemv_gbs=20.0))]
    table, machine = report.load(paths, combine="median"), report.load_machine(paths)
    assert machine["roofline"]["sgemv_gbs"] == 30.0 and machine["roofline"]["measurements"] == 2
    text = report.headline(table, "t", machine=machine)
    assert "of ceiling" in text and "nbytes / time" in text and "float32 FMA 100 GFLOP/s" in text
    assert "67 % (20 GB/s)" in text  # 20 MB in 1 ms against 30 GB/s
    assert "50 % (50 GFLOP/s)" in text  # 5e7 operations in 1 ms against 100 GFLOP/s
    assert "of ceiling" in report.markdown(table, "t", machine=machine)


def test_bandwidth_ceiling_is_never_below_the_runs_own_dense_sgemv(tmp_path):
    """Dense NumPy's batch-1 rows on cold weights time the roofline's own product: where they read faster
    than the roofline's short sgemv measured, the fractions use their bandwidth, and the text says so."""
    ours = _bench("numaccel", 1, 1e-3, nbytes=20_000_000, ops=100, compute="fp32")
    fast = [ours, _bench("numpy", 1, 1e-3, nbytes=50_000_000)]  # 50 GB/s against the roofline's 40
    paths = [_doc(tmp_path, "a.json", fast, ROOF),
             _doc(tmp_path, "b.json", [ours, _bench("numpy", 1, 2.5e-3, nbytes=50_000_000)]),  # 20 GB/s
             _doc(tmp_path, "c.json", [ours, _bench("numpy", 1, 0.8e-3, nbytes=50_000_000)])]  # 62.5 GB/s
    machine = report.load_machine(paths)
    roof = machine["roofline"]
    assert roof["sgemv_gbs"] == 50.0 and roof["sgemv_gbs_roofline"] == 40.0  # the median over the files
    text = report.headline(report.load(paths, combine="median"), "t", machine=machine)
    assert "cold sgemv 40 GB/s" in text and "the 50 GB/s that dense NumPy's sgemv reached" in text
    assert "40 % (20 GB/s)" in text
    hot = [ours, dict(_bench("numpy", 1, 1e-4, nbytes=50_000_000))]
    hot[1]["extra_info"]["weights"] = "hot"  # hot rows say nothing of the memory's bandwidth
    slow = [ours, _bench("numpy", 1, 2.5e-3, nbytes=50_000_000)]
    for benches in (hot, slow):
        roof = report.load_machine([_doc(tmp_path, "d.json", benches, ROOF)])["roofline"]
        assert roof["sgemv_gbs"] == 40.0 and "sgemv_gbs_dense" not in roof
    assert report.load_machine([_doc(tmp_path, "e.json", fast)])["roofline"] is None  # no roofline: no fractions


def test_fraction_rules():
    cpu1, cpu64 = {"batch": 1, "device": "cpu"}, {"batch": 64, "device": "cpu"}
    row = {"median": 1e-3, "nbytes": 4e7, "ops": 2e9, "compute": "int8-amx"}
    assert report.fraction(cpu1, row, {"sgemv_gbs": 40.0}) == (1.0, 40.0, "GB/s")
    frac, achieved, unit = report.fraction(cpu64, row, {"amx_tops": 4.0})
    assert unit == "TOP/s" and math.isclose(achieved, 2.0) and math.isclose(frac, 0.5)
    assert report.fraction(cpu64, row, {"amx_tops": None}) is None  # no AMX on the host
    assert report.fraction(cpu1, row, None) is None
    assert report.fraction({"batch": 1, "device": "cuda"}, row, {"sgemv_gbs": 40.0}) is None
    assert report.fraction(cpu1, {"median": 1e-3}, {"sgemv_gbs": 40.0}) is None  # no nbytes recorded


def test_host_facts():
    assert host.llc_bytes() > 0
    n = host.cold_copies(1 << 20)
    assert n >= 2 and n * (1 << 20) > 2 * host.llc_bytes()
    with pytest.raises(ValueError, match="nbytes_per_copy"):
        host.cold_copies(-1)
    d = host.describe()
    assert d["logical_cpus"] >= 1 and d["llc_bytes"] == host.llc_bytes()
    assert all(v > 0 for v in d["caches"].values())
    assert host.line().startswith(d["cpu_model"])


def test_roofline_values_are_positive_or_none():
    for peak in (roofline.fma_peak, roofline.vnni_peak, roofline.amx_peak):
        value = peak(seconds=0.005, repeats=1)
        assert value is None or (math.isfinite(value) and value > 0), peak.__name__
    assert roofline.sgemv_bandwidth(1024, 1024, repeats=3) > 0
    with pytest.raises(ValueError, match="repeats"):
        roofline.sgemv_bandwidth(repeats=0)
    text = roofline.describe(dict(ROOF, fma_gflops=None))
    assert "float32 FMA n/a" in text and "cold sgemv 40 GB/s" in text


def test_plugin_records_host_and_honours_roofline_off(monkeypatch):
    monkeypatch.setenv("NUMACCEL_BENCH_ROOFLINE", "0")
    assert plugin.roofline_mode() == "off"
    info = plugin.update_machine_info({})
    assert "roofline" not in info and info["host"]["cpu_model"] and info["numba_threads"] >= 1
    monkeypatch.setenv("NUMACCEL_BENCH_ROOFLINE", "quick")
    assert plugin.roofline_mode() == "quick"


@pytest.mark.parametrize(("env", "match"), [
    ({"NUMACCEL_BENCH_IMPLS": "numpy,blas"}, "NUMACCEL_BENCH_IMPLS"),
    ({"NUMACCEL_BENCH_SHAPE": "4096x"}, "shape"),
    ({"NUMACCEL_BENCH_WEIGHTS": "warm"}, "NUMACCEL_BENCH_WEIGHTS"),
    ({"NUMACCEL_BENCH_TARGET": "-1"}, "NUMACCEL_BENCH_TARGET"),
])
def test_suite_settings_errors(env, match):
    with pytest.raises(ValueError, match=match):
        suite_headline.settings(env)


def test_suite_settings_defaults():
    cfg = suite_headline.settings({})
    assert cfg["shape"] == (4096, 4096) and cfg["weights"] == "cold" and cfg["batches"] == (1, 64)
    assert cfg["libraries"] == suite_headline.LIBRARIES
    assert suite_headline.settings({"NUMACCEL_BENCH_SHAPE": "512x256"})["shape"] == (512, 256)


def test_call_seconds_is_the_median_and_stops_past_the_cap(monkeypatch):
    # a fake clock: each call of fn advances it by the next duration
    durations = iter([0.010, 0.500, 0.020, 5.0, 0.01])
    now = [0.0]

    def fn():
        now[0] += next(durations)

    monkeypatch.setattr(rotation.time, "perf_counter", lambda: now[0])
    assert rotation.call_seconds(fn) == pytest.approx(0.020)  # one slow call of three is not followed
    assert rotation.call_seconds(fn, cap=1.0) == pytest.approx(5.0)  # past the cap: no further calls
    assert next(durations) == 0.01
