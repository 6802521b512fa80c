"""``mobattn table``: a speed–accuracy table to paste into a paper or a README."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from mobattn.bench.config import PROFILES
from mobattn.errors import MobattnError
from mobattn.parsing import MAX_THREADS, check_int, check_resolution, parse_csv, parse_names

from .common import CONTEXT, measure_with_progress, no_cache_option
from .console import err_console, print_warning

FORMATS = ("md", "csv", "tex", "json")


@click.command("table", context_settings=CONTEXT)
@click.option(
    "--models", default="swiftformer_xs,swiftformer_s,swiftformer_l1,swiftformer_l3", show_default=True
)
@click.option(
    "--attention",
    "attentions",
    default="own",
    show_default=True,
    help="Token mixers, e.g. own,hilo,mhsa (own: each model's own; swaps a model does not take: skipped).",
)
@click.option(
    "--backend",
    "backends",
    default="onnxruntime",
    show_default=True,
    help="e.g. onnxruntime,torch,executorch.",
)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option(
    "--precision",
    "precisions",
    default="fp32",
    show_default=True,
    help="e.g. fp32,int8: a row per precision.",
)
@click.option("--resolution", type=int, help="Input size for every model (default: each model's own).")
@click.option("--profile", type=click.Choice(list(PROFILES)), default="default", show_default=True)
@click.option(
    "--results",
    type=click.Path(dir_okay=False),
    help="Reuse rows of this JSONL file measured here with the same setting; measure the rest and append it.",
)
@click.option(
    "--accuracy",
    default="results/accuracy.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Results of `mobattn eval` to join.",
)
@click.option(
    "--fidelity",
    default="results/fidelity.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Rows of `mobattn fidelity` to join: each backend's agreement with fp32 on real images.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="md", show_default=True)
@click.option("--json", "json_out", is_flag=True, help="Same as --format json.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the table here (else print it).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option(
    "--cold-start", is_flag=True, help="Add each backend's load and first-run times (ms) to the table."
)
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Measure missing rows on the fleet at this Dask scheduler (each kind of machine its own "
    "table rows; see `mobattn node`).",
)
@no_cache_option
def command(
    models,
    attentions,
    backends,
    threads,
    precisions,
    resolution,
    profile,
    results,
    accuracy,
    fidelity,
    fmt,
    json_out,
    out,
    force,
    cold_start,
    no_cache,
    cluster,
):
    """A speed–accuracy table: params, GMACs, latency per backend, memory, top-1 and its source.

    \b
      mobattn table --models swiftformer_xs,swiftformer_s --backend onnxruntime,torch --format md

    A row of --results is reused only when it measured the same thing on this machine
    (model, attention, resolution, backend, device, threads, precision, batch, profile,
    CPU and library versions); anything else is measured again.
    """
    from mobattn.bench.config import check_precision, get_backend
    from mobattn.bench.workers import prestart

    backend_list = parse_csv(backends, "--backend")
    if not cluster:  # the warm template imports torch while this process plans
        prestart([get_backend(b).target for b in backend_list])
    from mobattn.bench import api
    from mobattn.bench.backend_checks import check_backend
    from mobattn.bench.results import read_records
    from mobattn.catalogue import attention_names as list_attentions
    from mobattn.catalogue import model_entry
    from mobattn.catalogue import model_names as list_models
    from mobattn.exporters.files import check_writable, staged

    model_list = parse_names(models, list_models(), "model")
    names = parse_names(attentions, ["own", *list_attentions()], "attention")
    attention_list = list(dict.fromkeys(None if a == "own" else a for a in names))
    for backend in backend_list:
        check_backend(backend, "cpu")
    precision_list = [check_precision(p) for p in parse_csv(precisions, "--precision")]
    size = check_resolution([resolution, resolution]) if resolution is not None else None
    check_int(threads, "--threads", 1, MAX_THREADS)
    if out:
        check_writable(Path(out), force)
    evals = read_records(Path(accuracy))  # read (and checked) before anything is measured
    converted = read_records(Path(fidelity))
    configs, skipped = [], []
    for model in model_list:
        own_size = size or tuple(model_entry(model).input_size[1:])
        found = api.model_configs(
            [model], attention_list, [own_size], backend_list, [threads], precision_list, profile=profile
        )
        if not found:
            skipped.append(f"{model} at {own_size[0]}x{own_size[1]}")
        configs += found
    if not configs:
        raise MobattnError(
            f"nothing to tabulate: no model takes --attention {attentions} (see `mobattn info`)"
        )
    for model in skipped:
        print_warning(f"{model}: none of --attention {attentions} applies; left out")
    results_path = Path(results) if results else None
    if cluster:
        rows = _on_cluster(configs, results_path, cluster, not no_cache)
    else:
        rows = api.measure_missing(
            configs,
            results_path,
            runner=lambda missing: measure_with_progress(
                missing, results=results_path, title="table", cache=not no_cache
            ),
        )
    from mobattn.bench.fidelity import rows_of
    from mobattn.bench.table import build_rows, render  # the published figures: the registries

    table_rows = build_rows(rows, evals, backend_list, rows_of(converted))
    text = render(table_rows, backend_list, "json" if json_out else fmt, cold_start)
    if out:
        with staged(Path(out), force) as tmp:
            tmp.write_text(text)
        err_console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _on_cluster(configs, results_path, cluster: str, cache: bool) -> list:
    """Every kind of machine in the fleet measures what --results lacks for it; the table
    then holds each kind's rows for these configurations (never mixed: a row's machine,
    label included, is part of its table row)."""
    from mobattn.bench.base_row import base_row
    from mobattn.bench.fleet import require_distributed, run_on_cluster
    from mobattn.bench.results import read_rows

    from .common import fleet_event_printer, fleet_summary_line

    require_distributed()
    start = time.monotonic()
    said = fleet_event_printer()
    measured = run_on_cluster(list(configs), cluster, results_path, on_event=said, cache=cache)
    if measured:
        err_console.print(fleet_summary_line(measured, time.monotonic() - start))
    everything = read_rows(results_path) if results_path else measured  # the file holds them now
    wanted = {_setting(base_row(c)) for c in configs}  # as a row names it (a model's own mechanism)
    return [r for r in everything if _setting(r) in wanted]


def _setting(subject) -> tuple:
    shape = tuple(subject.resolution or ())
    return (
        subject.model,
        subject.attention,
        shape,
        subject.backend,
        subject.threads,
        subject.precision,
        subject.profile,
    )
