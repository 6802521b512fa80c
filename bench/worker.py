"""Measure one configuration in this process and return its results row.

Run as ``python -m mobattn.bench.worker`` it reads a BenchConfig as JSON on stdin and
prints the row as one JSON line: that is how each configuration gets a fresh process.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback

import torch

from mobattn.environment import environment
from mobattn.errors import MobattnError

from . import memory
from .backends import materialize, prepare
from .config import BenchConfig
from .timer import TimingPolicy, measure

OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "bad_alloc",
    "failed to allocate",
)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (in-process runs)
        pass


def base_row(config: BenchConfig) -> dict:
    return {
        **config.subject_fields(),
        "status": "error",
        "reason": "",
        "pid": os.getpid(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(),
    }


def classify_failure(exc: BaseException) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0][:300]
    if isinstance(exc, MemoryError) or any(m in text.lower() for m in OOM_MARKERS):
        return "oom", first
    return "error", first


def compute_figures(median_ms: float, config: BenchConfig, prepared) -> dict:
    """Params, MACs (torch's FLOP counter) and achieved GFLOP/s against the matmul peak.
    Artifact backends (and CUDA/fp16 runs) have no CPU fp32 module at hand, so theirs is
    built here, after timing."""
    from mobattn.flops import count_macs, count_params

    from .backends import subject_for_figures

    if prepared.module is not None and config.device == "cpu" and config.precision == "fp32":
        module, example = prepared.module, prepared.example
    else:
        module, example = subject_for_figures(config)
    if module is None:
        return {
            "params": None,
            "macs": None,
            "param_bytes": None,
            "gflops_per_s": None,
            "fraction_of_peak": None,
        }
    macs = count_macs(module, example)
    params = count_params(module)
    gflops = 2 * macs / (median_ms / 1e3) / 1e9
    peak = config.matmul_peak_gflops
    return {
        "params": params,
        "macs": macs,
        "param_bytes": sum(p.numel() * p.element_size() for p in module.parameters()),
        "gflops_per_s": gflops,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": gflops / peak if peak else None,
    }


def run_config(config: BenchConfig) -> dict:
    """Measure ``config`` here; failures become a row with status and reason.

    Memory: the baseline is this process's RSS once imports are done and any artifact
    exported (:func:`backends.materialize`); ``peak_rss_mb`` is the kernel's
    high-water mark above it, through loading and timing.
    """
    row = base_row(config)
    try:
        keep = materialize(config)  # noqa: F841  (the exported file lives until we return)
        set_threads(config.threads)
        baseline_mb = memory.rss_mb()
        memory.reset_peak_rss()
        if config.memory_limit_mb:
            memory.limit_address_space(config.memory_limit_mb)
        if config.device == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        prepared = prepare(config)
        result = measure(prepared.run, config.threads, TimingPolicy.named(config.profile), prepared.sync)
        row.update(result.statistics())
        row["peak_rss_mb"] = memory.peak_rss_mb() - baseline_mb
        row["baseline_rss_mb"] = baseline_mb
        row["artifact_bytes"] = prepared.artifact_bytes
        row["cuda_max_allocated_mb"] = (
            torch.cuda.max_memory_allocated() / 2**20
            if config.device == "cuda" and torch.cuda.is_available()
            else None
        )
        row["live_tensor_peak_mb"] = (
            memory.live_tensor_peak_mb(prepared.module, prepared.example)
            if config.backend == "torch" and config.device == "cpu"
            else None
        )
        row.update(compute_figures(result.median_ms, config, prepared))
        row["details"] = prepared.details
        row["validation"] = config.extra.get("validation")
        row["status"] = "ok"
    except MobattnError as exc:
        row["reason"] = str(exc)
    except (Exception, MemoryError) as exc:
        row["status"], row["reason"] = classify_failure(exc)
        if row["status"] == "error":
            row["traceback"] = traceback.format_exc(limit=5)
    return row


def main() -> None:
    import json

    config = BenchConfig.from_json(sys.stdin.read())
    row = run_config(config)
    sys.stdout.write("\n" + json.dumps(row, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
