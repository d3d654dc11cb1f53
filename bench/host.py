"""What the benchmarks need to know of the host: its last-level cache (the size of a "cold" weight rotation)
and the facts every figure is read against (CPU model, logical CPUs, clock, caches, kernel-selecting ISA
features), read from /proc/cpuinfo and sysfs."""

from __future__ import annotations

import os
from pathlib import Path

_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo() -> dict:
    info: dict = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in info:
            info[key] = value.strip()
    return info


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def caches() -> dict:
    """``{level: bytes}`` of cpu0's data/unified caches from sysfs (empty where sysfs has none)."""
    out: dict = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            out[int((d / "level").read_text())] = _size((d / "size").read_text())
        except (OSError, ValueError):
            continue
    return out


def llc_bytes(default: int = 32 << 20) -> int:
    """The last-level cache in bytes (``default`` where sysfs does not say)."""
    c = caches()
    return c[max(c)] if c else default


def cold_copies(nbytes_per_copy: int, *, minimum: int = 2) -> int:
    """How many copies of a weight of ``nbytes_per_copy`` bytes exceed twice the last-level cache."""
    return max(minimum, -(-2 * llc_bytes() // max(1, nbytes_per_copy)) + 1)


def describe() -> dict:
    """The host facts recorded beside every figure."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "cpu_model": info.get("model name", "unknown"),
        "logical_cpus": os.cpu_count(),
        "mhz": float(info.get("cpu MHz", "nan") or "nan"),
        "caches": {f"L{lvl}": size for lvl, size in caches().items()},
        "isa": sorted(f for f in _FEATURES if f in flags),
    }


def line() -> str:
    """One line naming the host, for tables."""
    d = describe()
    c = ", ".join(f"{k} {v >> 20} MiB" if v >= 1 << 20 else f"{k} {v >> 10} KiB" for k, v in d["caches"].items())
    return (f"{d['cpu_model']}, {d['logical_cpus']} logical CPUs at {d['mhz']:.0f} MHz, {c}; "
            f"{' '.join(d['isa'])}")


if __name__ == "__main__":
    print(line())
