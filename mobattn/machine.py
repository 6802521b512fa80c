"""Which machine this is: the facts that tell two hosts apart when their CPU label is
the same (two "AMD EPYC, 2 cores" hosts measured matmul peaks of 93 and 212 GFLOP/s).

The fingerprint is a hash of a stable machine id (itself hashed: never the raw id or the
host name), the CPU, usable cores, cache sizes, memory, the hypervisor where visible, and
the frequency governor and boost where readable (pyperf's metadata, asv's machine.json and
Google Benchmark's context record the same). It is part of every row's identity, with the
calibration band that :mod:`mobattn.bench.calibration` adds, so rows of two machines never
share a table cell, a fit, a plot or a resumed sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
from pathlib import Path

from mobattn.settings import machine_id_setting

_CPU = Path("/sys/devices/system/cpu")
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
# What the fingerprint hashes, in this order (a fact that cannot be read is None)
FINGERPRINT_FACTS = ("machine_id", "cpu", "cores", "caches", "memory_gib", "hypervisor", "governor", "boost")


def _read(path: str | Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return Path(path).read_text().strip() or None
    return None


def machine_id() -> str:
    """This machine's id, hashed (16 hex digits): ``MOBATTN_MACHINE_ID`` (for clones that
    share one /etc/machine-id, or machines one declares the same), else /etc/machine-id,
    else the host name."""
    raw = machine_id_setting() or next(filter(None, map(_read, MACHINE_ID_FILES)), None) or platform.node()
    return hashlib.sha256(f"mobattn-machine:{raw}".encode()).hexdigest()[:16]


def caches() -> str | None:
    """CPU 0's caches, e.g. ``L1d 48K, L1i 32K, L2 1024K, L3 32768K`` (Linux)."""
    found = []
    for index in sorted(_CPU.glob("cpu0/cache/index*")):
        level, kind, size = (_read(index / name) for name in ("level", "type", "size"))
        if level and size:
            suffix = {"Data": "d", "Instruction": "i"}.get(kind or "", "")
            found.append(f"L{level}{suffix} {size}")
    return ", ".join(found) or None


def memory_gib() -> int | None:
    """The machine's memory in whole GiB (MemTotal moves by a few MiB across kernels)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 2**20)
    return None


def hypervisor() -> str | None:
    """``none`` on bare metal, the hypervisor's name where the system says it (else
    ``virtualised``), None where nothing can be read (not Linux)."""
    cpuinfo = _read("/proc/cpuinfo")
    if cpuinfo is None:
        return None
    named = _read("/sys/hypervisor/type") or _read("/sys/class/dmi/id/sys_vendor")
    if " hypervisor" not in cpuinfo:  # the flag, in the flags line
        return "none"
    return named or "virtualised"


def governor() -> str | None:
    return _read(_CPU / "cpu0/cpufreq/scaling_governor")


def boost() -> bool | None:
    """Whether the CPU may clock above its base frequency (frequency boost / turbo)."""
    generic = _read(_CPU / "cpufreq/boost")
    if generic is not None:
        return generic == "1"
    no_turbo = _read(_CPU / "intel_pstate/no_turbo")
    return None if no_turbo is None else no_turbo == "0"


def machine_facts(cpu: str, cores: int) -> dict:
    """The facts above and their fingerprint (the first 16 hex digits of their hash)."""
    facts = {
        "machine_id": machine_id(),
        "cpu": cpu,
        "cores": cores,
        "caches": caches(),
        "memory_gib": memory_gib(),
        "hypervisor": hypervisor(),
        "governor": governor(),
        "boost": boost(),
    }
    shown = {k: v for k, v in facts.items() if k not in ("cpu", "cores")}  # the environment has them
    return {**shown, "fingerprint": fingerprint(facts)}


def fingerprint(facts: dict) -> str:
    text = "|".join(f"{k}={facts.get(k)}" for k in FINGERPRINT_FACTS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
