"""``numaccel bench``: how fast numaccel is on this host, against dense NumPy and the installed anchors.

:func:`run` times the headline suite (``suite_headline.py``: CSR 90 %, int8 weight-only and W8A8, batch 1
and 64, 4096 x 4096, cold weights) with pytest-benchmark, once per library and round, each in a fresh
process, the rounds interleaved (every round times every library, so a drift of the machine's speed hits
all alike); the process that times numaccel also measures the host's roofline
(:func:`numaccel.benchmarks.roofline.measure`, quick). Dense NumPy runs with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` removed from its environment (they slow NumPy's BLAS on some hosts). Then it prints
one Markdown table (:func:`numaccel.benchmarks.report.headline`) and, with ``out``, writes it, the raw
JSON files and a plot there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["available_libraries", "missing_requirements", "run"]

SUITE = Path(__file__).resolve().parent / "suite_headline.py"
_PROCESS_TIMEOUT = 1800  # seconds for one library's process (a slow host at 4096 x 4096)


def missing_requirements() -> list:
    """Return the names of the packages ``numaccel bench`` needs that are not installed.

    Returns
    -------
    list of str
        Of ``pytest`` and ``pytest-benchmark``; empty when both are importable.

    Examples
    --------
    >>> from numaccel.benchmarks.command import missing_requirements
    >>> set(missing_requirements()) <= {"pytest", "pytest-benchmark"}
    True
    """
    return [name for name, module in (("pytest", "pytest"), ("pytest-benchmark", "pytest_benchmark"))
            if importlib.util.find_spec(module) is None]


def _cuda_usable() -> tuple[bool, str]:
    try:
        from numba import config

        if config.ENABLE_CUDASIM:
            return False, "NUMBA_ENABLE_CUDASIM=1 (the CUDA simulator is not a GPU)"
        from numba import cuda

        if cuda.is_available():
            return True, ""
        return False, "no usable CUDA GPU (numba.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001 - numba-cuda absent or broken: no CUDA cases
        return False, f"numba.cuda cannot be used ({type(exc).__name__})"


def available_libraries(requested=None) -> tuple[list, dict]:
    """Return the libraries the run will time and why each other one is left out.

    Parameters
    ----------
    requested : iterable of str, optional
        Libraries asked for (of :data:`numaccel.benchmarks.suite_headline.LIBRARIES`); all by default.

    Returns
    -------
    tuple
        ``(libraries, skipped)``: the installed ones in the suite's order, and ``{library: reason}``.

    Raises
    ------
    ValueError
        If a requested name is not a library of the suite.
    """
    from .suite_headline import LIBRARIES

    wanted = list(LIBRARIES) if requested is None else list(dict.fromkeys(requested))
    unknown = [w for w in wanted if w not in LIBRARIES]
    if unknown or not wanted:
        raise ValueError(f"impls must be a comma-separated list of {', '.join(LIBRARIES)}, got "
                         f"{','.join(wanted) if wanted else 'nothing'}")
    module = {"scipy": "scipy", "mkl": "sparse_dot_mkl", "torch": "torch"}
    libs, skipped = [], {}
    for lib in LIBRARIES:
        if lib not in wanted:
            continue
        if lib in module and importlib.util.find_spec(module[lib]) is None:
            skipped[lib] = f"{module[lib]} is not installed"
        elif lib == "cuda":
            ok, why = _cuda_usable()
            if ok:
                libs.append(lib)
            else:
                skipped[lib] = why
        else:
            libs.append(lib)
    return libs, skipped


def _env(lib: str, *, shape: str, weights: str, roofline: bool, target: float | None) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the numaccel package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(NUMACCEL_BENCH_IMPLS=lib, NUMACCEL_BENCH_SHAPE=shape, NUMACCEL_BENCH_WEIGHTS=weights,
               NUMACCEL_BENCH_ROOFLINE="quick" if roofline else "0")
    env.pop("NUMACCEL_BENCH_QUICK", None)
    if target is not None:
        env["NUMACCEL_BENCH_TARGET"] = str(target)
    if lib == "numpy":  # the dense anchor's BLAS runs without them (they slow it on some hosts)
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run(*, out=None, rounds: int = 3, impls=None, shape: str = "4096", weights: str = "cold",
        target: float | None = None, say=print) -> int:
    """Run the headline benchmarks in interleaved rounds and print one Markdown table.

    Parameters
    ----------
    out : path-like, optional, keyword-only
        A folder for ``bench.md`` (the table), ``bench.png`` (the plot, where matplotlib is installed) and
        ``raw/`` (each process's pytest-benchmark JSON and log); without it nothing is kept.
    rounds : int, keyword-only
        Interleaved rounds (each times every library once, in its own process).
    impls : iterable of str, optional, keyword-only
        Libraries to time (``numaccel``, ``numpy``, ``scipy``, ``mkl``, ``torch``, ``cuda``); all that are
        installed by default.
    shape : str, keyword-only
        ``N`` or ``NxK`` of the weights.
    weights : {"cold", "hot"}, keyword-only
        Cold: copies rotated through more than twice the last-level cache; hot: one copy, reused.
    target : float, optional, keyword-only
        Seconds of timed calls per case (the suite's default, 0.25 s, when None).
    say : callable, keyword-only
        Where progress and the table go (``print``).

    Returns
    -------
    int
        The exit status: 0, or 1 when a process failed or nothing was measured.

    Raises
    ------
    ValueError
        If an argument is out of range (``rounds < 1``, an unknown library, a malformed shape, ``weights``
        neither cold nor hot, ``target <= 0``).
    """
    from . import report
    from .suite_headline import settings

    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if target is not None and not target > 0:
        raise ValueError(f"target must be a positive number of seconds, got {target!r}")
    cfg = settings({"NUMACCEL_BENCH_SHAPE": str(shape), "NUMACCEL_BENCH_WEIGHTS": weights})  # validates both
    n, k = cfg["shape"]
    libs, skipped = available_libraries(impls)
    if not libs:
        raise ValueError("none of the requested libraries can run here: "
                         + "; ".join(f"{lib}: {why}" for lib, why in skipped.items()))
    for lib, why in skipped.items():
        say(f"numaccel bench: skipping {lib}: {why}")
    roof_lib = "numaccel" if "numaccel" in libs else libs[0]
    with tempfile.TemporaryDirectory(prefix="numaccel-bench-") as tmp:
        raw = Path(out) / "raw" if out is not None else Path(tmp)
        raw.mkdir(parents=True, exist_ok=True)
        say(f"numaccel bench: {n}×{k}, {weights} weights, {rounds} round(s) of {', '.join(libs)}, one process "
            f"each; the {roof_lib} process also measures the roofline")
        jsons, failed = [], []
        for r in range(1, rounds + 1):
            for lib in libs:
                path, log = raw / f"{lib}_r{r}.json", raw / f"{lib}_r{r}.log"
                path.unlink(missing_ok=True)
                cmd = [sys.executable, "-m", "pytest", str(SUITE), "-p", "numaccel.benchmarks.plugin",
                       "-p", "no:cacheprovider", "-q", f"--benchmark-json={path}"]
                env = _env(lib, shape=f"{n}x{k}", weights=weights, roofline=lib == roof_lib, target=target)
                t0 = time.perf_counter()
                with open(log, "w", encoding="utf-8") as fh:
                    try:
                        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                            timeout=_PROCESS_TIMEOUT, check=False).returncode
                    except subprocess.TimeoutExpired:
                        rc = "timeout"
                dt = time.perf_counter() - t0
                if rc != 0 or not path.exists():
                    failed.append(lib)
                    say(f"round {r}/{rounds}: {lib} failed ({'exit ' + str(rc) if rc != 'timeout' else 'timed out'}"
                        f" after {dt:.0f} s); its log ends:\n{_tail(log)}")
                    continue
                jsons.append(path)
                say(f"round {r}/{rounds}: {lib} done in {dt:.0f} s")
        if not jsons:
            say("numaccel bench: nothing was measured")
            return 1
        table = report.load(jsons, combine="median")
        machine = report.load_machine(jsons)
        info = json.loads(jsons[0].read_text()).get("machine_info", {})
        rotation = ("cold weights: each call reads the next of copies that together exceed twice the last-level "
                    "cache" if weights == "cold" else "hot weights: one copy, reused")
        note = (f"{rounds} interleaved round(s), one process per library and round ({', '.join(libs)}); "
                f"{info.get('numba_threads', '?')} threads (Numba {info.get('threading_layer', '?')}); "
                f"dense NumPy with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; {rotation}.")
        if skipped:
            note += " Not timed: " + "; ".join(f"{lib} ({why})" for lib, why in skipped.items()) + "."
        title = f"numaccel bench: {n}×{k}, {weights} weights"
        md = report.headline(table, title, note, machine=machine)
        say("")
        say(md)
        if out is not None:
            out = Path(out)
            (out / "bench.md").write_text(md + "\n", encoding="utf-8")
            desc = machine.get("host") or {}
            host_short = f"{desc.get('cpu_model', 'unknown CPU')}, {info.get('numba_threads', '?')} threads"
            if importlib.util.find_spec("matplotlib") is None:
                why = "matplotlib is not installed (pip install matplotlib)"
            elif not report.plot_speedups(table, out / "bench.png", f"{title}\n{host_short}"):
                why = "no dense NumPy figure to draw speed-ups against"
            else:
                why = None
            plot = f", {out / 'bench.png'}" if why is None else ""
            say(f"wrote {out / 'bench.md'}{plot} and the raw results in {raw}" + (f" (no plot: {why})" if why else ""))
    return 1 if failed else 0
