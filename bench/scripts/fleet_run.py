"""A real two-node fleet on this one machine, against a plain local sweep of the same grid.

Starts a Dask scheduler and two `mobattn node`s (one label: one kind) on 127.0.0.1, runs
`mobattn sweep --preset quick --cluster ... --fleet spread`, then the same grid locally
(`mobattn sweep --preset quick`), and prints the page's markdown: wall times, the fleet's
dispatch overhead per configuration (each row's time on the fleet, from its node's start
to the driver's receipt, minus the row's own measured phases), and what sharing the cores
does to the medians and to the quiet check.

    .venv/bin/python bench/scripts/fleet_run.py >> results/benchmarks/fleet_makespan.md
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mobattn.environment import environment

BIN = Path(sys.executable).parent


def start(argv: list[str], log: Path, **env) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
        )


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def sweep(results: Path, *extra: str) -> float:
    begin = time.monotonic()
    argv = [
        str(BIN / "mobattn"),
        "sweep",
        "--preset",
        "quick",
        "--results",
        str(results),
        "--no-cache",
        *extra,
    ]
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - begin


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="mobattn-fleet-run-"))
    scheduler_file = folder / "scheduler.json"
    procs = [
        start(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            folder / "scheduler.log",
        )
    ]
    try:
        while not scheduler_file.exists():
            time.sleep(0.1)
        for name in ("n1", "n2"):
            argv = [str(BIN / "mobattn"), "node", str(scheduler_file), "--label", "this-machine"]
            procs.append(start(argv, folder / f"{name}.log", MOBATTN_NODE_ID=name))
        time.sleep(8)  # the nodes join
        fleet_s = sweep(folder / "fleet.jsonl", "--cluster", str(scheduler_file), "--fleet", "spread")
        local_s = sweep(folder / "local.jsonl")
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
    fleet, local = rows(folder / "fleet.jsonl"), rows(folder / "local.jsonl")
    overhead = sorted(
        r["details"]["fleet"]["end"] - r["details"]["fleet"]["start"] - r["phases_s"]["total"] for r in fleet
    )
    by_subject = {(r["attention"], tuple(r["hw"])): r for r in local}
    ratios = [r["median_ms"] / by_subject[(r["attention"], tuple(r["hw"]))]["median_ms"] for r in fleet]
    others = [r["other_cpu_cores"] for r in fleet]
    print(
        f"**A real two-node run on this machine** ({environment()['cpu']}, {environment()['cores']} "
        f"cores; `bench/scripts/fleet_run.py`, {time.strftime('%Y-%m-%d')}): the "
        f"`quick` preset ({len(fleet)} configurations) on two `mobattn node`s of one kind, `--fleet "
        f"spread`, took {fleet_s:.0f} s of wall time against {local_s:.0f} s for the same grid as a "
        f"plain local sweep ({local_s / fleet_s:.2f}x; both with `--no-cache`: every artifact "
        "exported). Dispatch overhead per configuration "
        f"(time on the fleet minus the row's own phases): median {statistics.median(overhead):.3f} s, "
        f"the largest {overhead[-1]:.2f} s (a node's first configuration starts its warm workers). "
        f"The two nodes share this machine's cores, so each measured while the other ran: "
        f"fleet / local median latency {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}), other processes kept {statistics.median(others):.2f} "
        f"cores busy while a fleet row was timed (median), and {sum(r['noisy'] for r in fleet)} of "
        f"{len(fleet)} fleet rows are flagged noisy (local: {sum(r['noisy'] for r in local)}). "
        "On one machine a fleet only shows that dispatch costs little; its numbers are not "
        "measurements a paper could use."
    )


if __name__ == "__main__":
    main()
