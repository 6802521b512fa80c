"""Sweeps across machines on Dask distributed: the driver of ``sweep --cluster`` and
``mobattn fleet`` (the node side is :mod:`.fleet_node`, the plan :mod:`.fleet_plan`).

Dask carries configurations to machines and rows back; it never measures. The driver
(:func:`run_on_cluster`) keeps at most one configuration in flight per machine, starts
the longest first, and alone appends rows to the results file, with the same locked,
fsynced append as a local sweep: no shared filesystem.

Nothing on the fleet waits on Dask's patience. Who is in the fleet is asked of the
scheduler itself every REFRESH_S (never Dask's cached copy, which its periodic refresh
rewrites, sometimes without workers). A configuration whose machine leaves goes back
to the head of its kind's queue; lost twice, it becomes an ``error`` row naming the
machines (a rerun retries it). A configuration still running past its own deadline (its
timeout plus a margin: a stopped or wedged node) becomes a ``timeout`` row naming the
machine, which gets no more work in this sweep. A scheduler that stops answering ends
the sweep in one line (exit 1): the running configurations become ``error`` rows, the
rows so far are kept, and a rerun resumes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobattn.errors import MobattnError, RunFailedError, warn
from mobattn.parsing import check_name

from .base_row import base_row
from .config import BenchConfig
from .fleet_node import SLOT, measure_on_node, node_facts, require_distributed, scheduler_options
from .fleet_plan import Job, Machine, plan
from .results import append_row, read_rows
from .row import Row

LOSSES_ALLOWED = 2  # a configuration whose machine is lost this often becomes an error row
REFRESH_S = 0.5  # how often the driver asks the scheduler which machines are there
SCHEDULER_TIMEOUT_S = 20.0  # a scheduler silent this long has stopped answering
# A configuration's deadline on the fleet: its own timeout (export, load and timing) plus
# the node's worker start, first-run machine facts and the transfers.
DEADLINE_MARGIN_S, DEADLINE_MARGIN_FRACTION = 20.0, 0.25
# How long queued work waits for a machine of its kind when none is left
ORPHAN_WAIT_S = 60.0

OnEvent = Callable[[str, BenchConfig, Machine, "Row | None"], None]  # start, row, lost, stalled


class SchedulerLostError(RunFailedError):
    """The fleet's scheduler stopped answering mid-sweep."""


def deadline_s(config: BenchConfig) -> float:
    """Seconds a configuration may run on a node before the driver gives up on it."""
    return config.timeout_s * (1 + DEADLINE_MARGIN_FRACTION) + DEADLINE_MARGIN_S


