"""The machines behind results rows (``mobattn machines``, ``mobattn merge``): each one's
fingerprint facts and calibration, how many rows it measured, and when."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .row import Row, machine_tag

# The environment facts a machine is shown by (mobattn.machine, .calibration)
SHOWN_FACTS = ("cpu", "cores", "caches", "memory_gib", "hypervisor", "governor", "boost", "node_label")


@dataclass
class MachineSummary:
    machine: str  # the name tables and plots use (Row.machine)
    tag: str | None  # fingerprint and calibration band, hashed; None: a row without one
    fingerprint: str | None
    calibration_gflops: float | None  # fp32 matmul, one thread
    calibration_spread: float | None  # (max - min) / median of its rounds
    facts: dict
    rows: int
    first_seen: str
    last_seen: str

    def to_dict(self) -> dict:
        return asdict(self)


def machines_of(rows: Iterable[Row]) -> list[MachineSummary]:
    """One summary per machine (Row.machine), in order of first appearance."""
    found: dict[str, MachineSummary] = {}
    for row in rows:
        env = row.environment or {}
        name = row.machine
        summary = found.get(name)
        if summary is None:
            summary = found[name] = MachineSummary(
                machine=name,
                tag=machine_tag(env),
                fingerprint=env.get("fingerprint"),
                calibration_gflops=env.get("calibration_gflops"),
                calibration_spread=env.get("calibration_spread"),
                facts={k: env.get(k) for k in SHOWN_FACTS},
                rows=0,
                first_seen=row.timestamp,
                last_seen=row.timestamp,
            )
        summary.rows += 1
        summary.first_seen = min(summary.first_seen, row.timestamp) if row.timestamp else summary.first_seen
        summary.last_seen = max(summary.last_seen, row.timestamp)
    return list(found.values())


def same_label_different_machines(summaries: list[MachineSummary]) -> list[str]:
    """CPU labels shared by machines whose fingerprints or calibrations differ: the case
    a CPU label alone would have merged."""
    by_cpu: dict[str, set] = {}
    for s in summaries:
        by_cpu.setdefault(str(s.facts.get("cpu")), set()).add(s.machine)
    return sorted(cpu for cpu, names in by_cpu.items() if len(names) > 1)
