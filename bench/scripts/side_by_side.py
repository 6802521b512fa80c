"""Benchmark (not a test): several artifact files (.onnx, .pte, .tflite) timed side by side
in one process, each in its own runtime on the CPU, batch 1, interleaved rounds (each round
runs every file in turn, so drift on a shared machine falls on all alike). Prints a
Markdown table: median ms over every run of every round, the spread of the round medians,
and each file's ratio to the first.

    python bench/scripts/side_by_side.py base.onnx other.onnx --threads 1 --runs 100 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mobattn.environment import environment
from mobattn.exporters.files import size_bytes
from mobattn.exporters.formats import target_for_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per file per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sessions = []
    for path in args.files:
        runner = target_for_file(path).implementation().load_runner(path, threads=args.threads)
        shape = [d if isinstance(d, int) else 1 for d in runner.input_shape]
        x = np.random.default_rng(0).standard_normal(shape).astype(runner.input_dtype)
        call = runner.bind(x)
        for _ in range(10):  # warm-up
            call()
        sessions.append((path, call, runner))
    times: dict[Path, list[float]] = {path: [] for path, _, _ in sessions}
    rounds: dict[Path, list[float]] = {path: [] for path, _, _ in sessions}
    for _ in range(args.rounds):
        for path, call, _ in sessions:
            mine = []
            for _ in range(args.runs):
                start = time.perf_counter()
                call()
                mine.append((time.perf_counter() - start) * 1e3)
            times[path] += mine
            rounds[path].append(float(np.median(mine)))
    env = environment()
    print(
        "Measured by `python bench/scripts/side_by_side.py` on "
        f"{env.get('cpu')}, {env.get('cores')} cores "
        f"({args.threads} thread(s), {args.rounds} interleaved rounds "
        f"of {args.runs} runs).\n"
    )
    print("| file | median ms | round medians (min-max) | x the first | size MB |")
    print("| --- | --- | --- | --- | --- |")
    first = float(np.median(times[sessions[0][0]]))
    for path, _, _ in sessions:
        median = float(np.median(times[path]))
        low, high = min(rounds[path]), max(rounds[path])
        print(
            f"| {path.parent.name}/{path.name} | {median:.3f} | {low:.3f}-{high:.3f} "
            f"| {median / first:.2f} | {size_bytes(path) / 1e6:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
