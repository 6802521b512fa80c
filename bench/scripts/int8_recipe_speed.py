"""Benchmark (not a test): what the int8 recipes cost in latency, against fp32, per runtime.

    python bench/scripts/int8_recipe_speed.py > results/benchmarks/int8_recipe_speed.md

A script beside the package, not installed. For each model (seeded weights: latency does
not depend on the weights' values) and each runtime that takes int8 (onnxruntime,
ExecuTorch, LiteRT), the fp32 file and the int8 files of both recipes (``--int8-recipe
outlier-aware``, the default, and ``all-ops``) are exported once, then timed by
``mobattn bench FILE`` (1 thread, batch 1, the default profile) in alternating rounds, so
machine noise hits them alike; the table gives each int8 median over the fp32 median of the
same round, the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TARGETS = {"onnx": ".onnx", "executorch": ".pte", "litert": ".tflite"}
VARIANTS = {"fp32": [], "int8 outlier-aware": ["--precision", "int8"]}
VARIANTS["int8 all-ops"] = ["--precision", "int8", "--int8-recipe", "all-ops"]


def mobattn(*args: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "mobattn", *args, "--json"], capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"mobattn {' '.join(args)} failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="swiftformer_s,deit_tiny")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lines = [
        "Measured by `python bench/scripts/int8_recipe_speed.py` (1 thread, batch 1, default profile, "
        f"{args.rounds} alternating rounds; seeded weights, int8 calibrated on random inputs). Each cell: "
        "int8 median / fp32 median of the same round (median over rounds); below 1 is faster.",
        "",
        "| model | runtime | fp32 ms | int8 outlier-aware (default) | int8 all-ops |",
        "| --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="int8-speed-") as tmp:
        for model in args.models.split(","):
            for target in args.targets.split(","):
                files = {}
                for name, options in VARIANTS.items():
                    out = Path(tmp) / name.replace(" ", "_")
                    print(f"{model} {target} {name}: export", file=sys.stderr, flush=True)
                    (record,) = mobattn(
                        "export", "--model", model, "--to", target, "--out", str(out), *options
                    )
                    files[name] = record["path"] if record["status"] == "ok" else None
                ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
                fp32_ms = []
                for _ in range(args.rounds):
                    medians = {}
                    for name, path in files.items():
                        if path is None:
                            continue
                        (row,) = mobattn("bench", path, "--threads", "1")
                        medians[name] = row["median_ms"] if row["status"] == "ok" else None
                    if medians.get("fp32"):
                        fp32_ms.append(medians["fp32"])
                        for name, ms in medians.items():
                            if ms:
                                ratios[name].append(ms / medians["fp32"])
                cells = [
                    f"{np.median(ratios[name]):.2f}x" if ratios[name] else "not kept (validation)"
                    for name in ("int8 outlier-aware", "int8 all-ops")
                ]
                base = f"{np.median(fp32_ms):.2f}" if fp32_ms else "n/a"
                lines.append(f"| {model} | {target} | {base} | {cells[0]} | {cells[1]} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
