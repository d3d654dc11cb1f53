"""Kernel variants where hosts disagree, and the "wisdom" that records which one won on this host.

At a few points a planner has several kernels that compute the same product (the same numerics: no
variant quantizes what the call did not ask to quantize) and whose speed depends on the host. Each such
point is a *choice* with named variants (:data:`CHOICES`). By default the planner picks a variant from the
host's features, which is cheap and deterministic. :func:`numaccel.tune` times the variants for given
weights and batch sizes on this host and stores the winners as wisdom, a small JSON file that later
processes read (FFTW's idea):

* its path is the environment variable ``NUMACCEL_WISDOM`` when set (``NUMACCEL_WISDOM=off`` reads and
  writes none), else ``$XDG_CACHE_HOME/numaccel/wisdom.json`` (``~/.cache/numaccel/wisdom.json``); it is read
  once per process, at the first choice (:func:`load` with ``reload=True`` reads it again);
* entries are keyed by the host (CPU model, logical CPUs, numaccel version: :func:`host_key`), the choice
  and the case (shape, batch rounded up to a power of two, density for sparse weights), so a file shared
  between hosts or kept across an upgrade is never applied where it was not measured;
* a file that cannot be read or parsed, or an entry that does not name a known variant, is ignored with a
  warning: never an error, never a crash.

Precedence at each choice: a variant forced by :func:`forced` (what ``tune`` times), then the wisdom, then
the host default. A variant the host cannot run (``available`` is False) is never used, whatever the file
says.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import warnings

from .. import _config

__all__ = ["CHOICES", "choose", "forced", "host_key", "load", "path", "record", "case_key"]

# choice: its variants, the first being the portable fallback. What each variant runs:
#   csr-gemv:       batch-1 CSR and pruned-int8 (float32 activations): "lanes" loads sixteen activations into
#                   vector lanes one by one, "lanes-prefetch" also prefetches the values and indices ahead,
#                   "gather" fetches the activations with one AVX-512 gather (and prefetches), "scalar" is
#                   the portable row loop.
#   dense-gemv:     float32 dense layers of a few rows: "blas" (NumPy's matmul) or numaccel's "gemv".
#   int8-panels:    int8 weight-only float32 products: "tiles" convert codes inside every register tile,
#                   "convert" converts each block of codes to float32 once and reuses it for all rows,
#                   "blas" dequantizes blocks of rows to float32 and multiplies them in single-threaded
#                   OpenBLAS GEMMs on numaccel's threads (only where NumPy's OpenBLAS can be called so).
#   int8-gemv:      int8 weight-only float32 products of one activation row: "panels" reads one 64-row panel
#                   at a time per thread, "streams" four side by side (four memory streams per core).
#   int8-w8a8:      W8A8 products: "vnni" (AVX-512 VNNI) or "amx" (Intel AMX tiles).
#   w8a8-gemv:      W8A8 VNNI products of one activation row: "panels" one 64-row panel at a time per thread,
#                   "streams" four side by side.
CHOICES: dict[str, tuple[str, ...]] = {
    "csr-gemv": ("scalar", "lanes", "lanes-prefetch", "gather"),
    "dense-gemv": ("blas", "gemv"),
    "int8-panels": ("tiles", "convert", "blas"),
    "int8-gemv": ("panels", "streams"),
    "int8-w8a8": ("vnni", "amx"),
    "w8a8-gemv": ("panels", "streams"),
}

FORMAT = "numaccel-wisdom"
VERSION = 1

_lock = threading.Lock()
_local = threading.local()
_state: dict = {"path": None, "table": None}  # the file read and its entries for this host


def path() -> str | None:
    """Where the wisdom file is read from and written to; None when ``NUMACCEL_WISDOM=off``."""
    env = os.environ.get("NUMACCEL_WISDOM")
    if env is not None and env.strip():
        return None if env.strip().lower() in ("off", "0", "none") else os.path.expanduser(env.strip())
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "numaccel", "wisdom.json")


def host_key() -> str:
    """Return the host a wisdom entry belongs to: CPU model, logical CPUs and numaccel version."""
    return f"{_config.cpu_model() or 'unknown CPU'} | {os.cpu_count()} CPUs | numaccel {_config.VERSION}"


def case_key(fmt: str, shape, batch: int, density: float | None = None) -> str:
    """Return the case an entry is for, such as ``"int8 4096x4096 b64"``.

    The format's name, its shape, the batch rounded up to a power of two, and ``" d0.10"`` for a sparse
    weight's density (two decimals).
    """
    n, k = shape
    b = 1 << max(0, math.ceil(math.log2(max(1, int(batch)))))
    key = f"{fmt} {int(n)}x{int(k)} b{b}"
    return key if density is None else f"{key} d{density:.2f}"


def _warn(msg: str) -> None:
    warnings.warn(f"numaccel: {msg}; the wisdom file is ignored", RuntimeWarning, stacklevel=4)


def _parse(text: str, where: str) -> dict | None:
    """Return the file's ``{host: {choice: {case: variant}}}``; None (with a warning) if malformed."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        _warn(f"{where} is not valid JSON ({exc})")
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("hosts"), dict):
        _warn(f"{where} is not a numaccel wisdom file (expected an object with format={FORMAT!r} and 'hosts')")
        return None
    if doc.get("version") != VERSION:
        _warn(f"{where} has version {doc.get('version')!r}, this numaccel reads version {VERSION}")
        return None
    return doc["hosts"]


