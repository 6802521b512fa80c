"""Benchmark (not a test): mobattn's ONNX export of a SwiftFormer against a plain
``torch.onnx.export`` of a straightforward port of the official code, same weights,
timed side by side under onnxruntime (CPU, batch 1).

    python bench/scripts/export_speed.py [--model swiftformer_s] [--threads 1] [--runs 300]

A script beside the package, not installed (as timm keeps benchmark.py at its root).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from mobattn.bench.measurement import Measurement
from mobattn.exporters import model_subject
from mobattn.exporters.silence import quiet
from mobattn.exporters.to_onnx import export_onnx, ort_session
from official_swiftformer import official_swiftformer  # this folder, first on sys.path


def plain_export(module: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """What a user would write: torch.onnx.export with its defaults."""
    with quiet():
        torch.onnx.export(module, (x,), str(path), input_names=["image"], output_names=["logits"])


def interleaved_samples(sessions: dict, feed: dict, runs: int, warmup: int = 20) -> dict[str, Measurement]:
    """Alternate the sessions call by call, so drift and noise on a shared machine
    fall on every session alike; one Measurement per session."""
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    raw: dict[str, list[int]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, session in sessions.items():
            t0 = time.perf_counter_ns()
            session.run(None, feed)
            raw[name].append(time.perf_counter_ns() - t0)
    return {name: Measurement(tuple(v), threads=0, warmup_runs=warmup) for name, v in raw.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swiftformer_s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300, help="timed calls per export, interleaved")
    args = parser.parse_args()
    variant = args.model.removeprefix("swiftformer_")

    subject = model_subject(args.model)
    official = official_swiftformer(variant).eval()
    official.load_state_dict(subject.module.state_dict())
    x = subject.example_input()
    with tempfile.TemporaryDirectory() as tmp:
        ours_path, plain_path = Path(tmp) / "ours.onnx", Path(tmp) / "plain.onnx"
        export_onnx(subject, ours_path)
        plain_export(official, x, plain_path)
        sessions = {
            "mobattn export": ort_session(ours_path, args.threads),
            "plain export of official port": ort_session(plain_path, args.threads),
        }
        feed = {"image": x.numpy()}
        outputs = {name: s.run(None, feed)[0] for name, s in sessions.items()}
        samples = interleaved_samples(sessions, feed, args.runs)
        graphs = {
            "mobattn export": onnx.load(str(ours_path)),
            "plain export of official port": onnx.load(str(plain_path)),
        }

    diff = float(np.abs(outputs["mobattn export"] - outputs["plain export of official port"]).max())
    setting = f"onnxruntime CPU, {args.threads} thread(s), batch 1, {args.runs} interleaved runs each"
    print(f"{args.model} 224px, {setting}")
    for name in sessions:
        ops = Counter(n.op_type for n in graphs[name].graph.node)
        m = samples[name]
        print(
            f"  {name:32s} median {m.median_ms:7.3f} ms, p90 {m.p90_ms:7.3f} ms, min {m.min_ms:7.3f} ms; "
            f"{sum(ops.values())} nodes, Expand {ops.get('Expand', 0)}, "
            f"BatchNormalization {ops.get('BatchNormalization', 0)}"
        )
    ratio = samples["plain export of official port"].median_ms / samples["mobattn export"].median_ms
    print(f"  speed-up of mobattn's export: {ratio:.3f}x; outputs agree to {diff:.2e} (max abs)")


if __name__ == "__main__":
    main()
