"""Measuring configurations on this machine, in isolated workers: what :func:`.api.measure`
does without a cluster, and what a fleet node (:mod:`.fleet_node`) does for each
configuration the fleet sends it. Kept apart from :mod:`.api` so the node does not import
the module that dispatches to the fleet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from mobattn.environment import environment, use_environment
from mobattn.errors import warn

from .base_row import base_row
from .config import BACKENDS, BenchConfig
from .results import append_row
from .row import Row


def measure_here(
    configs: Iterable[BenchConfig],
    isolate: bool = True,
    results: Path | None = None,
    on_start=None,
    on_row=None,
    cache: bool = True,
    workers: str | None = None,
    pool=None,
    repeat: int = 1,
) -> list[Row]:
    """:func:`.api.measure` on this machine (its docstring says what each argument does)."""
    from .cache import ArtifactCache
    from .compute import machine_peak_gflops
    from .preflight import preflight
    from .runner import clean_stale_folders, run
    from .workers import worker_pool

    clean_stale_folders()
    artifacts = ArtifactCache() if cache else None
    if artifacts is not None:
        artifacts.check_usable()
    configs = list(configs)
    if configs:  # the machine's fingerprint, calibration and state, in every row
        env = calibrated_environment()
        checked = preflight()  # said once, recorded in every row
        for warning in checked["warnings"]:
            warn(f"pre-flight: {warning}")
        use_environment({**env, "preflight": checked})
    targets = {BACKENDS[c.backend].target for c in configs if c.backend in BACKENDS} - {None}
    rows = []
    with (
        contextlib.nullcontext(pool)
        if pool is not None
        else worker_pool(workers, targets, warm_up=len(configs) > 1) as pool
    ):
        for config in configs:
            if on_start:
                on_start(config)
            unsupported = BACKENDS[config.backend].unsupported(config.device, config.precision)
            unsupported = unsupported or more_threads_than_cores(config)
            if unsupported:
                row = base_row(config)
                row.status, row.reason = "skipped", unsupported
            else:
                if config.matmul_peak_gflops is None:  # once per machine, thread count and device
                    config.matmul_peak_gflops = machine_peak_gflops(config.threads, config.device, cache)
                repeats = [
                    run(config, isolate=isolate, workers=pool.get() if isolate else None, cache=artifacts)
                    for _ in range(repeat)
                ]
                row = combined(repeats)
            rows.append(row)
            if results is not None:
                append_row(results, row)
            if on_row:
                on_row(row)
    return rows


def more_threads_than_cores(config: BenchConfig) -> str:
    """Why a configuration cannot be measured faithfully here ('' if it can): more
    threads than this process may use (its affinity and cgroup quota, not the host's),
    or than the cores it is pinned to."""
    from .config import pinned_cores

    cores = environment().get("cores") or 1
    if config.device == "cpu" and config.threads > cores:
        return f"--threads {config.threads} is more than the {cores} usable cores here"
    pinned = pinned_cores(config.pin)
    if config.device == "cpu" and pinned and config.threads > len(pinned):
        return f"--threads {config.threads} is more than the {len(pinned)} cores of --pin {config.pin}"
    return ""


def combined(repeats: list[Row]) -> Row:
    """One row for a configuration measured several times: a failed repeat's row if any
    failed (its reason says which), else the repeat whose median is the median of the
    medians, with every repeat's median and their run-to-run spread."""
    from .row import run_to_run_of

    if len(repeats) == 1:
        return repeats[0]
    for number, row in enumerate(repeats, 1):
        if not row.ok:
            row.reason = f"repeat {number} of {len(repeats)}: {row.reason}"
            return row
    ordered = sorted(repeats, key=lambda r: r.median_ms)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.repeat_medians_ms = [r.median_ms for r in repeats]
    # where the configuration's wall time went: every repeat's phases, summed
    phases = [r.phases_s or {} for r in repeats]
    chosen.phases_s = {
        k: sum(p.get(k, 0.0) for p in phases) for k in dict.fromkeys(k for p in phases for k in p)
    }
    chosen.run_to_run = run_to_run_of(chosen.repeat_medians_ms)
    return chosen


def calibrated_environment() -> dict:
    """This machine's environment with its calibration (:mod:`.calibration`): what the rows
    measured here carry, so what a plan compares them with."""
    from .calibration import calibrated_environment as calibrated

    return calibrated()
