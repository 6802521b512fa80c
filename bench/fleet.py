"""Sweeps across machines on Dask distributed: ``mobattn node``, ``sweep --cluster``,
``mobattn fleet``.

Dask carries configurations to machines and rows back; it never measures. Each machine
runs one ``mobattn node`` (a Dask worker with one benchmark slot, named by the machine's
id, so a second node on one machine is refused), which hands each configuration to
:func:`mobattn.bench.api.measure` and so to mobattn's own isolated workers there. The
driver (:func:`run_on_cluster`) keeps at most one configuration in flight per machine,
starts the longest first, and alone appends rows to the results file, with the same
locked, fsynced append as a local sweep: no shared filesystem.

Machines whose rows would share an identity form a *kind*. ``compare`` (the default)
runs the whole grid once per kind, spread over that kind's machines; ``spread`` runs each
configuration once, and refuses machines of different kinds unless asked to mix them.
A configuration whose machine leaves goes back to the head of its kind's queue; lost
twice, it becomes an ``error`` row naming the machine (a rerun retries it).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobattn.environment import environment
from mobattn.errors import MobattnError

from .config import BACKENDS, BenchConfig
from .results import append_row, read_rows
from .row import ENV_KEYS, GPU_KEYS, Row
from .worker import base_row

SLOT = "mobattn_slot"  # the Dask resource a node offers once: one measurement at a time
MODES = ("compare", "spread")
# Thread caps an engine may set for its own tasks; a node never lets them reach the
# processes that measure (a 4-thread row must get 4 threads).
THREAD_CAPS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
LOSSES_ALLOWED = 2  # a configuration whose machine is lost this often becomes an error row
REFRESH_S = 0.5  # how often the driver asks the scheduler which machines are there


def require_distributed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise MobattnError(
            "the fleet needs Dask distributed, which is not installed: pip install 'mobattn[fleet]'"
        )


def is_scheduler_file(address: str) -> bool:
    """A scheduler file (which Dask waits for: in a Slurm job the scheduler may still be
    writing it) rather than an address such as tcp://10.0.0.1:8786."""
    return "://" not in address and (Path(address).is_file() or address.endswith(".json"))


def scheduler_options(address: str, address_key: str, timeout_s: float) -> dict:
    """Dask's keyword for where the scheduler is (``scheduler_file`` or ``address_key``),
    after waiting up to ``timeout_s`` for a scheduler file to appear."""
    wait_for_scheduler_file(address, timeout_s)
    return {"scheduler_file": address} if is_scheduler_file(address) else {address_key: address}


