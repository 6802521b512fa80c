"""Benchmark page section (not a test): what one artifact for several input sizes
(``mobattn export --sizes``) costs against a fixed-size export at the same size, per
runtime: latency ratio, load time and file size, measured side by side in one run.

    python bench/scripts/flexible_cost.py --out /tmp/flexible \\
        --results results/benchmarks/flexible.jsonl > results/benchmarks/flexible_cost.md

For SwiftFormer-XS with each mechanism swapped in (and its own, EAA), on onnxruntime,
ExecuTorch and LiteRT: one flexible export per runtime (ONNX and ExecuTorch: height and
width symbolic between the smallest and largest size; LiteRT: a signature per size) and
one fixed export per size; every file is validated against torch by ``export``. Each size
is then timed on the fixed file and on the flexible one, one after the other (quick
profile, 1 thread, batch 1); the rows go to ``--results``. Core ML is validation only
here (no Core ML runtime off Apple's OSes): its enumerated shapes are validated by
``export --sizes`` and the section says so. ``--export-only`` writes the files; ``--measure-only`` times them;
``--report-only`` prints the table from the rows already in ``--results``.
A script beside the package, not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mobattn.bench import api
from mobattn.bench.row import Row
from mobattn.exporters import export, model_subject

GOAL = 1.10  # flexible / fixed, onnxruntime and ExecuTorch
BACKEND = {"onnx": "onnxruntime", "executorch": "executorch", "litert": "litert"}
HOW = {
    "onnx": "height and width symbolic",
    "executorch": "height and width symbolic (XNNPACK: dynamic up to the upper bound)",
    "litert": "one signature per size",
}


def exports(args) -> dict:
    """Every file, exported and validated (or taken from ``--out`` when it is there)."""
    made = {}
    for attention in args.attentions:
        for target in args.targets:
            subject = model_subject(args.model, attention, (args.sizes[0], args.sizes[0]))
            flexible = export(subject, target, args.out, force=True, sizes=tuple(args.sizes))
            _say(flexible)
            fixed = {}
            for size in args.sizes:
                record = export(
                    model_subject(args.model, attention, (size, size)), target, args.out, force=True
                )
                _say(record)
                fixed[str(size)] = record.to_dict()
            made[f"{attention}|{target}"] = {"flexible": flexible.to_dict(), "fixed": fixed}
    return made


def _say(record) -> None:
    print(f"{record.target} {Path(record.path).name}: {record.status} {record.reason[:120]}", file=sys.stderr)


def configs(made: dict, sizes: list[int]) -> list:
    """Per size, the fixed file then the flexible one: side by side."""
    planned = []
    for entry in made.values():
        flexible = entry["flexible"]
        if flexible["status"] != "ok":
            continue
        backend = BACKEND[flexible["target"]]
        for size in sizes:
            fixed = entry["fixed"][str(size)]
            if fixed["status"] != "ok":
                continue
            common = dict(profile="quick", timeout_s=900.0)
            planned += api.file_configs(fixed["path"], backend, [None], [1], **common)
            planned += api.file_configs(flexible["path"], backend, [(size, size)], [1], **common)
    return planned


def report(made: dict, rows: list[Row], sizes: list[int]) -> None:
    by_file = {(Path(r.file).name, tuple(r.resolution or ())): r for r in rows if r.kind == "file"}
    print(
        "Measured by `python bench/scripts/flexible_cost.py` (quick profile, fp32, 1 thread, batch 1; "
        "each size timed on the fixed export and then on the flexible one, in one run). Every file "
        f"was validated against torch at each size it promises. Flexible / fixed above {GOAL} is flagged; "
        "a noisy row is marked ~.\n"
    )
    print(
        "| mechanism | runtime | flexible form | size | fixed ms | flexible ms | flexible / fixed | "
        "load ms fixed / flexible | MB fixed / flexible | machine |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    worst: dict[str, tuple] = {}
    for key, entry in made.items():
        attention, target = key.split("|")
        flexible = entry["flexible"]
        if flexible["status"] != "ok":
            print(
                f"| {attention} | {BACKEND[target]} | {HOW[target]} | - | - | - | {flexible['status']}: "
                f"{flexible['reason'][:100]} | - | - | - |"
            )
            continue
        for size in sizes:
            fixed = entry["fixed"][str(size)]
            a = by_file.get((Path(fixed["path"]).name, ()))
            b = by_file.get((Path(flexible["path"]).name, (size, size)))
            if not (a and b and a.ok and b.ok):
                print(f"| {attention} | {BACKEND[target]} | {HOW[target]} | {size} | not measured |")
                continue
            ratio = b.median_ms / a.median_ms
            noisy = " ~" if a.noisy or b.noisy else ""
            flag = " (over)" if ratio > GOAL and target != "litert" else ""
            if ratio > worst.get(target, (0,))[0]:
                worst[target] = (ratio, attention, size)
            print(
                f"| {attention} | {BACKEND[target]} | {HOW[target]} | {size} | {a.median_ms:.3f} | "
                f"{b.median_ms:.3f} | {ratio:.2f}x{flag}{noisy} | "
                f"{a.load_ms or 0:.0f} / {b.load_ms or 0:.0f} | "
                f"{fixed['size_bytes'] / 1e6:.2f} / {flexible['size_bytes'] / 1e6:.2f} | {a.machine} |"
            )
    print()
    for target, (ratio, attention, size) in worst.items():
        print(f"- worst on {BACKEND[target]}: {attention} at {size}, flexible {ratio:.2f}x fixed")
    print(
        "- Load time: a LiteRT file of several signatures allocates a signature's tensors on its first "
        "run, not when it is loaded, so its load column is not comparable with the fixed file's "
        "(the rows' `first_run_ms` hold the rest)."
    )
    print(
        "- Core ML: `export --sizes` writes enumerated shapes and validates them at each size (by the "
        "reference executor off macOS); nothing is timed for it off Apple's OSes."
    )


def print_sweep(path: Path) -> None:
    """A resolution sweep of one model from one artifact per runtime (`bench FILE` on each
    runtime's file of several sizes), if its rows are there."""
    from mobattn.bench.results import read_rows
    from mobattn.bench.row import latest

    if not path.is_file():
        return
    rows = [r for r in latest(read_rows(path)) if r.ok and r.kind == "file"]
    runtimes = list(dict.fromkeys(r.backend for r in rows))
    sizes = sorted({r.resolution[0] for r in rows})
    cell = {(r.backend, r.resolution[0]): r for r in rows}
    files = ", ".join(sorted({Path(r.file).name for r in rows}))
    print(f"\n**A resolution sweep from one artifact per runtime** ({files}):")
    print("median ms, default profile, 1 thread; ~ marks a noisy row.\n")
    print("| size | " + " | ".join(runtimes) + " |")
    print("| --- | " + " | ".join("---" for _ in runtimes) + " |")
    for size in sizes:
        cells = []
        for runtime in runtimes:
            row = cell.get((runtime, size))
            cells.append(f"{row.median_ms:.2f}{' ~' if row.noisy else ''}" if row else "-")
        print(f"| {size} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swiftformer_xs")
    parser.add_argument("--attentions", default="eaa,hilo,external,ufo,mhsa,separable")
    parser.add_argument("--targets", default="onnx,executorch,litert")
    parser.add_argument("--sizes", default="224,320,512")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mobattn-flexible"))
    parser.add_argument("--results", type=Path, default=Path("results/benchmarks/flexible.jsonl"))
    parser.add_argument(
        "--sweep",
        type=Path,
        default=Path("results/benchmarks/resolution-one-artifact.jsonl"),
        help="rows of `bench FILE` on one file of several sizes per runtime, tabulated after",
    )
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--measure-only", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="the table from --results' rows")
    args = parser.parse_args()
    args.attentions = args.attentions.split(",")
    args.targets = args.targets.split(",")
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    plan = args.out / "exports.json"
    if args.measure_only or args.report_only:
        made = json.loads(plan.read_text())
    else:
        os.makedirs(args.out, exist_ok=True)
        made = exports(args)
        plan.write_text(json.dumps(made, default=str))
    if args.export_only:
        return 0
    if args.report_only:
        from mobattn.bench.results import read_rows
        from mobattn.bench.row import latest

        rows = latest(read_rows(args.results))
    else:
        rows = api.measure(configs(made, args.sizes), results=args.results)
    report(made, rows, args.sizes)
    print_sweep(args.sweep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
