"""Benchmark page section (not a test): every mechanism and every model of the zoo
exported to LiteRT, executed in the interpreter with XNNPACK against torch, with the ops
the delegate took and those it left.

    python bench/scripts/litert_coverage.py > results/benchmarks/litert_coverage.md

A script beside the package, not installed (needs `pip install 'mobattn[litert]'`).
Mechanisms at dim 64 and 14x14 tokens; models at their own input size, seeded weights.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from mobattn.attention import list_attentions
from mobattn.environment import environment
from mobattn.exporters import attention_subject, export, model_subject
from mobattn.models import get_model_config, list_models


def subjects():
    for name in list_attentions():
        yield f"{name} (dim 64, 14x14)", attention_subject(name, 64, (14, 14))
    for name in list_models():
        if name == "vit_tiny_patch16_224":  # deit_tiny's module: the same graph
            continue
        _, h, w = get_model_config(name).input_size
        yield name, model_subject(name, resolution=(h, w))


def main() -> int:
    env = environment()
    lines = [
        f"Measured by `python bench/scripts/litert_coverage.py` on {env['cpu']}, {env['cores']} cores "
        f"(litert-torch {env.get('litert-torch')}, ai-edge-litert {env.get('ai-edge-litert')}, "
        f"torch {env['torch']}); seeded weights, fp32, the `litert` form.",
        "",
        "| subject | converted + validated (s) | max relative error vs torch | ops on XNNPACK | "
        "partitions | ops left to LiteRT's kernels |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="litert-coverage-") as tmp:
        for label, subject in subjects():
            print(f"{label}...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            record = export(subject, "litert", Path(tmp), force=True)
            seconds = time.perf_counter() - start
            if record.status != "ok":
                lines.append(f"| {label} | {record.status}: {record.reason} | | | | |")
                continue
            left = ", ".join(f"{op} x{n}" for op, n in record.details["not_delegated"].items()) or "none"
            lines.append(
                f"| {label} | {seconds:.1f} | {record.validation['max_rel']:.1e} | "
                f"{record.details['delegated_ops']} | {record.details['delegated_subgraphs']} | {left} |"
            )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
