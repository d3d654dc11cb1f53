"""The demo command end to end, in its fast mode (small models, one seed, one timing round)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from numaccel import cli

WIDE_ROWS = ("dense fp32", "int8", "pruned 50%", "pruned 80%", "pruned 90%", "pruned 90% + int8")
DIGITS_ROWS = ("teacher, dense fp32", "pruned 90% + fine-tune", "student, distilled", "student, labels only")


def test_demo_fast_writes_tables_and_plot(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["demo", "--fast", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    wide = (tmp_path / "demo_wide.md").read_text()
    digits = (tmp_path / "demo_digits.md").read_text()
    assert all(f"| {name}" in wide for name in WIDE_ROWS)
    assert all(f"| {name}" in digits for name in DIGITS_ROWS)
    assert wide.startswith("Environment: numpy") and digits.startswith("Environment: numpy")
    env_line = wide.split("\n\n", 1)[0]
    assert wide[len(env_line) + 2:] in printed and digits[len(env_line) + 2:].split("\nplot:")[0] in printed
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "demo_digits.png").stat().st_size > 1000


def test_python_dash_m_runs_the_command():
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "numaccel", "--help"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout


def test_demo_is_the_default_command(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "demo", lambda **kw: seen.update(kw))
    assert cli.main(["--fast", "--only", "wide", "--out", "x"]) == 0
    assert seen["fast"] and seen["wide"] and not seen["digits"] and seen["out"] == "x"
    with pytest.raises(SystemExit):
        cli.main(["demo", "--only", "everything"])
