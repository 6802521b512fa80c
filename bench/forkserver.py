"""Warm, still isolated workers: a template process that imports torch, mobattn and the
runtimes once per sweep, then forks one fresh child per worker phase.

Why: a fresh ``python -I -m mobattn.bench.worker`` pays its imports (torch about 1.5 s,
``executorch.runtime`` about 4 s on a 2-core machine) twice per configuration. A fork
of a process that has them imported pays nothing, and the child is still a new process:
its own address space, memory limit, process group and run folder, killed as a group on
timeout or Ctrl-C, exactly as a fresh worker.

Safe forking: forking after a thread pool (OpenMP, OpenBLAS, onnxruntime's) or CUDA was
initialised is unsafe, so the template imports only modules that start no thread
(onnxruntime starts one at import: its children import it themselves, in 0.1 s), runs
no operator, never touches CUDA, and counts its threads before it serves: with more than
one it refuses, and the runner falls back to fresh workers. OpenBLAS (numpy's) starts
its pool at import unless told one thread; the template is told so, and its children get
the user's setting back in their environment.

The template runs as ``python -I -m mobattn.bench.forkserver MODULE...`` in a private folder
(isolated mode: the user's working directory is not on ``sys.path``), dies with the
runner, and its children die with it.

Protocol (JSON lines): the runner writes ``{"phase", "request", "folder"}``; the
template forks, answers ``{"pid"}`` at once and ``{"pid", "status", "maxrss_kb"}`` when
the child has ended. The child writes its answer to ``answer.json`` in its folder and
its output to ``worker.log``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import traceback

# Imported by every template: they start no thread (checked at start-up).
PRELOAD = ("mobattn.bench.worker",)
# ... and by a template for configurations timing a target's files (where installed):
# what loading one needs, at start, and what exporting one needs, when a sweep's pool
# asks the template to warm up (a one-configuration command whose file is cached does not
# wait for the exporter's imports). onnxruntime is not here: it starts a thread.
PRELOAD_BY_TARGET = {
    "onnx": ("mobattn.exporters.to_onnx",),
    "executorch": (
        "mobattn.exporters.to_executorch",
        "executorch.runtime",  # the slowest import of all (seconds: it imports all of exir)
    ),
}
EXPORT_PRELOAD_BY_TARGET = {
    "onnx": ("onnxscript", "torch.onnx"),
    "executorch": ("executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner"),
}
QUIET_POOLS = {"OPENBLAS_NUM_THREADS": "1"}  # a pool that starts at import unless told not to
ANSWER = "answer.json"
LOG = "worker.log"


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def export_preload_for(targets) -> list[str]:
    """The modules a sweep's template imports when it warms up, to export ``targets``."""
    return [m for t in sorted(set(targets)) for m in EXPORT_PRELOAD_BY_TARGET.get(t, ())]


def preload_for(targets) -> list[str]:
    """The modules a template imports for a sweep timing ``targets``' artifacts."""
    return [*PRELOAD, *(m for t in sorted(set(targets)) for m in PRELOAD_BY_TARGET.get(t, ()))]


def _preload(modules: list[str]) -> None:
    for name in modules:
        with contextlib.suppress(ImportError):  # an optional runtime not installed
            importlib.import_module(name)


def _warm_up() -> None:
    """First uses that cost every child the same (a FLOP count's first run: most of a
    second), paid here once when the pool will fork many children (a one-configuration
    command does not wait for it: its figures usually come from the cache); they start no
    thread (checked after, and the template refuses to go on forking if they did)."""
    from mobattn.flops import warm_up

    warm_up()


def serve(modules: list[str]) -> None:
    """The template: preload ``modules``, check it is single-threaded, then fork on request."""
    user_pools = {k: os.environ.get(k) for k in QUIET_POOLS}
    with contextlib.redirect_stdout(sys.stderr):  # chatty imports must not break the protocol
        _preload(modules)
    threads = thread_count()
    if threads != 1:
        _send({"refused": f"the template runs {threads} threads after its imports; forking it is unsafe"})
        return
    _send({"ready": True})
    template = os.getpid()
    for line in sys.stdin:
        order = json.loads(line)
        if order.get("warm_up"):  # a sweep's template: first uses paid once, before any fork
            with contextlib.redirect_stdout(sys.stderr):
                _preload(order.get("modules", []))
                _warm_up()
            _send({"warmed": thread_count() == 1})
            continue
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its answer is checked by the runner
            _child(order, user_pools, template)
        _send({"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        _send({"pid": pid, "status": status, "maxrss_kb": usage.ru_maxrss})


def _send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _child(order: dict, user_pools: dict, template: int) -> None:  # pragma: no cover - the fork
    code = 1
    try:
        os.setsid()  # its own process group: the runner kills it and anything it starts
        _die_with(template)
        folder = order["folder"]
        os.chdir(folder)
        log = os.open(os.path.join(folder, LOG), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for key, value in user_pools.items():  # the user's thread settings, not the template's
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from mobattn.bench.worker import answer

        result = answer(order["phase"], order["request"])
        tmp = os.path.join(folder, ANSWER + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(result, default=str))
        os.rename(tmp, os.path.join(folder, ANSWER))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _die_with(parent: int) -> None:  # pragma: no cover - runs in the fork
    if sys.platform == "linux":
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the template died before the line above
            os._exit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when the template ends
    serve(sys.argv[1:] or list(PRELOAD))
