"""Crash-fuzz: batches of malformed inputs through every public entry point, each batch in a fresh
interpreter, so that a crash in compiled code (numaccel's, SciPy's, safetensors') fails the test instead of
killing the run. Every input must raise ``ValueError`` or ``TypeError``; the child must exit normally.
The inputs are built in ``fuzz_cases.py`` from fixed seeds, so a failure names a reproducible case:
``python tests/fuzz_cases.py FAMILY SEED COUNT``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fuzz_cases
import pytest

CHILD = Path(__file__).with_name("fuzz_cases.py")
NEEDS = {"from_scipy": "scipy", "spmm": "scipy", "dense_entries": "scipy", "load": "safetensors"}
COUNT = 150
SEEDS = (1, 2)


def run_batch(family: str, seed: int, count: int = COUNT) -> tuple[int, list[dict], str]:
    proc = subprocess.run([sys.executable, str(CHILD), family, str(seed), str(count)], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stderr


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", sorted(fuzz_cases.FAMILIES))
def test_malformed_inputs_raise_and_never_crash(family, seed):
    if family in NEEDS:
        pytest.importorskip(NEEDS[family])
    code, lines, err = run_batch(family, seed)
    started = [line for line in lines if "case" in line]
    last = started[-1] if started else None
    assert code == 0, f"the child died with exit code {code} at input {last}; stderr: {err[-2000:]}"
    assert lines and lines[-1] == {"done": COUNT}, f"the child stopped early after {last}; stderr: {err[-2000:]}"
    bad = [line for line in lines if "bad" in line]
    assert not bad, f"{len(bad)} of {COUNT} malformed inputs did not raise ValueError/TypeError: {bad[:10]}"
