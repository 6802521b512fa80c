"""How long a sweep takes on n machines, by how it is split: simulated on the costs of
committed rows, against the lower bound max(total / n, longest configuration).

- ``--shard i/n`` (every n-th configuration, each machine its own list),
- ``--shard i/n --balance cost`` (greedy split by mobattn's cost estimate, no history),
- the fleet (``sweep --cluster``): one shared queue, the longest first, each machine
  taking the next configuration when it is free, plus the measured dispatch overhead;
  ordered once by the cost estimate (a first run) and once by past rows' costs (a rerun).

Costs: ``results/benchmarks/engine/runtime-parity-cold.jsonl`` (each row's measured
``phases_s.total``, exports included) and ``results/benchmarks/attention-scaling.jsonl``
(the gap between consecutive rows' timestamps: one sweep, one configuration after the
other, second resolution). Prints the page's markdown section.

    .venv/bin/python bench/scripts/fleet_makespan.py --dispatch-s 0.04 > results/benchmarks/fleet_makespan.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
from pathlib import Path

from mobattn.bench.config import BenchConfig
from mobattn.bench.fleet_plan import estimated_cost_s
from mobattn.bench.sweep import shard

MACHINES = (2, 4, 8, 16)
CONFIG_FIELDS = ("kind", "backend", "device", "threads", "batch", "precision", "model", "attention")
CONFIG_FIELDS += ("resolution", "dim", "hw", "heads", "profile")


def costs_from_phases(path: Path) -> list[tuple[BenchConfig, float]]:
    found = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("phases_s") and "total" in row["phases_s"]:
            found.append((_config(row), row["phases_s"]["total"]))
    return found


def costs_from_timestamps(path: Path) -> list[tuple[BenchConfig, float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    found, previous = [], None
    for row in rows:
        stamp = dt.datetime.fromisoformat(row["timestamp"])
        if previous is not None and 0 <= (stamp - previous).total_seconds() < 600:  # else a pause
            found.append((_config(row), max(0.5, (stamp - previous).total_seconds())))
        previous = stamp
    return found


def _config(row: dict) -> BenchConfig:
    return BenchConfig(**{k: row[k] for k in CONFIG_FIELDS if k in row})


def by_shards(parts: list[list[float]]) -> float:
    return max(sum(part) for part in parts)


def shared_queue(costs: list[float], order: list[int], n: int, dispatch_s: float) -> float:
    """Each configuration in ``order`` goes to the machine free first."""
    free = [0.0] * n
    for i in order:
        heapq.heappush(free, heapq.heappop(free) + costs[i] + dispatch_s)
    return max(free)


def table(name: str, pairs: list[tuple[BenchConfig, float]], dispatch_s: float) -> list[str]:
    configs = [c for c, _ in pairs]
    costs = [t for _, t in pairs]
    index = {id(c): i for i, c in enumerate(configs)}
    estimate_order = sorted(range(len(configs)), key=lambda i: -estimated_cost_s(configs[i]))
    past_order = sorted(range(len(configs)), key=lambda i: -costs[i])
    lines = [
        f"**{name}**: {len(pairs)} configurations, {sum(costs) / 60:.1f} min of work, the longest "
        f"{max(costs):.1f} s. Makespan in minutes (and above the lower bound):\n",
        "| machines | lower bound | `--shard` | `--shard --balance cost` | fleet, estimated order "
        "| fleet, past costs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in MACHINES:
        bound = max(sum(costs) / n, max(costs))
        count = by_shards([[costs[index[id(c)]] for c in shard(configs, i, n)] for i in range(1, n + 1)])
        cost = by_shards(
            [[costs[index[id(c)]] for c in shard(configs, i, n, by_cost=True)] for i in range(1, n + 1)]
        )
        estimated = shared_queue(costs, estimate_order, n, dispatch_s)
        past = shared_queue(costs, past_order, n, dispatch_s)
        cells = [f"{v / 60:.1f} (+{v / bound - 1:.0%})" for v in (count, cost, estimated, past)]
        lines.append(f"| {n} | {bound / 60:.1f} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dispatch-s", type=float, default=0.04, help="fleet overhead per configuration (s)")
    args = parser.parse_args()
    root = Path("results/benchmarks")
    print(
        "Simulated from committed rows' costs (`bench/scripts/fleet_makespan.py`), with the fleet's "
        f"dispatch overhead of {args.dispatch_s:.2f} s per configuration (measured: see below).\n"
    )
    sources = [
        (
            "runtime-parity (engine/runtime-parity-cold.jsonl, measured phases)",
            costs_from_phases(root / "engine/runtime-parity-cold.jsonl"),
        ),
        ("attention-scaling (timestamp gaps)", costs_from_timestamps(root / "attention-scaling.jsonl")),
    ]
    for name, pairs in sources:
        if pairs:
            print("\n".join(table(name, pairs, args.dispatch_s)) + "\n")


if __name__ == "__main__":
    main()
