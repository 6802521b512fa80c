"""Run configurations, each in fresh subprocesses under one time limit by default.

Every step of a configuration runs inside the limits: an artifact backend's export
runs in a first worker, the measurement in a second (so the export's memory is not the
runtime's), both within ``timeout_s`` in all and ``memory_limit_mb`` each. A failure in
either is that configuration's row (``timeout``, ``oom``, ``error``), never the sweep's end.

Workers start as ``python -I -m mobattn.bench.worker`` in a private temporary folder:
isolated mode keeps the user's working directory (and PYTHON* variables) off
``sys.path``, so running a benchmark inside an untrusted checkout executes none of its
files. On Linux a worker dies with its parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from mobattn.errors import signal_name
from mobattn.exporters.files import alive

from .backends import Artifact, needs_export
from .config import BenchConfig
from .row import Row
from .worker import base_row, run_config

TMP_PREFIX = "mobattn-bench-"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


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


class _WorkerFailedError(Exception):
    def __init__(self, row: Row):
        super().__init__(row.reason)
        self.row = row


def _memory_total_mb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) / 1024
    return float("inf")


def _killed_row(config: BenchConfig, signum: int, maxrss_mb: float) -> Row:
    """A worker ended by a signal: out of memory only if it had grown near the limit.
    ``maxrss_mb`` is the largest child's peak so far, an upper bound for this one, so a
    small worker killed by a user is never taken for an out-of-memory kill."""
    row = base_row(config)
    limit = config.memory_limit_mb or _memory_total_mb() / 4
    crash = signum in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT)
    if signum == signal.SIGKILL and maxrss_mb >= 0.9 * limit:
        row.status, row.reason = "oom", f"worker killed by the kernel at {maxrss_mb:.0f} MiB (out of memory)"
    elif crash and config.memory_limit_mb:
        # native code that does not check a failed allocation crashes under an address-space limit
        name = signal_name(signum)
        row.status = "oom"
        row.reason = f"worker crashed ({name}) under its {config.memory_limit_mb} MiB memory limit"
    else:
        name = signal_name(signum)
        row.reason = f"worker killed by {name} at {maxrss_mb:.0f} MiB (not by a mobattn limit)"
    return row


def _spawn(phase: str, config: BenchConfig, folder: Path, deadline: float, artifact=None) -> dict:
    """Run one worker phase; its JSON answer, or raise _WorkerFailedError with the row to record."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _WorkerFailedError(_timeout_row(config))
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "mobattn.bench.worker", phase],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        start_new_session=True,  # its own process group: a kill takes anything it started too
    )
    try:
        request = {
            "config": asdict(config),
            "artifact": artifact.to_dict() if artifact else None,
        }
        out, err = proc.communicate(json.dumps(request), timeout=remaining)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise _WorkerFailedError(_timeout_row(config)) from None
    except BaseException:  # Ctrl-C: take the worker down with us
        _kill_group(proc)
        proc.wait()
        raise
    maxrss_mb = _child_maxrss_mb()
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            answer = json.loads(line)
            if "row" in answer:
                raise _WorkerFailedError(Row.from_dict(answer["row"]))
            return answer
    if proc.returncode < 0:
        raise _WorkerFailedError(_killed_row(config, -proc.returncode, maxrss_mb))
    row = base_row(config)
    tail = (err.strip().splitlines() or ["no output"])[-1][:300]
    row.reason = f"worker exited with {proc.returncode}: {tail}"
    raise _WorkerFailedError(row)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and every process it started (they share its process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def remove_run_folder(folder: Path) -> None:
    """Remove a run's folder; a file a dying process was still writing can make the first
    pass find it not empty, so it tries again briefly rather than leave it behind."""
    for _ in range(20):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.05)


def _child_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _timeout_row(config: BenchConfig) -> Row:
    row = base_row(config)
    row.status, row.reason = "timeout", f"no result within {config.timeout_s:g} s"
    return row


def run_isolated(config: BenchConfig) -> Row:
    """Measure ``config`` in fresh workers: export (artifact backends), then measure."""
    deadline = time.monotonic() + config.timeout_s
    folder = run_folder()
    try:
        artifact = None
        if needs_export(config):
            artifact = Artifact(**_spawn("export", config, folder, deadline)["artifact"])
        return Row.from_dict(_spawn("measure", config, folder, deadline, artifact)["measured"])
    except _WorkerFailedError as failed:
        return failed.row
    finally:
        remove_run_folder(folder)


def run(config: BenchConfig, isolate: bool = True) -> Row:
    return run_isolated(config) if isolate else run_config(config)
