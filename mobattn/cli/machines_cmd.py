"""``mobattn machines FILE...``: the machines behind results files."""

from __future__ import annotations

from pathlib import Path

import click

from .common import CONTEXT, json_option
from .console import console, make_table, print_json


@click.command("machines", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
def command(inputs, json_out) -> None:
    """Every machine in results files: its fingerprint facts (CPU, cores, caches, memory,
    hypervisor, governor, label), its calibration (fp32 matmul GFLOP/s on one thread, with
    the spread of its rounds), how many rows it measured, first and last seen.

    \b
      mobattn machines results/sweep.jsonl
      mobattn machines shard1.jsonl shard2.jsonl --json

    Rows of different machines never share a table cell, a fit or a plot; rows written
    before fingerprints are listed as "(no fingerprint)".
    """
    from mobattn.bench.machines import machines_of
    from mobattn.bench.results import read_rows
    from mobattn.errors import MobattnError

    rows = []
    for name in inputs:
        if not Path(name).is_file():
            raise MobattnError(f"results file not found: {name}")
        rows += read_rows(Path(name))
    summaries = machines_of(rows)
    if json_out:
        return print_json([s.to_dict() for s in summaries])
    columns = ["machine", "caches", "memory GiB", "hypervisor", "governor", "calibration GFLOP/s", "rows"]
    columns += ["first seen", "last seen"]
    table = [
        [
            s.machine,
            str(s.facts.get("caches") or "-"),
            str(s.facts.get("memory_gib") or "-"),
            str(s.facts.get("hypervisor") or "-"),
            str(s.facts.get("governor") or "-"),
            _calibration(s),
            s.rows,
            s.first_seen[:19],
            s.last_seen[:19],
        ]
        for s in summaries
    ]
    title = f"{len(summaries)} machines"
    console.print(make_table(title, columns, table, {"rows"}, fold={"machine", "caches"}))


def _calibration(summary) -> str:
    if summary.calibration_gflops is None:
        return "-"
    return f"{summary.calibration_gflops:.1f} ±{summary.calibration_spread or 0:.1%}"
