"""Run configurations, each in fresh worker processes under one time limit by default.

Every step of a configuration runs inside the limits: an artifact backend's export
runs in a first worker, the measurement in a second (so the export's memory is not the
runtime's), both within ``timeout_s`` in all and ``memory_limit_mb`` each. A failure in
either is that configuration's row (``timeout``, ``oom``, ``error``), never the sweep's end.
An export the artifact cache holds (:mod:`.cache`) is not repeated.

Workers (:mod:`.workers`) run in a private temporary folder with the user's working
directory off ``sys.path``, so running a benchmark inside an untrusted checkout executes
none of its files; on Linux they die with their parent.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from mobattn.environment import environment
from mobattn.errors import MobattnError, warn
from mobattn.exporters.files import alive

from .backend_checks import Artifact, needs_export
from .cache import ArtifactCache, cache_key, key_fields
from .config import BenchConfig
from .row import Row
from .workers import FreshWorkers, WorkerFailedError

TMP_PREFIX = "mobattn-bench-"


MARKER = ".mobattn-bench"  # written into every run folder: what clean-up may remove


def run_folder() -> Path:
    """A private folder for one configuration's workers, named after this process and
    marked as mobattn's own."""
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    (folder / MARKER).write_text(f"{os.getpid()}\n")
    return folder


def clean_stale_folders() -> None:
    """Remove the run folders of runs whose process no longer exists: only folders this
    user owns (not through a link) that carry mobattn's marker. A shared temporary
    directory (a cluster node's) keeps everything else, whoever made it."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        pid = folder.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)) and _ours(folder):
            shutil.rmtree(folder, ignore_errors=True)


def _ours(folder: Path) -> bool:
    try:
        info = folder.lstat()
        marker = (folder / MARKER).lstat()
    except OSError:
        return False
    owner = os.getuid()
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == owner
        and stat.S_ISREG(marker.st_mode)
        and marker.st_uid == owner
    )


def remove_run_folder(folder: Path) -> None:
    """Remove a run's folder; a file a dying process was still writing can make the first
    pass find it not empty, so it tries again briefly rather than leave it behind."""
    for _ in range(20):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.05)


def run_isolated(config: BenchConfig, workers=None, cache: ArtifactCache | None = None) -> Row:
    """Measure ``config`` in fresh worker processes (``workers``: a new interpreter per
    phase by default, or children of the warm template, :mod:`.forkserver`): export (for
    artifact backends, unless ``cache`` has the file), then measure. The row says where
    the wall time went (``phases_s``)."""
    workers = workers or FreshWorkers()
    start = time.monotonic()
    deadline = start + config.timeout_s
    folder = run_folder()
    phases = {"start": 0.0}
    artifact = None
    try:
        if needs_export(config):
            artifact = _artifact(config, folder, deadline, workers, cache, phases)
        request = {"config": asdict(config), "artifact": artifact.to_dict() if artifact else None}
        row = Row.from_dict(_phase(workers, "measure", request, config, folder, deadline, phases)["measured"])
    except WorkerFailedError as failed:
        row = failed.row
    finally:
        remove_run_folder(folder)
    if artifact is not None and artifact.cached and _failed_check(row):
        cache.remove(cache_key(config))  # exported again by the next run
    row.phases_s = {**phases, **(row.phases_s or {})}
    row.phases_s["total"] = time.monotonic() - start
    row.details.setdefault("workers", workers.kind)
    return row


def _phase(
    workers, phase: str, request: dict, config: BenchConfig, folder: Path, deadline: float, phases: dict
) -> dict:
    """One worker phase; its process start (and imports) added to ``phases["start"]``."""
    clock = time.monotonic()
    request = {**request, "environment": environment()}
    answer = workers.run(phase, request, config, folder, deadline)
    phases["start"] += max(0.0, time.monotonic() - clock - answer.get("worker_s", 0.0))
    return answer


def _artifact(config, folder, deadline, workers, cache, phases) -> Artifact:
    """The file to time: from the artifact cache, or exported by a worker (and cached)."""
    key = found = None
    if cache is not None:
        clock = time.monotonic()
        key = cache_key(config)
        found = cache.lookup(key, folder)
        phases["cache"] = time.monotonic() - clock
    if found is not None:
        return Artifact(**{**found, "phases_s": {}})
    request = {"config": asdict(config), "artifact": None}
    exported = _phase(workers, "export", request, config, folder, deadline, phases)["artifact"]
    if cache is not None:
        clock = time.monotonic()
        exported = _kept(cache, key, exported, config)
        phases["cache"] += time.monotonic() - clock
    return Artifact(**exported)


def _kept(cache: ArtifactCache, key: str, exported: dict, config: BenchConfig) -> dict:
    """The export stored in the cache; a cache that cannot take it (a full disk) costs
    the next run an export, never this configuration: it is measured uncached, and the
    cache's trouble is said once per process."""
    try:
        return cache.store(key, exported, key_fields(config))
    except (OSError, MobattnError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if cache.root not in _CACHE_TROUBLE_SAID:
            _CACHE_TROUBLE_SAID.add(cache.root)
            warn(f"the artifact cache at {cache.root} cannot keep exports ({why}); measuring without caching")
        return exported


_CACHE_TROUBLE_SAID: set = set()


def _failed_check(row: Row) -> bool:
    """The row found its cached file unlike its subject (:func:`.backends.check_cached`)."""
    check = (row.details or {}).get("cache_check")
    return isinstance(check, dict) and check.get("passed") is False


def run(config: BenchConfig, isolate: bool = True, workers=None, cache: ArtifactCache | None = None) -> Row:
    if isolate:
        return run_isolated(config, workers, cache)
    from .worker import run_config  # measured in this process: it imports torch now, not before

    return run_config(config)
