"""Where the time goes inside a runtime: onnxruntime's own profiler, summed per op type
and per node (``mobattn bench --op-profile``), in the manner of onnxruntime_perf_test."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

TOP = 20


def onnxruntime_op_profile(
    path: Path, feed: dict[str, np.ndarray], threads: int, runs: int = 20, **options
) -> dict:
    """Per op type and per node (top 20): mean milliseconds per inference and share of the
    profiled kernel time, over ``runs`` inferences (the process is warm: it was just timed)."""
    from .onnx_session import ort_session

    with tempfile.TemporaryDirectory(prefix="mobattn-profile-") as folder:
        session = ort_session(path, threads, profile_prefix=str(Path(folder) / "ort"), **options)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return summarise(events, runs)


def summarise(events: list[dict], runs: int) -> dict:
    """Kernel events (``cat == "Node"``, ``*_kernel_time``) summed by op type and node."""
    kernels = [
        e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]
    per_node: dict[str, list] = defaultdict(lambda: ["", 0.0, 0])
    for event in kernels:
        name = event["name"].removesuffix("_kernel_time")
        entry = per_node[name]
        entry[0] = event.get("args", {}).get("op_name", "?")
        entry[1] += event.get("dur", 0) / 1000.0  # microseconds -> ms
        entry[2] += 1
    total = sum(ms for _, ms, _ in per_node.values()) or 1.0
    per_type: dict[str, float] = defaultdict(float)
    for op, ms, _ in per_node.values():
        per_type[op] += ms
    inferences = max(runs, 1)
    by_type = [
        {"op_type": op, "ms": ms / inferences, "share": ms / total}
        for op, ms in sorted(per_type.items(), key=lambda kv: -kv[1])[:TOP]
    ]
    by_node = [
        {"node": name, "op_type": op, "ms": ms / inferences, "share": ms / total}
        for name, (op, ms, _) in sorted(per_node.items(), key=lambda kv: -kv[1][1])[:TOP]
    ]
    return {
        "runtime": "onnxruntime profiler",
        "inferences": inferences,
        "op_ms": sum(ms for _, ms, _ in per_node.values()) / inferences,
        "by_op_type": by_type,
        "by_node": by_node,
    }
