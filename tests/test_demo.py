"""The demo command end to end, in its fast mode (small models, one seed, one timing round)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from numaccel import cli
from numaccel.cli import demo as cli_demo

ROOT = str(Path(__file__).resolve().parents[1])
WIDE_ROWS = ("dense fp32", "int8", "pruned 50%", "pruned 80%", "pruned 90%", "pruned 90% + int8")
DIGITS_ROWS = ("teacher, dense fp32", "pruned 90% + fine-tune", "student, distilled", "student, labels only")


def _env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **extra)


def _checkout_like(tmp_path) -> Path:
    """A working directory that looks like a checkout: bench/results holding committed-looking files."""
    cwd = tmp_path / "cwd"
    results = cwd / "bench" / "results"
    results.mkdir(parents=True)
    (results / "demo_wide.md").write_text("committed table\n")
    (results / "sentinel.txt").write_text("do not touch\n")
    return cwd


def _tree(root: Path) -> dict:
    """Every file and folder under ``root``: path -> (bytes, modification time)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _row(table: str, name: str) -> list[str]:
    """The cells of the table row named ``name``."""
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _header(table: str) -> list[str]:
    line = next(ln for ln in table.splitlines() if ln.startswith("| model |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _assert_rows_hold_what_they_say(wide: str, digits: str):
    """Each compressed row's layers are stored in the format its name promises."""
    for table, pruned, hidden in ((wide, "pruned 90%", 3), (digits, "pruned 90% + fine-tune", None)):
        col = _header(table).index("layers stored as")
        n = len(_row(table, "int8")[col].split(" / ")) if hidden is None else hidden
        assert _row(table, "int8")[col] == " / ".join(["int8"] * n)
        assert _row(table, pruned)[col] == " / ".join(["csr"] * n)
        assert _row(table, "pruned 90% + int8")[col] == " / ".join(["csr-int8"] * n)
        assert "csr-int8 = int8 codes of the kept entries" in table
    col = _header(digits).index("bytes")
    assert int(_row(digits, "pruned 90% + int8")[col]) < int(_row(digits, "pruned 90% + fine-tune")[col])


def _assert_no_verdicts(printed: str):
    """The demo reports figures; whether they meet goals is for bench/, not for the demo's output."""
    for word in ("Targets", "target", " met", "missed"):
        assert word not in printed


def test_python_dash_m_fast_writes_nothing_without_out(tmp_path):
    pytest.importorskip("sklearn")
    cwd = _checkout_like(tmp_path)
    before = _tree(cwd)
    done = subprocess.run([sys.executable, "-m", "numaccel", "--fast"], cwd=cwd, capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert _tree(cwd) == before  # bench/results untouched, and no new file or folder anywhere in the cwd
    assert all(f"| {name}" in done.stdout for name in WIDE_ROWS + DIGITS_ROWS)
    assert "nothing written" in done.stdout and "--out DIR" in done.stdout
    _assert_no_verdicts(done.stdout)


def test_demo_fast_writes_tables_and_plot_only_into_out(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    cwd = _checkout_like(tmp_path)
    monkeypatch.chdir(cwd)
    before = _tree(cwd)
    out = tmp_path / "out"
    assert cli.main(["demo", "--fast", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert _tree(cwd) == before
    wide = (out / "demo_wide.md").read_text()
    digits = (out / "demo_digits.md").read_text()
    assert all(f"| {name}" in wide for name in WIDE_ROWS)
    assert all(f"| {name}" in digits for name in DIGITS_ROWS)
    assert wide.startswith("Environment: numpy") and digits.startswith("Environment: numpy")
    env_line = wide.split("\n\n", 1)[0]
    assert wide[len(env_line) + 2:] in printed and digits[len(env_line) + 2:] in printed
    written = [out / "demo_wide.md", out / "demo_digits.md"]
    if importlib.util.find_spec("matplotlib"):
        written.append(out / "demo_digits.png")
        assert written[-1].read_bytes().startswith(b"\x89PNG") and written[-1].stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    _assert_rows_hold_what_they_say(wide, digits)
    assert f"wrote {', '.join(map(str, written))}" in printed
    _assert_no_verdicts(printed)


def test_no_plot_writes_only_the_tables(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["--fast", "--only", "digits", "--no-plot", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_digits.md"]
    assert f"wrote {tmp_path / 'demo_digits.md'} (" in capsys.readouterr().out


_PLOT_SCRIPT = """
import sys
from types import SimpleNamespace

import matplotlib

from numaccel.cli import demo

before = matplotlib.get_backend()
models = {"dense": SimpleNamespace(nbytes=4000), "small": SimpleNamespace(nbytes=400)}
acc = {"dense": [97.0, 98.0], "small": [96.5]}
speed = {"dense": {"speedup_b1_min": 1.0}, "small": {"speedup_b1_min": 4.0}}
assert demo._plot(models, acc, speed, sys.argv[1]) == sys.argv[1]
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_plot_leaves_the_backend_and_pyplot_alone(tmp_path):
    """The plot is drawn on its own Agg canvas: the backend a user (or notebook) chose stays selected."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    done = subprocess.run([sys.executable, "-c", _PLOT_SCRIPT, str(path)], capture_output=True, text=True,
                          env=_env(MPLBACKEND="svg"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "svg", "False"]
    assert path.read_bytes().startswith(b"\x89PNG")


def test_plot_in_process_does_not_switch_backends(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    def refuse(*args, **kwargs):
        raise AssertionError("matplotlib.use() called by library code")

    monkeypatch.setattr(matplotlib, "use", refuse)
    before = matplotlib.get_backend()
    models = {"a": SimpleNamespace(nbytes=100)}
    assert cli_demo._plot(models, {"a": [90.0]}, {"a": {"speedup_b1_min": 2.0}}, str(tmp_path / "p.png"))
    assert matplotlib.get_backend() == before


def test_python_dash_m_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "numaccel", "--help"], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout


def test_demo_is_the_default_command(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli_demo, "run", lambda **kw: seen.update(kw))
    assert cli.main(["--fast", "--only", "wide", "--out", "x"]) == 0
    assert seen["fast"] and seen["wide"] and not seen["digits"] and seen["out"] == "x"
    assert cli.main(["--fast"]) == 0
    assert seen["out"] is None  # no default folder: nothing is written unless asked
    with pytest.raises(SystemExit):
        cli.main(["demo", "--only", "everything"])


def test_command_module_holds_only_the_entry_point():
    """Argument parsing in numaccel.cli, the demo in numaccel.cli.demo; the command name is unchanged."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    assert cli.__all__ == ["main"] and cli_demo.__all__ == ["run"]
    with open(Path(ROOT) / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["numaccel"] == "numaccel.cli:main"
