"""Benchmark page section (not a test): the default layout against `--layout ane`, for
swiftformer_s and each attention swap.

    python bench/scripts/ane_layout.py > results/benchmarks/ane_layout.md

For each: the Core ML fp16 package's op count, transposes, reshapes, ops with a rank-3
output and the Neural Engine rules' ops_at_risk (`mobattn inspect`), then what the ANE
rewrite costs where there is no Neural Engine: the same module exported to onnxruntime
and ExecuTorch in both layouts, timed back to back on this machine's CPU (1 thread, batch
1, fp32; median of the default profile). A script beside the package, not installed.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
from pathlib import Path

from mobattn import list_attentions
from mobattn.bench.api import file_configs, measure
from mobattn.environment import environment
from mobattn.exporters import export, model_subject
from mobattn.exporters.deploy import deployable
from mobattn.exporters.fold import fold_for_inference
from mobattn.exporters.inspection import inspect_coreml

MODEL = "swiftformer_s"


def counts(path: Path) -> dict:
    report = inspect_coreml(path)
    rules = report.ane["summary"]["rules"]
    return {
        "ops": report.ops_total,
        "transposes": report.op_histogram.get("transpose", 0),
        "reshapes": rules.get("reshape", 0),
        "rank3": rules.get("rank3", 0),
        "at_risk": report.ane["summary"]["ops_at_risk"],
    }


def cpu_ms(subject, folder: Path, layout: str) -> dict[str, float | str]:
    """onnxruntime and ExecuTorch medians of the subject in ``layout`` (exported here)."""
    if layout == "ane":
        subject = dataclasses.replace(subject, module=deployable(fold_for_inference(subject.module), "ane"))
    out = {}
    for target, backend in (("onnx", "onnxruntime"), ("executorch", "executorch")):
        record = export(subject, target, folder / layout, force=True)
        if record.status != "ok":
            out[backend] = f"{record.status}: {record.reason[:60]}"
            continue
        (row,) = measure(file_configs(record.path, backend), results=None)
        out[backend] = row.median_ms if row.ok else f"{row.status}: {row.reason[:60]}"
        if backend == "executorch":
            left = record.details.get("not_delegated") or {}
            out["portable"] = (
                ", ".join(f"{op.removeprefix('aten_')} x{n}" for op, n in left.items()) or "none"
            )
    return out


def cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    env = environment()
    print(
        f"Measured here: `python bench/scripts/ane_layout.py` ({env.get('cpu')}, {platform.system()}; "
        "Core ML counts from fp16 packages, `mobattn inspect`; CPU latency 1 thread, batch 1, fp32, "
        "each layout exported and timed back to back).\n"
    )
    print(
        "| model | layout | Core ML ops | transposes | reshapes | rank-3 ops | ops at risk | "
        "onnxruntime ms | ExecuTorch ms | ExecuTorch ops on portable kernels |"
    )
    print("|" + " --- |" * 10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for attention in list_attentions():
            subject = model_subject(MODEL, attention=None if attention == "eaa" else attention)
            for layout in ("default", "ane"):
                record = export(subject, "coreml", folder / layout, layout=layout, force=True)
                if record.status not in ("ok", "unvalidated"):
                    raise SystemExit(f"{subject.stem()} {layout}: {record.status}: {record.reason}")
                c = counts(Path(record.path))
                ms = cpu_ms(subject, folder, layout)
                print(
                    f"| {MODEL}+{attention} | {layout} | {c['ops']} | {c['transposes']} | {c['reshapes']} | "
                    f"{c['rank3']} | {c['at_risk']} | {cell(ms['onnxruntime'])} | {cell(ms['executorch'])} | "
                    f"{ms.get('portable', '-')} |"
                )


if __name__ == "__main__":
    main()
