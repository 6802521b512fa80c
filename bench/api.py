"""The benchmark workflow as library functions a notebook can call:

    from mobattn.bench import measure, model_configs
    rows = measure(model_configs(["swiftformer_xs"], backends=["onnxruntime", "torch"]))
    rows[0].median_ms, rows[0].p90_ms, rows[0].identity()

Planning builds typed :class:`BenchConfig` records; :func:`measure` runs them (each in
fresh workers by default) and returns typed :class:`Row` records, appending each to a
results file the moment it is measured. The CLI only parses, calls these and renders.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mobattn.catalogue import check_resolution_for, swap_for
from mobattn.errors import MobattnError
from mobattn.parsing import plural

from .config import BenchConfig
from .measure_here import calibrated_environment, combined, measure_here, more_threads_than_cores  # noqa: F401
from .results import read_rows
from .row import Row, latest

OnStart = Callable[[BenchConfig], None]
OnRow = Callable[[Row], None]


def attention_configs(
    attentions: Sequence[str],
    dims: Sequence[int],
    hws: Sequence[Sequence[int]],
    backends: Sequence[str] = ("torch",),
    threads: Sequence[int] = (1,),
    precisions: Sequence[str] = ("fp32",),
    devices: Sequence[str] = ("cpu",),
    **common,
) -> list[BenchConfig]:
    """Bare token mixers: attentions x dims x token grids x settings, in a fixed order."""
    return [
        BenchConfig("attention", b, dev, t, precision=p, attention=a, dim=d, hw=list(hw), **_common(common))
        for a, d, hw in itertools.product(attentions, dims, hws)
        for b, dev, t, p in itertools.product(backends, devices, threads, precisions)
    ]


def model_configs(
    models: Sequence[str],
    attentions: Sequence[str | None] = (None,),
    resolutions: Sequence[Sequence[int]] = ((224, 224),),
    backends: Sequence[str] = ("torch",),
    threads: Sequence[int] = (1,),
    precisions: Sequence[str] = ("fp32",),
    devices: Sequence[str] = ("cpu",),
    **common,
) -> list[BenchConfig]:
    """Models (with swapped token mixers: ``None`` or the model's own is the original) x
    resolutions x settings, in a fixed order. Combinations a model does not take (a swap
    into DeiT or MobileViT, DeiT at another resolution) are left out."""
    subjects = dict.fromkeys(  # a model's own mechanism named explicitly is the original: once
        (m, swap_for(m, a), tuple(res))
        for m, a, res in itertools.product(models, attentions, resolutions)
        if takes(m, a, tuple(res))
    )
    return [
        BenchConfig(
            "model",
            b,
            dev,
            t,
            precision=p,
            model=m,
            attention=a,
            resolution=list(res),
            **_common(common),
        )
        for m, a, res in subjects
        for b, dev, t, p in itertools.product(backends, devices, threads, precisions)
    ]


def takes(model: str, attention: str | None, resolution: tuple[int, int]) -> bool:
    """Whether ``model`` takes this swap and input size (the catalogue: no torch import)."""
    try:
        swap_for(model, attention)
        check_resolution_for(model, attention, resolution)
    except MobattnError:
        return False
    return True


def file_configs(
    file: str,
    backend: str,
    resolutions: Sequence[Sequence[int] | None] = (None,),
    threads: Sequence[int] = (1,),
    precision: str = "fp32",
    device: str = "cpu",
    **common,
) -> list[BenchConfig]:
    """An existing artifact, at each resolution its dynamic axes are filled with."""
    return [
        BenchConfig(
            "file",
            backend,
            device,
            t,
            precision=precision,
            file=str(Path(file).resolve()),
            resolution=list(r) if r else None,
            **_common(common),
        )
        for r, t in itertools.product(resolutions, threads)
    ]


def _common(common: dict) -> dict:
    allowed = {
        "batch",
        "heads",
        "weights",
        "profile",
        "timeout_s",
        "memory_limit_mb",
        "samples",
        "op_profile",
        "pin",
    }
    unknown = set(common) - allowed
    if unknown:
        raise TypeError(f"unknown configuration fields: {', '.join(sorted(unknown))}")
    if common.get("weights"):
        common = {**common, "weights": str(Path(common["weights"]).resolve())}
    return common


def measure(
    configs: Iterable[BenchConfig],
    isolate: bool = True,
    results: Path | None = None,
    on_start: OnStart | None = None,
    on_row: OnRow | None = None,
    cache: bool = True,
    workers: str | None = None,
    pool=None,
    cluster: str | None = None,
    fleet: str = "compare",
    repeat: int = 1,
) -> list[Row]:
    """Measure each configuration (in fresh worker processes unless ``isolate`` is
    False) and return its row; append each row to ``results`` as soon as it exists.

    ``cache``: reuse exports from the artifact cache (:mod:`.cache`) and keep new ones
    there. ``workers``: ``"warm"`` (forks of a template that imported the runtimes once,
    the default on Linux) or ``"fresh"`` (a new interpreter per phase), see
    :mod:`.workers`. ``pool``: a :class:`.workers.WorkerPool` the caller keeps open
    across calls (a fleet node's), instead of one for this call. ``cluster``: a Dask
    scheduler address (or scheduler file) of ``mobattn node`` machines to measure on
    instead of here, ``fleet`` ``"compare"`` or ``"spread"`` (:mod:`.fleet`).
    ``repeat``: each configuration measured that many times, each in workers of its own;
    the row is the repeat with the median latency, carrying every repeat's median
    (``repeat_medians_ms``) and their spread (``run_to_run``)."""
    if cluster is not None:
        from .fleet import run_on_cluster

        def said(event, config, machine, row):
            if event == "start" and on_start:
                on_start(config)
            if event in ("row", "stalled") and on_row:  # a stalled configuration has its timeout row
                on_row(row)

        return run_on_cluster(list(configs), cluster, results, fleet, on_event=said, cache=cache)
    return measure_here(configs, isolate, results, on_start, on_row, cache, workers, pool, repeat)


@dataclass(frozen=True)
class TimeAccounting:
    """Where a run of configurations spent its wall time (from the rows' ``phases_s``)."""

    configurations: int
    wall_s: float
    timed_s: float  # the timed runs themselves
    export_s: float  # exports of distinct artifacts (real work, once each)
    exported: int
    cached: int  # artifacts taken from the cache

    @property
    def efficiency(self) -> float:
        return self.timed_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def overhead_per_configuration_s(self) -> float:
        """Neither timed runs nor exports: starts, imports, loads, warm-up, bookkeeping."""
        return (self.wall_s - self.timed_s - self.export_s) / max(1, self.configurations)

    def line(self) -> str:
        return (
            f"{plural(self.configurations, 'configuration')} in {self.wall_s:.1f} s: "
            f"timed runs {self.timed_s:.1f} s "
            f"(efficiency {self.efficiency:.0%}), exports {self.export_s:.1f} s ({self.exported} exported, "
            f"{self.cached} from the cache), other {self.overhead_per_configuration_s:.2f} s a configuration"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "efficiency": self.efficiency}


def time_accounting(rows: Sequence[Row], wall_s: float) -> TimeAccounting:
    phases = [r.phases_s or {} for r in rows]
    return TimeAccounting(
        configurations=len(rows),
        wall_s=wall_s,
        timed_s=sum(p.get("timed", 0.0) for p in phases),
        export_s=sum(p.get("build", 0.0) + p.get("export", 0.0) + p.get("validation", 0.0) for p in phases),
        exported=sum(1 for p in phases if "export" in p),
        cached=sum(1 for r in rows if r.artifact_cached),
    )


def pending(configs: Sequence[BenchConfig], rows: Iterable[Row]) -> list[BenchConfig]:
    """The configurations with no result among ``rows`` for this machine (``error``
    rows are retried; ``ok``, ``oom``, ``timeout`` and ``skipped`` are results)."""
    from .results import done_identities

    done = done_identities(rows)
    env = calibrated_environment()
    return [c for c in configs if c.identity(env) not in done]


def measure_missing(
    configs: Sequence[BenchConfig],
    results: Path | None,
    runner: Callable[[list[BenchConfig]], list[Row]] | None = None,
) -> list[Row]:
    """Rows for ``configs``: those in ``results`` whose identity matches an ``ok`` row
    measured on this machine are reused; the rest are measured (by ``runner``, by
    default :func:`measure` appending to ``results``)."""
    existing = read_rows(results) if results else []
    env = calibrated_environment()
    wanted = {c.identity(env) for c in configs}
    reusable = [r for r in existing if r.ok and r.identity() in wanted]
    have = {r.identity() for r in reusable}
    missing = [c for c in configs if c.identity(env) not in have]
    runner = runner or (lambda todo: measure(todo, results=results))
    measured = runner(missing) if missing else []
    return latest(reusable + measured)
