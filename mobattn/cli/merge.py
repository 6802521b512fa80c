"""``mobattn merge``: the results of several shards or machines in one file."""

from __future__ import annotations

from pathlib import Path

import click

from .common import CONTEXT, json_option
from .console import console, print_json, print_warning


@click.command("merge", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Merged JSONL file.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@json_option
def command(inputs, out, force, json_out) -> None:
    """Merge the JSONL results of several shards or machines: one row per identity
    (subject, setting, machine), the newest, and never a failed row over an ok one."""
    from mobattn.bench.machines import machines_of, same_label_different_machines
    from mobattn.bench.results import merge, status_counts, write_rows

    rows = merge([Path(p) for p in inputs])
    write_rows(Path(out), rows, force)
    machines = machines_of(rows)
    summary = {
        "out": out,
        "inputs": list(inputs),
        "rows": len(rows),
        "statuses": status_counts(rows),
        "machines": {m.machine: m.rows for m in machines},
    }
    if json_out:
        return print_json([summary])
    console.print(f"{len(rows)} rows from {len(inputs)} files -> {out}")
    for machine in machines:
        console.print(f"  {machine.rows} rows measured on {machine.machine}")
    for cpu in same_label_different_machines(machines):
        print_warning(f"{cpu}: rows of more than one machine share this CPU label; they are kept apart")
