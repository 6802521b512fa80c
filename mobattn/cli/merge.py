"""``mobattn merge``: the results of several shards or machines in one file."""

from __future__ import annotations

from pathlib import Path

import click

from .common import CONTEXT, json_option
from .console import console, print_json


@click.command("merge", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Merged JSONL file.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@json_option
def command(inputs, out, force, json_out) -> None:
    """Merge the JSONL results of several shards or machines: one row per identity
    (subject, setting, machine), the newest, and never a failed row over an ok one."""
    from mobattn.bench.results import merge, status_counts, write_rows

    rows = merge([Path(p) for p in inputs])
    write_rows(Path(out), rows, force)
    summary = {"out": out, "inputs": list(inputs), "rows": len(rows), "statuses": status_counts(rows)}
    if json_out:
        return print_json([summary])
    console.print(f"{len(rows)} rows from {len(inputs)} files -> {out}")
