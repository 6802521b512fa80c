"""``mobattn fleet ADDRESS``: the machines of a fleet, their kinds, and what is left."""

from __future__ import annotations

import click

from .common import CONTEXT, json_option
from .console import console, make_table, print_json


@click.command("fleet", context_settings=CONTEXT)
@click.argument("address")
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A named grid: also say what each kind still has to run.")
@click.option("--results", type=click.Path(dir_okay=False), help="The sweep's results file (JSONL).")
@json_option
def command(address, grid_file, preset, results, json_out) -> None:
    """The machines in the fleet at ADDRESS (node, host, kind: CPU, cores, GPU, label)
    and, given a grid (a file or --preset) and its --results, how many configurations
    each kind still has to run.

    \b
      mobattn fleet tcp://10.0.0.1:8786
      mobattn fleet tcp://10.0.0.1:8786 --preset quick --results results/quick.jsonl
    """
    from pathlib import Path

    from mobattn.bench import fleet as fleets
    from mobattn.bench.fleet_plan import absent_kinds, remaining

    client = fleets.connect(address)
    try:
        found = fleets.machines(client)
    finally:
        client.close()
    left = {}
    if grid_file or preset:
        from mobattn.bench.results import read_rows
        from mobattn.bench.sweep import load_grid

        configs = load_grid(preset, grid_file).configs()
        left = remaining(configs, found, Path(results) if results else None)
        if results:  # a kind whose machines all left still owes its share: shown, not hidden
            found = {**found, **absent_kinds(found, read_rows(Path(results)))}
    records = [
        {
            "node": m.node,
            "host": m.host,
            "kind": m.kind_name,
            "cpu": m.environment.get("cpu"),
            "cores": m.environment.get("cores"),
            "gpu": m.environment.get("gpu"),
            "label": m.environment.get("node_label"),
            "left": left.get(m.kind_name) if left else None,
        }
        for m in sorted(found.values(), key=lambda m: (m.kind_name, m.node))
    ]
    if json_out:
        return print_json(records)
    if not records:
        console.print(f"no mobattn node has joined {address}: start one with `mobattn node {address}`")
        return
    columns = list(records[0])
    cells = [["-" if r[c] is None else str(r[c]) for c in columns] for r in records]
    console.print(make_table(f"fleet at {address}", columns, cells))
