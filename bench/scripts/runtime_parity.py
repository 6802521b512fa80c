"""Benchmark page section (not a test): ExecuTorch against onnxruntime, each runtime
timing its fastest faithful form of every mechanism and model, as the ratio
ExecuTorch median / onnxruntime median of rows measured side by side in one sweep.

    mobattn sweep --preset runtime-parity --results results/benchmarks/runtime-parity.jsonl
    python bench/scripts/runtime_parity.py > results/benchmarks/runtime_parity.md

"before" is the previous stage's pair of sweeps (ExecuTorch lowered from the modules as
written), read from results/benchmarks/history and attention-scaling.jsonl; it ran on
another machine, which its column names. A script beside the package, not installed.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from mobattn.bench.results import read_rows
from mobattn.bench.row import Row, latest

RESULTS = Path("results/benchmarks")
MECHANISM_GOAL, FAMILY_GOAL = 1.25, 1.1


def subject_key(r: Row) -> tuple:
    if r.kind == "attention":
        return ("attention", r.attention, r.dim, tuple(r.hw))
    return ("model", r.model, r.attention or "eaa", tuple(r.resolution or ()))


def pairs(rows: list[Row]) -> dict[tuple, dict[str, Row]]:
    """(subject, cpu) -> {backend: row} for ok fp32 single-thread rows."""
    paired: dict[tuple, dict[str, Row]] = defaultdict(dict)
    for r in latest(rows):
        if r.ok and r.threads == 1 and r.precision == "fp32" and r.backend in ("onnxruntime", "executorch"):
            paired[subject_key(r), r.environment.get("cpu")][r.backend] = r
    return {k: v for k, v in paired.items() if len(v) == 2}


def ratio(pair: dict[str, Row]) -> float:
    return pair["executorch"].median_ms / pair["onnxruntime"].median_ms


def off_path(pair: dict[str, Row]) -> str:
    export = pair["executorch"].details.get("export") or {}
    left = export.get("not_delegated")
    return "none" if left == {} else (", ".join(f"{k} x{v}" for k, v in left.items()) if left else "?")


def noisy(pair: dict[str, Row]) -> str:
    return " ~" if any(r.noisy for r in pair.values()) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=Path, default=RESULTS / "runtime-parity.jsonl")
    parser.add_argument(
        "--before",
        type=Path,
        nargs="*",
        default=[
            RESULTS / "history/attention-scaling-executorch.jsonl",
            RESULTS / "attention-scaling.jsonl",
            RESULTS / "history/models.jsonl",
        ],
    )
    args = parser.parse_args()
    after = pairs(read_rows(args.after))
    before_rows = [r for path in args.before for r in read_rows(path)]
    before = {k[0]: (v, k[1]) for k, v in pairs(before_rows).items()}
    cpu = next(iter(after))[1] if after else "?"
    before_cpu = next(iter(before.values()))[1] if before else "?"

    print(
        "Fairness rule: each runtime times each mechanism in its fastest faithful form: the same "
        "parameters and, in fp32, the reference module's outputs within 1e-4 relative (every artifact is "
        "validated against the reference before it is timed). onnxruntime runs the modules as written "
        "(its graph optimizer fuses them); ExecuTorch runs the `xnnpack` form of `exporters/deploy`, in "
        "which nothing is left on ExecuTorch's portable kernels. Any op that stays off XNNPACK is named "
        "in the last column.\n"
    )
    print(
        f"Measured here: `mobattn sweep --preset runtime-parity` ({cpu}, 1 thread, batch 1, fp32; "
        "ExecuTorch and onnxruntime measured back to back per configuration). Before: the previous "
        f"stage's sweeps ({before_cpu}), ExecuTorch lowered from the modules as written. "
        "`~`: a noisy row (IQR above 10% of the median).\n"
    )
    worst: dict[str, float] = {}
    print(
        f"### Bare mechanisms: ExecuTorch / onnxruntime (goal <= {MECHANISM_GOAL})\n\n"
        "| mechanism | dim | tokens | onnxruntime ms | ExecuTorch ms | ratio | before | ops off XNNPACK |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    bare = sorted(
        ((k, v) for k, v in after.items() if k[0][0] == "attention"),
        key=lambda kv: (kv[0][0][1], kv[0][0][2], kv[0][0][3][0] * kv[0][0][3][1]),
    )
    for (key, _), pair in bare:
        _, attention, dim, hw = key
        r = ratio(pair)
        worst[attention] = max(worst.get(attention, 0.0), r)
        old = before.get(key)
        print(
            f"| {attention} | {dim} | {hw[0]}x{hw[1]} | {pair['onnxruntime'].median_ms:.3f} | "
            f"{pair['executorch'].median_ms:.3f} | **{r:.2f}**{noisy(pair)} | "
            f"{f'{ratio(old[0]):.2f}' if old else '-'} | {off_path(pair)} |"
        )
    print(
        "\nWorst ratio per mechanism: "
        + ", ".join(
            f"{a} {w:.2f} ({'meets' if w <= MECHANISM_GOAL else 'misses'} the goal)"
            for a, w in sorted(worst.items())
        )
        + "\n"
    )
    print(
        "### Models at 224x224: ExecuTorch / onnxruntime "
        f"(goal for the SwiftFormer family <= {FAMILY_GOAL})\n\n"
        "| model | attention | onnxruntime ms | ExecuTorch ms | ratio | before | ops off XNNPACK |\n"
        "| --- | --- | --- | --- | --- | --- | --- |"
    )
    models = sorted(((k, v) for k, v in after.items() if k[0][0] == "model"), key=lambda kv: kv[0][0][1:3])
    for (key, _), pair in models:
        _, model, attention, _res = key
        r = ratio(pair)
        mark = "" if attention != "eaa" else (" (meets)" if r <= FAMILY_GOAL else " (misses)")
        old = before.get(key)
        print(
            f"| {model} | {attention} | {pair['onnxruntime'].median_ms:.2f} | "
            f"{pair['executorch'].median_ms:.2f} | **{r:.2f}**{noisy(pair)}{mark} | "
            f"{f'{ratio(old[0]):.2f}' if old else '-'} | {off_path(pair)} |"
        )


if __name__ == "__main__":
    main()