def connect(address: str, timeout_s: float = 10.0):
    require_distributed()
    from distributed import Client

    # the driver says in one line what went wrong; Dask's own log lines would split it
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    options = scheduler_options(address, "address", timeout_s)
    try:
        return Client(**options, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise MobattnError(f"cannot reach the fleet's scheduler at {address}: {exc}") from None


def machines(client, known: dict[str, Machine] | None = None) -> dict[str, Machine]:
    """The nodes now in the fleet, by worker address, as the scheduler itself says
    (workers without a mobattn slot are someone else's and are left alone); only nodes
    not in ``known`` are asked their facts. A node whose name is not a clean short line
    is left out with a warning (it would split one-line errors and headings)."""
    known = known or {}
    workers = _workers_now(client)
    ours = [a for a, w in workers.items() if (w.get("resources") or {}).get(SLOT)]
    found = {a: known[a] for a in ours if a in known}
    new = [a for a in ours if a not in known]
    if new:
        for address, fact in client.run(node_facts, workers=new, on_error="return").items():
            machine = _machine_of(address, fact)
            if machine is not None:
                found[address] = machine
    return found


def _workers_now(client) -> dict:
    """The scheduler's answer to "which workers are there", asked now (Dask's
    ``scheduler_info()`` may return a cached copy without workers)."""
    try:
        info = client.sync(client.scheduler.identity, n_workers=-1, callback_timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise SchedulerLostError(
            f"the fleet's scheduler stopped answering ({type(exc).__name__}); "
            "the rows so far are kept, and rerunning the same command resumes"
        ) from None
    workers = info.get("workers") if isinstance(info, dict) else None
    return workers if isinstance(workers, dict) else {}


def _machine_of(address: str, fact) -> Machine | None:
    if not isinstance(fact, dict):
        return None
    try:
        node = check_name(fact.get("node"), "a node's id")
        if fact["environment"].get("node_label") is not None:
            check_name(fact["environment"]["node_label"], "a node's label")
    except (MobattnError, KeyError, AttributeError) as exc:
        warn(f"the node at {address} is left out: {exc}")
        return None
    return Machine(address, node, str(fact.get("host"))[:64], fact["environment"])


@dataclass
class Flight:
    """A configuration running on a machine, with the time the driver gives up on it."""

    machine: Machine
    job: Job
    start: float  # wall clock, for the row's provenance
    deadline: float  # monotonic


@dataclass
class Dispatch:
    """The driver's state over one sweep: the machines, the queues, what is in flight."""

    client: object
    results: Path | None
    kinds: Sequence[str]
    on_event: OnEvent | None
    cache: bool
    fleet: dict[str, Machine] = field(default_factory=dict)
    queues: dict = field(default_factory=dict)
    in_flight: dict = field(default_factory=dict)  # future -> Flight
    stalled: set = field(default_factory=set)  # machines past a deadline: no more work
    rows: list = field(default_factory=list)
    orphaned_since: float | None = None

    def said(self, event: str, job: Job, machine: Machine, row: Row | None = None) -> None:
        if self.on_event:
            self.on_event(event, job.config, machine, row)

    def keep(self, row: Row) -> None:
        self.rows.append(row)
        if self.results is not None:
            append_row(self.results, row)

    def submit(self) -> None:
        busy = {flight.machine.address for flight in self.in_flight.values()}
        for machine in self.fleet.values():
            if machine.address in busy or machine.address in self.stalled:
                continue
            job = _next_job(self.queues, machine)
            if job is None:
                continue
            future = self.client.submit(
                measure_on_node,
                asdict(job.config),
                self.cache,
                workers=[machine.address],
                allow_other_workers=False,
                resources={SLOT: 1},
                pure=False,
                key=f"mobattn-{job.config.label()}-{time.time_ns()}",
            )
            deadline = time.monotonic() + deadline_s(job.config)
            self.in_flight[future] = Flight(machine, job, time.time(), deadline)
            self.said("start", job, machine)

    def collect(self) -> bool:
        """Rows of finished configurations; whether any finished."""
        finished = [future for future in self.in_flight if future.done()]
        if any(future.status != "finished" for future in finished):
            _workers_now(self.client)  # a future Dask gave up on: is the scheduler still there?
        for future in finished:
            flight = self.in_flight.pop(future)
            row = _row_of(future, flight)
            self.keep(row)
            self.said("row", flight.job, flight.machine, row)
        return bool(finished)

    def overdue(self) -> None:
        """Configurations past their deadline: a ``timeout`` row naming the machine,
        which gets no more work (a stopped node holds its task until Dask drops it)."""
        now = time.monotonic()
        for future, flight in list(self.in_flight.items()):
            if now < flight.deadline:
                continue
            del self.in_flight[future]
            future.cancel()
            self.stalled.add(flight.machine.address)
            waited = deadline_s(flight.job.config)
            why = f"no answer from {flight.machine.node} within {waited:.0f} s (its deadline on the fleet)"
            row = _failed_row(flight, why)
            row.status = "timeout"
            self.keep(row)
            self.said("stalled", flight.job, flight.machine, row)

    def lost(self, current: dict[str, Machine]) -> None:
        """Configurations whose machine left: back to the head of their queue, or after
        LOSSES_ALLOWED losses an error row naming the machines."""
        for future, flight in list(self.in_flight.items()):
            if flight.machine.address in current:
                continue
            del self.in_flight[future]
            future.cancel()
            job = flight.job
            job.losses.append(flight.machine.node)
            self.said("lost", job, flight.machine)
            if len(job.losses) >= LOSSES_ALLOWED:
                reason = f"its machine was lost {len(job.losses)} times ({', '.join(job.losses)})"
                self.keep(_failed_row(flight, reason))
            else:
                self.queues.setdefault(job.kind, []).insert(0, job)

    def orphans(self) -> int:
        """Queued configurations no usable machine can take (their kind has none left)."""
        usable = {m.kind for a, m in self.fleet.items() if a not in self.stalled}

        def takes(kind) -> bool:
            return bool(usable) if kind is None else kind in usable

        return sum(len(jobs) for kind, jobs in self.queues.items() if jobs and not takes(kind))

    def abandon(self, why: str) -> None:
        """The sweep cannot go on: running configurations become ``error`` rows."""
        for future, flight in list(self.in_flight.items()):
            future.cancel()
            self.keep(_failed_row(flight, why))
        self.in_flight.clear()


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
    run = Dispatch(client, results, kinds, on_event, cache)
    interrupted = _Interrupts()
    try:
        everyone = machines(client)
        run.fleet = _chosen(everyone, kinds)
        if not everyone:
            hint = f"start one with `mobattn node {address}`"
            raise MobattnError(f"no mobattn node has joined {address}: {hint}")
        if not run.fleet:
            there = ", ".join(sorted({m.kind_name for m in everyone.values()}))
            raise MobattnError(
                f"--machines {','.join(kinds)}: no such kind in the fleet at {address} ({there})"
            )
        done = read_rows(results) if results else []
        run.queues = plan(configs, run.fleet, done, mode, mix)
        asked = 0.0
        while any(run.queues.values()) or run.in_flight:
            interrupted.raise_if_set()
            if time.monotonic() - asked >= REFRESH_S:  # who is in the fleet: a scheduler call
                asked = time.monotonic()
                _refresh(run, configs, done, mode)
            run.overdue()
            run.submit()
            if not run.collect():
                time.sleep(poll_s)
            if not run.in_flight and _waited_out(run):
                break
        return run.rows
    except SchedulerLostError as exc:
        run.abandon("the fleet's scheduler stopped answering while it ran")
        raise SchedulerLostError(f"{exc} ({len(run.rows)} rows written this run)") from None
    finally:
        interrupted.restore()
        for future in run.in_flight:
            future.cancel()
        _close(client)


class _Interrupts:
    """Ctrl-C taken at the driver's loop, not wherever the signal lands: Python drops a
    KeyboardInterrupt raised inside a finalizer (a Dask future's ``__del__``), and the
    sweep then ran on to the end. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.seen = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        if self.seen:
            raise KeyboardInterrupt
        self.seen = True

    def raise_if_set(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _refresh(run: Dispatch, configs, done, mode) -> None:
    current = _chosen(machines(run.client, run.fleet), run.kinds)
    run.lost(current)
    if mode == "compare":  # a machine of a new kind joined mid-sweep: the grid runs on it too
        for machine in current.values():
            if machine.kind not in run.queues:
                run.queues.update(plan(configs, {machine.address: machine}, done, mode))
    run.fleet = current


def _waited_out(run: Dispatch) -> bool:
    """Queued work with no usable machine of its kind waits ORPHAN_WAIT_S for one to
    (re)join, then the sweep ends with what it has (exit 1; a rerun resumes it)."""
    left = run.orphans()
    if not left:
        run.orphaned_since = None
        return False
    if run.orphaned_since is None:
        run.orphaned_since = time.monotonic()
        warn(
            f"{left} configurations wait for a machine of their kind (none is left); "
            f"waiting {ORPHAN_WAIT_S:.0f} s for one"
        )
        return False
    if time.monotonic() - run.orphaned_since < ORPHAN_WAIT_S:
        return False
    raise RunFailedError(
        f"{left} configurations were not run: no machine of their kind answered for {ORPHAN_WAIT_S:.0f} s "
        f"({len(run.rows)} rows written this run; rerunning the same command resumes)"
    )


def _close(client) -> None:
    """Close the client without waiting on a scheduler that is gone."""
    try:
        client.close(timeout=5)
    except Exception:  # noqa: BLE001 - closing a client whose scheduler died can raise anything
        pass


def _chosen(fleet: dict[str, Machine], kinds: Sequence[str]) -> dict[str, Machine]:
    if not kinds:
        return fleet
    return {a: m for a, m in fleet.items() if m.kind_name in kinds}


def _next_job(queues: dict, machine: Machine) -> Job | None:
    for key in (machine.kind, None):
        if queues.get(key):
            return queues[key].pop(0)
    return None


def _row_of(future, flight: Flight) -> Row:
    if future.status != "finished":
        cause = future.exception() if future.status == "error" else None
        cause = cause or f"Dask {future.status} it"
        why = f"the fleet could not run it on {flight.machine.node}: {cause}"
        return _failed_row(flight, why)
    try:
        row = Row.from_dict(future.result())
    except MobattnError as exc:
        return _failed_row(flight, f"{flight.machine.node} sent a row that is not valid: {exc}")
    row.details = {**(row.details or {}), "fleet": _provenance(flight)}
    return row


def _failed_row(flight: Flight, reason: str) -> Row:
    """An ``error`` row in the machine's environment (so a rerun on its kind retries it)."""
    row = base_row(flight.job.config)
    row.environment, row.reason = flight.machine.environment, reason
    row.details = {"fleet": _provenance(flight)}
    return row


def _provenance(flight: Flight) -> dict:
    machine = flight.machine
    return {"node": machine.node, "host": machine.host, "start": flight.start, "end": time.time()}
