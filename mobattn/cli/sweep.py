"""``mobattn sweep``: a grid of measurements from a TOML file or a preset; resumable."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import click

from mobattn.errors import MobattnError
from mobattn.parsing import plural

from .common import (
    CONTEXT,
    fleet_event_printer,
    fleet_summary_line,
    json_option,
    measure_with_progress,
    no_cache_option,
    repeat_option,
    report_failures,
)
from .console import console, err_console, make_table, print_json


class _SweepCommand(click.Command):
    """Names the presets in ``mobattn sweep --help`` only: reading them imports the
    registries (and torch), which ``mobattn --help`` must not pay for."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from mobattn.bench.sweep import PRESETS

        super().format_help_text(ctx, formatter)
        with formatter.indentation():
            formatter.write_paragraph()
            formatter.write_text(f"Presets: {', '.join(PRESETS)}.")


@click.command("sweep", cls=_SweepCommand, context_settings=CONTEXT)
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A named grid (see below).")
@click.option(
    "--results",
    default="results/sweep.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="JSONL file the rows are appended to; rows already there are skipped.",
)
@click.option("--shard", help="Run only shard i of n, e.g. 2/4.")
@click.option(
    "--balance",
    type=click.Choice(["count", "cost"]),
    default="count",
    show_default=True,
    help="How --shard splits: every n-th configuration, or by estimated cost (longest first "
    "to the least loaded shard; for Slurm job arrays and Kubernetes Indexed Jobs).",
)
@click.option("--no-isolate", is_flag=True, help="Measure in this process instead of a fresh one each.")
@click.option("--dry-run", is_flag=True, help="List the configurations that would run.")
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Run on the fleet of `mobattn node`s at this Dask scheduler address (or scheduler file).",
)
@click.option(
    "--fleet",
    "fleet_mode",
    type=click.Choice(["compare", "spread"]),
    default="compare",
    show_default=True,
    help="compare: the grid once per kind of machine; spread: each configuration once, anywhere.",
)
@click.option("--machines", help="Only the machines of these kinds (names as `mobattn fleet` shows them).")
@click.option("--mix", is_flag=True, help="Let --fleet spread mix machines of different kinds.")
@repeat_option
@no_cache_option
@json_option
def command(
    grid_file,
    preset,
    results,
    shard,
    balance,
    no_isolate,
    dry_run,
    cluster,
    fleet_mode,
    machines,
    mix,
    repeat,
    no_cache,
    json_out,
) -> None:
    """Run a grid of measurements from a TOML file or a preset; resumable.

    \b
      mobattn sweep --preset attention-scaling
      mobattn sweep my_grid.toml --results results/mine.jsonl --shard 1/2

    A grid file's keys are the Grid fields of mobattn.bench.sweep (attentions, dims, hws,
    models, model_attentions, resolutions, backends, threads, precisions, devices,
    profile, timeout_s, memory_limit_mb) and may start from `preset = "NAME"`. The whole
    grid is checked before the first measurement. Two sweeps of the same shard on one
    results file are refused; different shards may share it.
    """
    from mobattn.bench import sweep as sweeps
    from mobattn.bench.backend_checks import check_backend
    from mobattn.bench.results import sweep_lock

    fleet_only = {"--machines": machines, "--mix": mix, "--fleet spread": fleet_mode == "spread"}
    given = [flag for flag, value in fleet_only.items() if value]
    if given and not cluster:
        raise MobattnError(f"{', '.join(given)} apply to a sweep on a fleet: add --cluster ADDRESS")
    grid = sweeps.load_grid(preset, grid_file)
    index, count = sweeps.parse_shard(shard)
    if cluster and repeat > 1:
        raise MobattnError("--repeat runs here; on a fleet, repeat the sweep into another results file")
    if cluster:
        fleet = (cluster, fleet_mode, machines, mix)
        return _on_cluster(grid, Path(results), *fleet, shard, no_isolate, not no_cache, json_out)
    for backend in grid.backends:
        for device in grid.devices:
            check_backend(backend, device, here=not dry_run)  # a plan may be for another machine
    results_path = Path(results)
    configs = sweeps.shard(grid.configs(), index, count, by_cost=balance == "cost")
    if dry_run:
        todo, _ = sweeps.pending(configs, results_path)
        if json_out:
            return print_json([asdict(c) for c in todo])
        for config in todo:
            console.print(config.label())
        return
    with sweep_lock(results_path, f"{index}/{count}"):  # pending is read under the lock
        todo, skipped = sweeps.pending(configs, results_path)
        err_console.print(
            f"{plural(len(configs), 'configuration')} in shard {index}/{count}; {skipped} already in "
            f"{results_path}, {len(todo)} to run"
        )
        rows = measure_with_progress(
            todo,
            isolate=not no_isolate,
            results=results_path,
            title="sweep",
            cache=not no_cache,
            repeat=repeat,
        )
    print_sweep_summary(results_path, json_out, sharded=count > 1)
    return report_failures(rows)


def _on_cluster(grid, results_path, cluster, mode, machines, mix, shard, no_isolate, cache, json_out):
    """The sweep on a fleet: this process dispatches and alone appends the rows."""
    from mobattn.bench.fleet import require_distributed, run_on_cluster
    from mobattn.bench.results import sweep_lock
    from mobattn.errors import MobattnError

    if shard or no_isolate:
        raise MobattnError("--cluster spreads the grid itself: it takes neither --shard nor --no-isolate")
    require_distributed()
    kinds = [k.strip() for k in machines.split(",") if k.strip()] if machines else []
    start = time.monotonic()
    with sweep_lock(results_path, "cluster"):
        configs, said = grid.configs(), fleet_event_printer()
        rows = run_on_cluster(configs, cluster, results_path, mode, kinds, mix, on_event=said, cache=cache)
    if rows:
        err_console.print(fleet_summary_line(rows, time.monotonic() - start))
    print_sweep_summary(results_path, json_out)
    return report_failures(rows)


def print_sweep_summary(results_path: Path, json_out: bool, sharded: bool = False) -> None:
    """Fitted exponents k of latency ~ a * N^k, per mechanism and setting."""
    from mobattn.bench.fit import FIT_COLUMNS, fit_cells, fit_exponents
    from mobattn.bench.results import read_rows, status_counts
    from mobattn.bench.row import latest

    rows = latest(read_rows(results_path))
    fits = fit_exponents(rows)
    statuses = status_counts(rows)
    if json_out:
        return print_json(
            [{"results": str(results_path), "rows": statuses, "fits": [asdict(f) for f in fits]}]
        )
    console.print(f"{results_path}: " + ", ".join(f"{n} {s}" for s, n in statuses.items()))
    if fits:
        cols = FIT_COLUMNS
        console.print(
            make_table(
                "empirical complexity: latency ~ a·N^k",
                cols,
                [fit_cells(f) for f in fits],
                {"k", "r²", "points"},
            )
        )
    elif sharded:
        console.print(
            "[dim]no fit yet: a shard holds too few token sizes per mechanism; "
            "run `mobattn merge` on all shards, then `mobattn report`[/dim]"
        )
