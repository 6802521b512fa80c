"""The processes a configuration's phases run in: each phase in a process of its own,
killed as a group on timeout or Ctrl-C, dying with its parent, in the run's private
folder; a failure in one is that configuration's row, never the sweep's end.

Two kinds, one interface (``run(phase, request, config, folder, deadline) -> answer``):

- :class:`FreshWorkers`: a new interpreter per phase, ``python -I -m
  mobattn.bench.worker PHASE`` (isolated mode: the user's working directory and PYTHON*
  variables stay off ``sys.path``). Each pays its imports (seconds).
- :class:`WarmWorkers`: one fork of the warm template (:mod:`.forkserver`) per phase:
  the same isolation, without the imports. The default on Linux; ``MOBATTN_WORKERS=fresh``
  (or ``measure(..., workers="fresh")``) chooses the other.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mobattn.environment import usable_memory_mib
from mobattn.errors import MobattnError, signal_name
from mobattn.settings import prestart_setting, workers_setting

from . import forkserver
from .base_row import base_row
from .config import BenchConfig
from .row import Row

WORKER_KINDS = ("warm", "fresh")
TEMPLATE_START_S = 300.0  # the template's imports, once per sweep (a cold disk is slow)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WorkerFailedError(Exception):
    """A worker phase failed: ``row`` is what the configuration records."""

    def __init__(self, row: Row):
        super().__init__(row.reason)
        self.row = row


def killed_row(config: BenchConfig, signum: int, maxrss_mb: float) -> Row:
    """A worker ended by a signal: out of memory only if it had grown near the limit.
    ``maxrss_mb`` is the largest child's peak so far, an upper bound for this one, so a
    small worker killed by a user is never taken for an out-of-memory kill."""
    row = base_row(config)
    limit = config.memory_limit_mb or usable_memory_mib() / 4
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


class FreshWorkers:
    """A new interpreter per worker phase: ``python -I -m mobattn.bench.worker PHASE``."""

    kind = "fresh"

    def run(self, phase: str, request: dict, config: BenchConfig, folder: Path, deadline: float) -> dict:
        """One worker phase's JSON answer, or raise WorkerFailedError with the row to record."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerFailedError(timeout_row(config))
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
            out, err = proc.communicate(json.dumps(request), timeout=remaining)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            raise WorkerFailedError(timeout_row(config)) from None
        except BaseException:  # Ctrl-C: take the worker down with us
            _kill_group(proc.pid)
            proc.wait()
            raise
        answer = None
        for line in reversed(out.strip().splitlines()):
            if line.startswith("{"):
                answer = json.loads(line)
                break
        return _answer_or_row(config, answer, proc.returncode, _child_maxrss_mb(), err)

    def close(self) -> None:
        pass


def _answer_or_row(
    config: BenchConfig, answer: dict | None, returncode: int, maxrss_mb: float, err: str
) -> dict:
    """A worker's answer; its failure row (the worker's own, or one for how it ended) raised."""
    if answer is not None:
        if "row" in answer:
            raise WorkerFailedError(Row.from_dict(answer["row"]))
        return answer
    if returncode < 0:
        raise WorkerFailedError(killed_row(config, -returncode, maxrss_mb))
    row = base_row(config)
    tail = (err.strip().splitlines() or ["no output"])[-1][:300]
    row.reason = f"worker exited with {returncode}: {tail}"
    raise WorkerFailedError(row)


