"""``mobattn report``: plots and tables from results files, and the benchmark page."""

from __future__ import annotations

from pathlib import Path

import click

from mobattn.errors import MobattnError

from .common import CONTEXT, json_option
from .console import console, err_console, print_json


@click.command("report", context_settings=CONTEXT)
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default="results/report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the plots (PNG and SVG) and report.md.",
)
@click.option(
    "--accuracy", default="results/accuracy.jsonl", show_default=True, type=click.Path(dir_okay=False)
)
@click.option(
    "--fidelity",
    default="results/fidelity.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="`mobattn fidelity`'s rows: an 'Accuracy after conversion' section (skipped if absent).",
)
@click.option("--page", type=click.Path(dir_okay=False), help="Also write a benchmark page (BENCHMARKS.md).")
@click.option("--force", is_flag=True, help="Replace existing outputs (else an existing one is refused).")
@json_option
def command(results, out_dir, accuracy, fidelity, page, force, json_out) -> None:
    """Tables and plots from results files: latency and memory against tokens (with the
    fitted exponents) and the speed–accuracy plane with its Pareto front.

    Like every command that writes, it replaces nothing without --force, and writes each
    file under a temporary name renamed into place (a symlink is replaced, not followed).
    """
    from mobattn.bench.page import write_report
    from mobattn.bench.results import merge, read_records

    rows = merge([Path(p) for p in results])
    if not rows:
        raise MobattnError("the results files hold no rows")
    evals = read_records(Path(accuracy))
    from mobattn.bench.fidelity import rows_of

    converted = rows_of(read_records(Path(fidelity)))
    with err_console.status(f"plotting and tabulating {len(rows)} rows..."):
        written = write_report(
            rows,
            Path(out_dir),
            evals,
            [Path(p) for p in results],
            Path(page) if page else None,
            force,
            converted,
        )
    if json_out:
        return print_json([{"written": [str(p) for p in written], "rows": len(rows)}])
    for path in written:
        console.print(f"wrote {path}")
