"""Benchmark page section (not a test): LiteRT and ExecuTorch against onnxruntime per
mechanism, as median ratios of rows measured side by side in one sweep.

    mobattn sweep --preset litert-parity --results results/benchmarks/litert-parity.jsonl
    python bench/scripts/litert_parity.py > results/benchmarks/litert_parity.md

A script beside the package, not installed. Each runtime times its own form of the
mechanism (onnxruntime the reference graph, ExecuTorch the xnnpack form, LiteRT the litert
form), fp32, one thread, batch 1. A ratio above 1.15 (the goal) is flagged; a noisy row is
marked. Every row carries its runtime's per-op profile: the worst row of each runtime is
shown op category by op category (:mod:`mobattn.bench.op_compare`), and each profiler's
coverage (its ops' sum over the timed median) is summarised.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from mobattn.bench.results import read_rows
from mobattn.bench.row import Row, latest

RESULTS = Path("results/benchmarks/litert-parity.jsonl")
GOAL = 1.15
BACKENDS = ("onnxruntime", "executorch", "litert")


def cell(row: Row | None, base: Row | None) -> str:
    if row is None or base is None or not row.ok or not base.ok:
        return "n/a" if row is None or row.ok else row.status
    ratio = row.median_ms / base.median_ms
    flags = (" (slower)" if ratio > GOAL else "") + (" noisy" if row.noisy or base.noisy else "")
    return f"{ratio:.2f}x{flags}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [r for r in latest(read_rows(args.results)) if r.kind == "attention" and r.threads == 1]
    grouped: dict[tuple, dict[str, Row]] = defaultdict(dict)
    for r in rows:
        grouped[r.attention, r.dim, tuple(r.hw), r.environment.get("cpu")][r.backend] = r
    lines = [
        "Measured by `mobattn sweep --preset litert-parity` (profile quick, fp32, 1 thread, batch 1) "
        "and `python bench/scripts/litert_parity.py`; each row's three runtimes were measured in one "
        f"sweep on one machine. Ratios are medians over onnxruntime's; above {GOAL}x is flagged.",
        "",
        "| mechanism | dim | tokens | onnxruntime ms | ExecuTorch / onnxruntime | LiteRT / onnxruntime | "
        "LiteRT / ExecuTorch | machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (attention, dim, hw, cpu), by in sorted(grouped.items()):
        base = by.get("onnxruntime")
        ort_ms = f"{base.median_ms:.3f}" if base is not None and base.ok else "n/a"
        lines.append(
            f"| {attention} | {dim} | {hw[0]}x{hw[1]} ({hw[0] * hw[1]}) | {ort_ms} | "
            f"{cell(by.get('executorch'), base)} | {cell(by.get('litert'), base)} | "
            f"{cell(by.get('litert'), by.get('executorch'))} | {cpu} |"
        )
    print("\n".join(lines))
    print_worst(rows)
    print_coverage(rows)
    return 0


def print_worst(rows: list[Row]) -> None:
    """The row where each runtime is furthest behind onnxruntime, op category by category."""
    from mobattn.bench.op_compare import SCALED, comparisons
    from mobattn.bench.report import markdown_table

    found = comparisons(rows)
    for runtime in ("executorch", "litert"):
        mine = [c for c in found if runtime in c.runtimes]
        if not mine:
            continue
        worst = max(mine, key=lambda c: c.ratio(runtime))
        print(f"\n**Worst {runtime} row**: {worst.subject}, {worst.ratio(runtime):.2f}x onnxruntime.\n")
        print(markdown_table(*worst.table()))
    print(f"\n{SCALED}.")


def print_coverage(rows: list[Row]) -> None:
    """How much of the timed median each runtime's profiled ops account for."""
    print("\n| profiler | rows | profiled ops / timed median: median (min-max) | within 10% |")
    print("| --- | --- | --- | --- |")
    for runtime in BACKENDS:
        shares = sorted(
            r.details["op_profile"]["op_ms"] / r.median_ms
            for r in rows
            if r.backend == runtime and r.ok and "op_ms" in (r.details.get("op_profile") or {})
        )
        if shares:
            within = sum(abs(share - 1) <= 0.10 for share in shares)
            middle = shares[len(shares) // 2]
            print(
                f"| {runtime} | {len(shares)} | {middle:.0%} ({shares[0]:.0%}-{shares[-1]:.0%}) | "
                f"{within} of {len(shares)} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