def _kill_group(pid: int) -> None:
    """SIGKILL the worker and every process it started (they share its process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _child_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def timeout_row(config: BenchConfig) -> Row:
    row = base_row(config)
    row.status, row.reason = "timeout", f"no result within {config.timeout_s:g} s"
    return row


class WarmWorkers:
    """Children of the warm template: a fresh process per phase, forked from one that
    has imported torch, mobattn and the runtimes (see :mod:`.forkserver`)."""

    kind = "warm"
    dead = False  # the template ended under a phase: the pool starts a new one

    def __init__(self, targets=(), wait: bool = True):
        self.targets = tuple(targets)
        self.folder = Path(tempfile.mkdtemp(prefix="mobattn-template-"))
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "mobattn.bench.forkserver", *forkserver.preload_for(targets)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
            env={**os.environ, **forkserver.QUIET_POOLS, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,
        )
        self._buffer = b""
        self._ready = self._warmed = False
        if wait:
            self.wait_ready()

    def warm_up(self) -> None:
        """Ask the template to pay first uses once (:func:`.forkserver._warm_up`) before it
        forks a sweep's children; a template that then runs threads is not used again."""
        if self._warmed:
            return
        self.wait_ready()
        self._send({"warm_up": True, "modules": forkserver.export_preload_for(self.targets)})
        answer = self._receive(TEMPLATE_START_S)
        self._warmed = True
        if not answer or not answer.get("warmed"):
            self.dead = True  # the pool starts a fresh (unwarmed) template instead

    def wait_ready(self) -> None:
        """The template's hello, once: it has imported what it preloads and may fork."""
        if self._ready:
            return
        hello = self._receive(TEMPLATE_START_S)
        if not hello or not hello.get("ready"):
            self.close()
            why = (hello or {}).get("refused", "it did not start")
            raise MobattnError(f"the warm worker template is unusable: {why}")
        self._ready = True

    def run(self, phase: str, request: dict, config: BenchConfig, folder: Path, deadline: float) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerFailedError(timeout_row(config))
        for stale in (forkserver.ANSWER, forkserver.LOG):  # an earlier phase's answer is not this one's
            (folder / stale).unlink(missing_ok=True)
        self._send({"phase": phase, "request": request, "folder": str(folder)})
        started = self._receive(60.0)
        if not started:
            raise WorkerFailedError(self._broken(config))
        pid = started["pid"]
        try:
            ended = self._receive(remaining)
        except BaseException:  # Ctrl-C: take the worker down with us
            _kill_group(pid)
            self._receive(60.0)
            raise
        if ended is None:
            if self.proc.poll() is not None:
                raise WorkerFailedError(self._broken(config))
            _kill_group(pid)
            self._receive(60.0)
            raise WorkerFailedError(timeout_row(config))
        status = ended["status"]
        returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        answer_file = folder / forkserver.ANSWER
        answer = json.loads(answer_file.read_text()) if answer_file.exists() else None
        log = folder / forkserver.LOG
        err = log.read_text(errors="replace") if log.exists() else ""
        return _answer_or_row(config, answer, returncode, ended["maxrss_kb"] / 1024, err)

    def close(self) -> None:
        _kill_group(self.proc.pid)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    # ----- the template's pipe ------------------------------------------------------------
    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the template is gone: _receive says so

    def _receive(self, timeout: float) -> dict | None:
        """The template's next message; None when it is gone or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _broken(self, config: BenchConfig) -> Row:
        row = base_row(config)
        row.reason = "the warm worker template ended unexpectedly (the next configuration starts a new one)"
        self.dead = True
        return row


def workers_kind(requested: str | None = None) -> str:
    """``warm`` where forking is safe and cheap (Linux), else ``fresh``; the
    ``MOBATTN_WORKERS`` variable or the caller's choice wins."""
    kind = requested or workers_setting() or ("warm" if sys.platform == "linux" else "fresh")
    if kind not in WORKER_KINDS:
        raise MobattnError(f"MOBATTN_WORKERS must be warm or fresh, got {kind!r}")
    return kind


class WorkerPool:
    """The workers of one sweep: the warm template started on first use (and again if it
    dies), or fresh interpreters where the template cannot run."""

    def __init__(self, kind: str | None = None, targets=(), warm_up: bool = False):
        self.kind = workers_kind(kind)
        self.warm_up = warm_up  # many configurations to come: the template warms up first
        self.targets = tuple(sorted(set(targets) - {None}))  # the export targets it times: what to preload
        self._warm: WarmWorkers | None = None
        self.note: str | None = None  # why warm workers were not used

    def get(self):
        if self.kind == "fresh":
            return FreshWorkers()
        if self._warm is not None and (self._warm.dead or self._warm.proc.poll() is not None):
            self._warm.close()
            self._warm = None
        if self._warm is None:
            try:
                self._warm = _PRESTARTED.pop(self.targets, None) or WarmWorkers(self.targets, wait=False)
                self._warm.wait_ready()
                if self.warm_up:
                    self._warm.warm_up()
                if self._warm.dead:  # warming up started a thread: a template that does not warm up
                    self._warm.close()
                    self.warm_up, self._warm = False, WarmWorkers(self.targets)
            except MobattnError as exc:
                self._warm = None
                self.kind, self.note = "fresh", str(exc)
                return FreshWorkers()
        return self._warm

    def close(self) -> None:
        if self._warm is not None:
            self._warm.close()
            self._warm = None


# Templates started ahead of their pool (:func:`prestart`), by the targets they preload.
_PRESTARTED: dict[tuple, WarmWorkers] = {}


def prestart(targets=()) -> None:
    """Start the warm template now, so its imports (torch's seconds among them) run while
    the command plans, which imports torch too: the two overlap instead of following one
    another. The first pool of these targets adopts it; one never adopted is stopped at
    exit (and dies with this process in any case)."""
    targets = tuple(sorted(set(targets) - {None}))
    if workers_kind() != "warm" or not prestart_setting() or targets in _PRESTARTED:
        return
    _PRESTARTED[targets] = WarmWorkers(targets, wait=False)
    if len(_PRESTARTED) == 1:
        atexit.register(stop_prestarted)


def stop_prestarted() -> None:
    """Stop every template started ahead and not adopted by a pool."""
    while _PRESTARTED:
        _PRESTARTED.popitem()[1].close()


@contextlib.contextmanager
def worker_pool(kind: str | None = None, targets=(), warm_up: bool = False) -> Iterator[WorkerPool]:
    pool = WorkerPool(kind, targets, warm_up)
    try:
        yield pool
    finally:
        pool.close()