def _entries(hosts: dict, where: str) -> dict:
    """Return this host's valid entries ``{choice: {case: variant}}``, dropping bad ones with a warning."""
    mine = hosts.get(host_key())
    if mine is None:
        return {}
    table: dict = {}
    bad = 0
    if not isinstance(mine, dict) or not isinstance(mine.get("choices", {}), dict):
        _warn(f"{where}: the entry for this host is not an object with 'choices'")
        return {}
    for choice, cases in mine.get("choices", {}).items():
        if choice not in CHOICES or not isinstance(cases, dict):
            bad += 1
            continue
        for case, variant in cases.items():
            if isinstance(case, str) and isinstance(variant, str) and variant in CHOICES[choice]:
                table.setdefault(choice, {})[case] = variant
            else:
                bad += 1
    if bad:
        warnings.warn(f"numaccel: {where}: {bad} wisdom entries name no known choice or variant and are ignored",
                      RuntimeWarning, stacklevel=4)
    return table


def _read_file(p: str) -> dict | None:
    """Return the file's ``hosts`` object; None when absent, unreadable or malformed (warned)."""
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read(1 << 22)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        _warn(f"{p} cannot be read ({exc})")
        return None
    return _parse(text, p)


def load(reload: bool = False) -> dict:
    """Return this host's wisdom ``{choice: {case: variant}}``, read once per process (or ``reload``).

    The file is found from the environment (:func:`path`) when it is first read; after changing
    ``NUMACCEL_WISDOM`` in a running process, call ``load(reload=True)``.
    """
    table = _state["table"]
    if table is not None and not reload:
        return table
    p = path()
    with _lock:
        hosts = None if p is None else _read_file(p)
        table = {} if hosts is None else _entries(hosts, p)
        _state["path"], _state["table"] = p, table
    return table


def record(winners: dict, *, save: bool = True) -> str | None:
    """Add ``{choice: {case: variant}}`` to this process's wisdom and, with ``save``, to the file.

    The file is merged (other hosts' entries and other cases are kept), written to a temporary file and
    renamed, so a reader never sees half a file. Returns the path written, or None.
    """
    for choice, cases in winners.items():
        if choice not in CHOICES:
            raise ValueError(f"unknown choice {choice!r}; expected one of {sorted(CHOICES)}")
        for variant in cases.values():
            if variant not in CHOICES[choice]:
                raise ValueError(f"{choice}: unknown variant {variant!r}; expected one of {CHOICES[choice]}")
    table = load()
    with _lock:
        for choice, cases in winners.items():
            table.setdefault(choice, {}).update(cases)
    p = path()
    if not save or p is None:
        return None
    with _lock:
        hosts = _read_file(p) or {}
        mine = hosts.get(host_key())
        mine = mine if isinstance(mine, dict) and isinstance(mine.get("choices"), dict) else {"choices": {}}
        for choice, cases in winners.items():
            old = mine["choices"].get(choice)
            mine["choices"][choice] = {**(old if isinstance(old, dict) else {}), **cases}
        hosts[host_key()] = mine
        doc = {"format": FORMAT, "version": VERSION, "hosts": hosts}
        d = os.path.dirname(p) or "."
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".wisdom-", suffix=".json", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return p


@contextlib.contextmanager
def forced(variants: dict | None):
    """Force ``variants`` (``{choice: variant}``) for this Python thread's calls within the block.

    Where the host can run them, whatever the wisdom and the defaults say: how ``tune`` times each variant.
    """
    old = getattr(_local, "forced", None)
    _local.forced = {**(old or {}), **(variants or {})}
    try:
        yield
    finally:
        _local.forced = old


def choose(choice: str, case, default: str, available=None) -> str:
    """Return the variant of ``choice`` to run for ``case``: forced, else the wisdom's, else ``default``.

    ``case`` is the case key or a function returning it (called only when some wisdom or a forced
    variant exists for ``choice``: the common path costs two dictionary lookups). ``available(variant)``
    (default: every variant) says whether this host can run a variant; one it cannot is skipped.
    """
    f = getattr(_local, "forced", None)
    if f:
        v = f.get(choice)
        if v is not None and (available is None or available(v)):
            return v
    table = _state["table"]
    if table is None:
        table = load()
    cases = table.get(choice)
    if not cases:
        return default
    v = cases.get(case() if callable(case) else case)
    if v is not None and (available is None or available(v)):
        return v
    return default
