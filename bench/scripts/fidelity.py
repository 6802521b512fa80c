"""Benchmark (not a test): does mobattn's onnxruntime measurement agree with a bare
onnxruntime loop on the same file, and what does the timer itself cost?

    python bench/scripts/fidelity.py [--model swiftformer_xs] [--threads 1] [--rounds 3]

A script beside the package, not installed.

Both are timed in this one run, alternating, so machine noise hits them alike; the
medians should agree within 5%.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mobattn.bench.timer import TimingPolicy, measure
from mobattn.exporters import model_subject
from mobattn.exporters.to_onnx import export_onnx, ort_session


def bare_loop_ms(session, feed, runs: int, warmup: int) -> float:
    """The simplest honest loop: warm up, then time each run with perf_counter_ns."""
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        samples.append(time.perf_counter_ns() - t0)
    return float(np.median(samples)) / 1e6


def timer_overhead_ns(repeats: int = 20000) -> float:
    """Median per-iteration cost of the timing loop around an empty callable."""
    policy = TimingPolicy(warmup_runs=100, warmup_seconds=0.0, min_runs=repeats, min_seconds=0.0)
    return measure(lambda: None, 1, policy).median_ms * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swiftformer_xs")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subject.onnx"
        subject = model_subject(args.model, resolution=(args.resolution, args.resolution))
        export_onnx(subject, path)
        session = ort_session(path, args.threads)
        feed = {subject.input_name: subject.example_input().numpy()}
        policy = TimingPolicy.named("default")
        ours, bare = [], []
        for _ in range(args.rounds):
            m = measure(lambda: session.run(None, feed), args.threads, policy)
            ours.append(m.median_ms)
            bare.append(bare_loop_ms(session, feed, m.iterations, policy.warmup_runs))
    ours_ms, bare_ms = float(np.median(ours)), float(np.median(bare))
    ratio = ours_ms / bare_ms
    print(
        f"{args.model} {args.resolution}px, onnxruntime CPU, {args.threads} thread(s), {args.rounds} rounds"
    )
    print(f"  mobattn measurement median: {ours_ms:.3f} ms  (rounds: {', '.join(f'{v:.3f}' for v in ours)})")
    print(
        f"  bare onnxruntime loop median: {bare_ms:.3f} ms  (rounds: {', '.join(f'{v:.3f}' for v in bare)})"
    )
    print(f"  ratio: {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.05 else 'OUTSIDE'} 5%)")
    print(f"  timer overhead per run: {timer_overhead_ns():.0f} ns")


if __name__ == "__main__":
    main()
