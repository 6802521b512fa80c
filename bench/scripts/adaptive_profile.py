"""The adaptive profile against the default one, measured side by side in one run.

For each configuration (five mechanisms x 14x14 and 56x56 tokens x torch and
onnxruntime, dim 64, 1 thread) the default profile (50 runs and 2 s) and the adaptive one
(stop once the median's 95% confidence interval is within +-1%) are measured in turn,
alternating which goes first, in the same warm workers with the same cached artifact.
Prints the page's markdown section.

    .venv/bin/python bench/scripts/adaptive_profile.py > results/benchmarks/adaptive_profile.md
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace

MECHANISMS = ("eaa", "hilo", "external", "ufo", "mhsa")


def main() -> None:
    from mobattn.bench import attention_configs
    from mobattn.bench.cache import ArtifactCache
    from mobattn.bench.compute import machine_peak_gflops
    from mobattn.bench.runner import run
    from mobattn.bench.workers import worker_pool

    configs = attention_configs(MECHANISMS, [64], [(14, 14), (56, 56)], backends=["torch", "onnxruntime"])
    lines = []
    ratios, timed = [], {"default": 0.0, "adaptive": 0.0}
    started = time.strftime("%Y-%m-%d %H:%M")
    with worker_pool("warm", {"onnx"}) as pool:
        workers, cache = pool.get(), ArtifactCache()
        for i, config in enumerate(configs):
            config.matmul_peak_gflops = machine_peak_gflops(config.threads, config.device)
            order = ("default", "adaptive") if i % 2 == 0 else ("adaptive", "default")
            rows = {p: run(replace(config, profile=p), workers=workers, cache=cache) for p in order}
            default, adaptive = rows["default"], rows["adaptive"]
            if not (default.ok and adaptive.ok):
                lines.append(f"| {config.label()} | failed: {default.reason or adaptive.reason} | | | | |")
                continue
            ratio = adaptive.median_ms / default.median_ms
            ratios.append(ratio)
            for profile, row in rows.items():
                timed[profile] += row.phases_s["timed"] + row.phases_s["warmup"]
            lines.append(
                f"| {config.label()} | {default.median_ms:.4f} | {adaptive.median_ms:.4f} | {ratio:.3f} | "
                f"{default.iterations} / {adaptive.iterations} | "
                f"{'yes' if default.noisy or adaptive.noisy else 'no'} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    within = sum(1 for r in ratios if abs(r - 1) <= 0.02)
    print(
        f"Measured by `bench/scripts/adaptive_profile.py` ({started} UTC, this project's 2-core machine): "
        f"{len(ratios)} configurations, each timed with `--profile default` and `--profile adaptive` in "
        f"turn. Adaptive / default median: median {statistics.median(ratios):.3f}, "
        f"{within} of {len(ratios)} within +-2%; warm-up and timed runs took "
        f"{timed['adaptive']:.1f} s adaptive against {timed['default']:.1f} s default.\n"
    )
    print(
        "| configuration | default median (ms) | adaptive median (ms) | adaptive / default | runs | noisy |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
