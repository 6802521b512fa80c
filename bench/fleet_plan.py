"""What the fleet (:mod:`.fleet`) runs where: machines grouped into kinds by the identity
their rows would carry, and each kind's queue of configurations, longest first.

Machines whose rows would share an identity form a *kind*. ``compare`` (the default)
runs the whole grid once per kind, spread over that kind's machines; ``spread`` runs each
configuration once, and refuses machines of different kinds unless asked to mix them.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mobattn.errors import MobattnError

from .config import BACKENDS, BenchConfig
from .results import read_rows
from .row import ENV_KEYS, GPU_KEYS, Row, machine_tag

MODES = ("compare", "spread")

KIND_KEYS = ENV_KEYS + GPU_KEYS


def kind_of(env: dict) -> tuple:
    """Machines of one kind give rows of one identity: every environment key any row's
    identity reads (the backends' library versions included)."""
    keys = KIND_KEYS + tuple(sorted({k for b in BACKENDS.values() for k in b.env_keys}))
    return tuple((k, env.get(k)) for k in keys)


def kind_name(env: dict) -> str:
    """A short name for a kind: its label, else CPU, cores, GPU and machine tag (two hosts
    of one CPU label are two kinds: :mod:`mobattn.machine`)."""
    if env.get("node_label"):
        return env["node_label"]
    parts = [env.get("cpu") or "?", f"{env.get('cores')}c"] + ([env["gpu"]] if env.get("gpu") else [])
    tag = machine_tag(env)
    return " ".join(parts + ([f"#{tag}"] if tag else []))


ABSENT = "(none now)"  # the node and host of a kind whose machines all left


@dataclass
class Machine:
    address: str  # the Dask worker's address
    node: str
    host: str
    environment: dict

    @property
    def kind(self) -> tuple:
        return kind_of(self.environment)

    @property
    def kind_name(self) -> str:
        return kind_name(self.environment)


@dataclass
class Job:
    config: BenchConfig
    kind: tuple | None  # the kind it must run on (None: any, in spread mode)
    losses: list[str] = field(default_factory=list)  # nodes lost while it ran


# Seconds an export takes here, by target and kind (the runtime-parity sweep's rows,
# 2-core AMD EPYC): only the order of configurations depends on it.
EXPORT_S = {"onnx": {"attention": 2.0, "model": 5.0}, "executorch": {"attention": 5.5, "model": 20.0}}
EXPORT_S_OTHER = {"attention": 5.0, "model": 20.0}
START_S, MIN_TIMED_S, RUNS = 0.5, 2.5, 50  # a worker's start; the default profile's floor
CPU_FLOPS_PER_THREAD, GPU_FLOPS = 2e10, 2e12


def estimated_cost_s(config: BenchConfig, past: dict[tuple, float] | None = None) -> float:
    """Seconds a configuration is expected to take: its past rows' where there are some
    (any machine), else start + export + timing, the timing from its multiply-adds
    (counted on the meta device, once per subject) at a rough rate for its device."""
    if past and _cost_key(config) in past:
        return past[_cost_key(config)]
    target = BACKENDS[config.backend].target
    export_s = 0.0 if target is None else EXPORT_S.get(target, EXPORT_S_OTHER).get(config.kind, 20.0)
    rate = GPU_FLOPS if config.device == "cuda" else CPU_FLOPS_PER_THREAD * config.threads
    per_run_s = 2 * _macs(_subject_key(config)) * config.batch / rate
    return START_S + export_s + max(MIN_TIMED_S, RUNS * per_run_s)


def _subject_key(config: BenchConfig) -> tuple:
    shape = tuple(config.hw or config.resolution or ())
    return (config.kind, config.model, config.attention, config.dim, shape, config.heads, config.file)


@functools.lru_cache(maxsize=4096)
def _macs(subject: tuple) -> float:
    kind, model, attention, dim, shape, heads, file = subject
    if kind == "file":
        return 1e9
    from mobattn.flops import count_macs

    from .backends import subject_for_figures

    config = BenchConfig(kind, model=model, attention=attention, dim=dim, heads=heads)
    if kind == "attention":
        config.hw = list(shape)
    else:
        config.resolution = list(shape) if shape else None
    try:
        module, example = subject_for_figures(config)
        return float(count_macs(module.to("meta"), example.to("meta")))
    except Exception:  # an estimate only: a subject that cannot be built is measured anyway
        return 1e9


def _cost_key(subject) -> tuple:
    shape = tuple(subject.hw or subject.resolution or ())
    setting = (subject.backend, subject.precision, subject.threads)
    return (subject.kind, subject.model, subject.attention, subject.dim, shape, *setting)


def past_costs(rows: Sequence[Row]) -> dict[tuple, float]:
    """Each configuration's wall time in past rows (the newest), from its phases."""
    costs = {}
    for row in rows:
        if row.phases_s and "total" in row.phases_s:
            costs[_cost_key(row)] = row.phases_s["total"]
    return costs


def plan(
    configs: Sequence[BenchConfig],
    fleet: dict[str, Machine],
    done: Sequence[Row],
    mode: str = "compare",
    mix: bool = False,
) -> dict[tuple | None, list[Job]]:
    """The queues: per kind (compare) or one (spread), longest first, without the
    configurations whose row is already in ``done`` for that kind."""
    if mode not in MODES:
        raise MobattnError(f"--fleet must be one of {', '.join(MODES)}, got '{mode}'")
    kinds = {m.kind: m.environment for m in fleet.values()}
    if mode == "spread" and len(kinds) > 1 and not mix:
        names = ", ".join(sorted(kind_name(env) for env in kinds.values()))
        raise MobattnError(
            f"--fleet spread: the machines are of {len(kinds)} kinds ({names}), whose rows are not "
            "comparable; use --fleet compare, pick one kind with --machines, or add --mix"
        )
    finished = {r.identity() for r in done if r.status != "error"}
    costs = past_costs(done)
    queues: dict[tuple | None, list[Job]] = {}
    if mode == "compare":
        for kind, env in kinds.items():
            todo = [c for c in configs if c.identity(env) not in finished]
            queues[kind] = [Job(c, kind) for c in todo]
    else:
        todo = [c for c in configs if not any(c.identity(env) in finished for env in kinds.values())]
        queues[None] = [Job(c, None) for c in todo]
    for jobs in queues.values():
        jobs.sort(key=lambda job: -estimated_cost_s(job.config, costs))
    return queues


def remaining(configs: Sequence[BenchConfig], fleet: dict[str, Machine], results: Path | None) -> Counter:
    """What each kind still has to run (``mobattn fleet``), kinds whose machines all left
    included (:func:`absent_kinds`): their work waits for them."""
    done = read_rows(results) if results else []
    fleet = {**fleet, **absent_kinds(fleet, done)}
    queues = plan(configs, fleet, done, "compare")
    names = {m.kind: m.kind_name for m in fleet.values()}
    return Counter({names[kind]: len(jobs) for kind, jobs in queues.items()})


def absent_kinds(fleet: dict[str, Machine], rows: Sequence[Row]) -> dict[str, Machine]:
    """The kinds that measured rows on the fleet (their ``details.fleet``) and have no
    machine in it now, each as a machine with no node: a compare sweep owes them their
    share of the grid, so ``mobattn fleet`` shows them rather than hiding them."""
    present = {m.kind for m in fleet.values()}
    gone: dict[str, Machine] = {}
    for row in rows:
        if not (row.details or {}).get("fleet") or kind_of(row.environment) in present:
            continue
        present.add(kind_of(row.environment))
        gone[f"absent:{kind_name(row.environment)}"] = Machine("", ABSENT, ABSENT, dict(row.environment))
    return gone