def wait_for_scheduler_file(address: str, timeout_s: float) -> None:
    """Dask waits for a scheduler file forever; mobattn for ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while is_scheduler_file(address) and not Path(address).is_file():
        if time.monotonic() > deadline:
            raise MobattnError(
                f"no scheduler file at {address} after {timeout_s:.0f} s (is the scheduler running?)"
            )
        time.sleep(0.2)


def node_id() -> str:
    """This machine's stable id: ``MOBATTN_NODE_ID``, else the host name and a digest of
    /etc/machine-id (the same across restarts, different for two machines of one name)."""
    if os.environ.get("MOBATTN_NODE_ID"):
        return os.environ["MOBATTN_NODE_ID"]
    host = socket.gethostname()
    try:
        with open("/etc/machine-id") as f:
            machine = f.read().strip()
    except OSError:
        machine = host
    return f"{host}-{hashlib.sha256(machine.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------- on a node


def node_facts() -> dict:
    """What the driver needs to know about a node: its id, host and environment."""
    return {"node": node_id(), "host": socket.gethostname(), "environment": environment()}


_measuring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobattn-measure")
_pools: dict = {}  # the node's warm worker pools, by the export targets they preload


def measure_on_node(config: dict, cache: bool = True) -> dict:
    """A Dask task: one configuration measured by mobattn's isolated workers on this
    machine, its row as a dict. The workers are started from one long-lived thread (a
    worker dies with the thread that started it, and Dask's threads come and go) and
    kept warm across the node's configurations."""
    return _measuring.submit(_measure_here, BenchConfig(**config), cache).result().to_dict()


def _measure_here(config: BenchConfig, cache: bool) -> Row:
    from .api import measure
    from .workers import WorkerPool

    targets = frozenset({BACKENDS[config.backend].target} - {None})
    if targets not in _pools:
        _pools[targets] = WorkerPool(None, targets)
    (row,) = measure([config], pool=_pools[targets], cache=cache)
    return row


def run_node(address: str, label: str | None = None, wait_s: float = 60.0) -> None:
    """``mobattn node ADDRESS``: this machine's worker, until stopped; it gives up after
    ``wait_s`` seconds without reaching the scheduler (at the start or later)."""
    require_distributed()
    import asyncio

    if label:
        os.environ["MOBATTN_NODE_LABEL"] = label
    options = scheduler_options(address, "scheduler_ip", wait_s)
    caps = {name: os.environ.get(name) for name in THREAD_CAPS}
    from distributed import Worker

    _restore(caps)

    async def serve() -> None:
        worker = Worker(
            **options,
            nthreads=1,
            resources={SLOT: 1},
            name=node_id(),
            validate=False,
            silence_logs=50,
            death_timeout=wait_s,
        )
        try:
            await worker
        except (RuntimeError, ValueError, OSError, TimeoutError) as exc:
            text = " ".join(str(e) for e in _causes(exc))
            if "name taken" in text:
                raise MobattnError(
                    f"a node named {node_id()} is already in this fleet: one node per machine "
                    "(set MOBATTN_NODE_ID to tell two machines apart)"
                ) from None
            raise MobattnError(f"cannot join the fleet at {address}: {_causes(exc)[-1]}") from None
        await worker.finished()

    asyncio.run(serve())


def _causes(exc: BaseException) -> list[BaseException]:
    """An exception and those it was raised from (Dask wraps a refusal in RuntimeError)."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _restore(caps: dict) -> None:
    for name, value in caps.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# ---------------------------------------------------------------- the driver

KIND_KEYS = ENV_KEYS + GPU_KEYS


def kind_of(env: dict) -> tuple:
    """Machines of one kind give rows of one identity: every environment key any row's
    identity reads (the backends' library versions included)."""
    keys = KIND_KEYS + tuple(sorted({k for b in BACKENDS.values() for k in b.env_keys}))
    return tuple((k, env.get(k)) for k in keys)


def kind_name(env: dict) -> str:
    """A short name for a kind: its label, else CPU, cores and GPU."""
    if env.get("node_label"):
        return env["node_label"]
    parts = [env.get("cpu") or "?", f"{env.get('cores')}c"] + ([env["gpu"]] if env.get("gpu") else [])
    return " ".join(parts)


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


def connect(address: str, timeout_s: float = 10.0):
    require_distributed()
    from distributed import Client

    options = scheduler_options(address, "address", timeout_s)
    try:
        return Client(**options, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise MobattnError(f"cannot reach the fleet's scheduler at {address}: {exc}") from None


def machines(client, known: dict[str, Machine] | None = None) -> dict[str, Machine]:
    """The nodes now in the fleet, by worker address (workers without a mobattn slot are
    someone else's and are left alone); only nodes not in ``known`` are asked their facts."""
    known = known or {}
    workers = client.scheduler_info(n_workers=-1)["workers"]
    ours = [a for a, w in workers.items() if w.get("resources", {}).get(SLOT)]
    found = {a: known[a] for a in ours if a in known}
    new = [a for a in ours if a not in known]
    if new:
        for address, fact in client.run(node_facts, workers=new, on_error="return").items():
            if isinstance(fact, dict):
                found[address] = Machine(address, fact["node"], fact["host"], fact["environment"])
    return found


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


OnEvent = Callable[[str, BenchConfig, Machine, "Row | None"], None]  # start, row, lost


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


def run_on_cluster(
    configs: Sequence[BenchConfig],
    address: str,
    results: Path | None = None,
    mode: str = "compare",
    kinds: Sequence[str] = (),
    mix: bool = False,
    on_event: OnEvent | None = None,
    poll_s: float = 0.05,
    cache: bool = True,
) -> list[Row]:
    """Measure ``configs`` on the fleet at ``address``; each row is appended to
    ``results`` by this process as it arrives. Rerunning the same command resumes.
    ``cache``: the nodes reuse their artifact caches (each machine its own)."""
    client = connect(address)
    in_flight: dict = {}
    try:
        everyone = machines(client)
        fleet = _chosen(everyone, kinds)
        if not everyone:
            hint = f"start one with `mobattn node {address}`"
            raise MobattnError(f"no mobattn node has joined {address}: {hint}")
        if not fleet:
            there = ", ".join(sorted({m.kind_name for m in everyone.values()}))
            raise MobattnError(
                f"--machines {','.join(kinds)}: no such kind in the fleet at {address} ({there})"
            )
        done = read_rows(results) if results else []
        queues = plan(configs, fleet, done, mode, mix)
        rows: list[Row] = []
        asked = 0.0
        while any(queues.values()) or in_flight:
            if time.monotonic() - asked >= REFRESH_S:  # who is in the fleet: a scheduler call
                asked = time.monotonic()
                current = _chosen(machines(client, fleet), kinds)
                _lost(in_flight, current, queues, rows, results, on_event)
                _joined(current, fleet, queues, configs, done, mode)
                fleet = current
            busy = {machine.address for machine, _, _ in in_flight.values()}
            for machine in fleet.values():
                job = None if machine.address in busy else _next_job(queues, machine)
                if job is not None:
                    future = client.submit(
                        measure_on_node,
                        asdict(job.config),
                        cache,
                        workers=[machine.address],
                        allow_other_workers=False,
                        resources={SLOT: 1},
                        pure=False,
                        key=f"mobattn-{job.config.label()}-{time.time_ns()}",
                    )
                    in_flight[future] = (machine, job, time.time())
                    if on_event:
                        on_event("start", job.config, machine, None)
            if not in_flight:
                time.sleep(poll_s)  # queued work whose kind has no machine now: wait for one
                continue
            finished = [future for future in in_flight if future.done()]
            if not finished:
                time.sleep(poll_s)
            for future in finished:
                machine, job, start = in_flight.pop(future)
                row = _row_of(future, job, machine, start)
                _keep(row, rows, results)
                if on_event:
                    on_event("row", job.config, machine, row)
        return rows
    finally:
        for future in in_flight:
            future.cancel()
        client.close()


def _chosen(fleet: dict[str, Machine], kinds: Sequence[str]) -> dict[str, Machine]:
    if not kinds:
        return fleet
    return {a: m for a, m in fleet.items() if m.kind_name in kinds}


def _next_job(queues: dict, machine: Machine) -> Job | None:
    for key in (machine.kind, None):
        if queues.get(key):
            return queues[key].pop(0)
    return None


def _joined(current, fleet, queues, configs, done, mode) -> None:
    """A machine of a new kind joined mid-sweep: in compare mode the grid runs on it too."""
    if mode != "compare":
        return
    for machine in current.values():
        if machine.kind not in queues:
            queues.update(plan(configs, {machine.address: machine}, done, mode))


def _lost(in_flight, current, queues, rows, results, on_event) -> None:
    """Configurations whose machine left: back to the head of their queue, or after
    LOSSES_ALLOWED losses an error row naming the machine."""
    for future, (machine, job, start) in list(in_flight.items()):
        if machine.address in current:
            continue
        del in_flight[future]
        future.cancel()
        job.losses.append(machine.node)
        if on_event:
            on_event("lost", job.config, machine, None)
        if len(job.losses) >= LOSSES_ALLOWED:
            reason = f"its machine was lost {len(job.losses)} times ({', '.join(job.losses)})"
            _keep(_failed_row(job, machine, start, reason), rows, results)
        else:
            queues.setdefault(job.kind, []).insert(0, job)


def _row_of(future, job: Job, machine: Machine, start: float) -> Row:
    if future.status != "finished":
        reason = f"the fleet could not run it on {machine.node}: {future.exception()}"
        return _failed_row(job, machine, start, reason)
    row = Row.from_dict(future.result())
    row.details = {**(row.details or {}), "fleet": _provenance(machine, start)}
    return row


def _failed_row(job: Job, machine: Machine, start: float, reason: str) -> Row:
    """An ``error`` row in the machine's environment (so a rerun on its kind retries it)."""
    row = base_row(job.config)
    row.environment, row.reason = machine.environment, reason
    row.details = {"fleet": _provenance(machine, start)}
    return row


def _provenance(machine: Machine, start: float) -> dict:
    return {"node": machine.node, "host": machine.host, "start": start, "end": time.time()}


def _keep(row: Row, rows: list[Row], results: Path | None) -> None:
    rows.append(row)
    if results is not None:
        append_row(results, row)


def remaining(configs: Sequence[BenchConfig], fleet: dict[str, Machine], results: Path | None) -> Counter:
    """What each kind still has to run (``mobattn fleet``)."""
    done = read_rows(results) if results else []
    queues = plan(configs, fleet, done, "compare")
    names = {m.kind: m.kind_name for m in fleet.values()}
    return Counter({names[kind]: len(jobs) for kind, jobs in queues.items()})
