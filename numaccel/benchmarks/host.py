"""What the benchmarks need to know of the host.

Its last-level cache (the size of a "cold" weight rotation) and the facts every figure is read against:
CPU model, logical CPUs, clock, caches and the kernel-selecting ISA features, read from ``/proc/cpuinfo``
and sysfs. The cache size and the CPU model come from :mod:`numaccel._config` (the one reader of both).
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import _config

__all__ = ["caches", "cold_copies", "describe", "line", "llc_bytes"]

_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
_DEFAULT_LLC = 32 << 20


def _cpuinfo() -> dict:
    """Return the first value of every key of /proc/cpuinfo (cpu0's), empty where it cannot be read."""
    info: dict = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for row in text.splitlines():
        key, _, value = row.partition(":")
        key = key.strip()
        if key and key not in info:
            info[key] = value.strip()
    return info


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def caches() -> dict:
    """Return cpu0's data and unified cache sizes per level, from sysfs.

    Returns
    -------
    dict
        ``{level: bytes}``, empty where sysfs does not list the caches.

    Examples
    --------
    >>> from numaccel.benchmarks import host
    >>> all(isinstance(level, int) and size > 0 for level, size in host.caches().items())
    True
    """
    out: dict = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            out[int((d / "level").read_text())] = _size((d / "size").read_text())
        except (OSError, ValueError):
            continue
    return out


def llc_bytes(default: int = _DEFAULT_LLC) -> int:
    """Return the last-level cache in bytes (:func:`numaccel._config.llc_bytes`), ``default`` where unknown.

    Parameters
    ----------
    default : int
        The size assumed where sysfs does not say (32 MiB).

    Returns
    -------
    int
        Bytes, positive.

    Examples
    --------
    >>> from numaccel.benchmarks import host
    >>> host.llc_bytes() > 0
    True
    """
    return _config.llc_bytes() or int(default)


def cold_copies(nbytes_per_copy: int, *, minimum: int = 2) -> int:
    """Return how many copies of a weight together exceed twice the last-level cache.

    Parameters
    ----------
    nbytes_per_copy : int
        Bytes of one copy.
    minimum : int, keyword-only
        The fewest copies returned.

    Returns
    -------
    int
        ``max(minimum, ceil(2 * llc_bytes() / nbytes_per_copy) + 1)``.

    Raises
    ------
    ValueError
        If ``nbytes_per_copy`` is negative.

    Examples
    --------
    >>> from numaccel.benchmarks import host
    >>> host.cold_copies(host.llc_bytes()) * host.llc_bytes() > 2 * host.llc_bytes()
    True
    """
    if nbytes_per_copy < 0:
        raise ValueError(f"nbytes_per_copy must be >= 0, got {nbytes_per_copy}")
    return max(minimum, -(-2 * llc_bytes() // max(1, int(nbytes_per_copy))) + 1)


def describe() -> dict:
    """Return the host facts recorded beside every figure.

    Returns
    -------
    dict
        ``cpu_model``, ``logical_cpus``, ``mhz`` (cpu0's clock as /proc/cpuinfo reports it, NaN where
        absent), ``caches`` (``{"L1": bytes, ...}``), ``llc_bytes`` and ``isa`` (the kernel-selecting
        features the CPU flags list).

    Examples
    --------
    >>> from numaccel.benchmarks import host
    >>> sorted(host.describe())
    ['caches', 'cpu_model', 'isa', 'llc_bytes', 'logical_cpus', 'mhz']
    """
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        mhz = float(info.get("cpu MHz", "nan") or "nan")
    except ValueError:
        mhz = float("nan")
    return {
        "cpu_model": _config.cpu_model() or "unknown CPU",
        "logical_cpus": os.cpu_count(),
        "mhz": mhz,
        "caches": {f"L{lvl}": size for lvl, size in caches().items()},
        "llc_bytes": llc_bytes(),
        "isa": sorted(f for f in _FEATURES if f in flags),
    }


def _fmt_bytes(n) -> str:
    n = int(n)
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def line(desc: dict | None = None) -> str:
    """Return one line naming the host, for tables.

    Parameters
    ----------
    desc : dict, optional
        A :func:`describe` result (for instance one recorded in a benchmark JSON); this host's by default.

    Returns
    -------
    str
        ``"<CPU model>, <n> logical CPUs at <MHz> MHz, L1 48 KiB, ...; <ISA features>"``.

    Examples
    --------
    >>> from numaccel.benchmarks import host
    >>> host.line({"cpu_model": "Some CPU", "logical_cpus": 2, "mhz": 2100.0, "caches": {"L3": 32 << 20},
    ...            "isa": ["avx2"]})
    'Some CPU, 2 logical CPUs at 2100 MHz, L3 32 MiB; avx2'
    """
    d = describe() if desc is None else desc
    mhz = d.get("mhz")
    clock = f" at {mhz:.0f} MHz" if isinstance(mhz, (int, float)) and mhz == mhz else ""
    sizes = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in (d.get("caches") or {}).items())
    isa = " ".join(d.get("isa") or []) or "no AVX2/AVX-512/AMX"
    return f"{d.get('cpu_model', 'unknown CPU')}, {d.get('logical_cpus', '?')} logical CPUs{clock}, {sizes}; {isa}"


if __name__ == "__main__":
    print(line())
