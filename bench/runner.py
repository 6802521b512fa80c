"""Run configurations, each in a fresh subprocess with a time limit by default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from .backends import materialize
from .config import BenchConfig
from .worker import base_row, classify_failure, run_config


def run_isolated(config: BenchConfig) -> dict:
    """Measure ``config`` in a fresh ``python -m mobattn.bench.worker``.

    A run past ``config.timeout_s`` is killed and recorded as ``timeout``; a worker
    killed by the kernel (SIGKILL, the OOM killer) as ``oom``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        exported = materialize(config)  # in this process, so the worker only loads it
    except Exception as exc:  # noqa: BLE001  (an export failure is this row's result)
        row = base_row(config)
        row["status"], row["reason"] = classify_failure(exc)
        return row
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mobattn.bench.worker"],
            input=config.to_json(),
            capture_output=True,
            text=True,
            timeout=config.timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        row = base_row(config)
        row.update(status="timeout", reason=f"no result within {config.timeout_s:g} s")
        return row
    finally:
        if exported is not None:
            exported.cleanup()
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    row = base_row(config)
    if proc.returncode in (-signal.SIGKILL, 137):
        row.update(status="oom", reason="worker killed by the kernel (out of memory)")
    else:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        row.update(status="error", reason=f"worker exited with {proc.returncode}: {tail}")
    return row


def run(config: BenchConfig, isolate: bool = True) -> dict:
    return run_isolated(config) if isolate else run_config(config)
