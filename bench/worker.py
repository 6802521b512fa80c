"""Measure one configuration in this process and return its results row.

Run as ``python -I -m mobattn.bench.worker PHASE`` it reads ``{"config": BenchConfig,
"artifact": Artifact or null}`` as JSON on stdin and prints one JSON line: ``export``
writes the artifact an artifact backend loads (``{"artifact": Artifact}``), ``measure``
times it (``{"measured": row}``); a failure in either is ``{"row": row}``. That is how
each step gets a fresh process.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

from mobattn.environment import use_environment
from mobattn.errors import MobattnError, described, is_out_of_memory

from . import memory
from .backends import (
    Artifact,
    check_cached,
    export_artifact,
    needs_export,
    prepare,
    target_of,
    temporary_folder,
)
from .base_row import base_row  # noqa: F401  (re-exported: the worker starts every row from it)
from .config import BenchConfig, get_backend, pinned_cores
from .quiet import OtherLoad
from .row import Row, derived_noisy
from .timer import TimingPolicy, measure


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set for a measurement and restored after it (in-process
    runs must not leave the caller's process changed)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # inter-op can be set once per process
        torch.set_num_interop_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def classify_failure(exc: BaseException, memory_limit_mb: int | None = None) -> tuple[str, str]:
    """``oom`` for an allocation failure (and, under a memory limit, for the SystemError
    CPython raises when native code fails an allocation without saying so), else ``error``."""
    if memory_limit_mb and isinstance(exc, SystemError):
        return "oom", f"{described(exc)} (under the {memory_limit_mb} MiB memory limit)"
    if is_out_of_memory(exc):
        return "oom", described(exc)
    return "error", described(exc)


# What a subject's params and MACs depend on (not how or where it is timed), and what is counted
FIGURE_SUBJECT = ("kind", "model", "attention", "resolution", "dim", "hw", "heads", "batch")
COUNTED = ("params", "macs", "param_bytes")


def figure_subject(config: BenchConfig) -> dict | None:
    """The fields a subject's counted figures are remembered under (None: a file's)."""
    if config.kind == "file":
        return None
    return {k: v for k, v in config.subject_fields().items() if k in FIGURE_SUBJECT}


def live_tensor_peak_mib(config: BenchConfig, prepared) -> float:
    """The peak of live tensors in a forward of the fp32 CPU module (:mod:`.memory`),
    remembered per subject like its counts."""
    from mobattn.catalogue import remember_figures, remembered_figures

    subject = figure_subject(config)
    found = remembered_figures(subject).get("live_tensor_peak_mib") if subject else None
    if found is None:
        found = memory.live_tensor_peak_mib(prepared.module, prepared.example)
        if subject:
            remember_figures(subject, {"live_tensor_peak_mib": found})
    return found


def _count_figures(config: BenchConfig, prepared) -> dict | None:
    """Params, MACs (torch's FLOP counter) and parameter bytes of the fp32 CPU module
    behind ``config``; None for a file (no module at hand)."""
    from mobattn.flops import count_macs, count_params

    from .backends import subject_for_figures

    if prepared.module is not None and config.device == "cpu" and config.precision == "fp32":
        module, example = prepared.module, prepared.example
    else:
        module, example = subject_for_figures(config)
        if module is not None:  # counted on shapes alone: the same count, no arithmetic (a
            module, example = module.to("meta"), example.to("meta")  # 256x256 MHSA takes seconds)
    if module is None:
        return None
    return {
        "params": count_params(module),
        "macs": count_macs(module, example),
        "param_bytes": sum(p.numel() * p.element_size() for p in module.parameters()),
    }


def compute_figures(median_ms: float, config: BenchConfig, prepared) -> dict:
    """Params, MACs and achieved GFLOP/s against the matmul peak. The counts are the
    subject's: remembered once counted (:func:`mobattn.catalogue.remembered_figures`),
    else counted here, after timing (artifact backends and CUDA/fp16 runs have no CPU fp32
    module at hand, so theirs is built)."""
    from mobattn.catalogue import remember_figures, remembered_figures

    subject = figure_subject(config)
    known = remembered_figures(subject) if subject else {}
    counted = {k: known[k] for k in COUNTED} if all(k in known for k in COUNTED) else None
    if counted is None:
        counted = _count_figures(config, prepared)
        if counted is None:
            return {
                "params": None,
                "macs": None,
                "param_bytes": None,
                "gflops_per_s": None,
                "fraction_of_peak": None,
            }
        if subject:
            remember_figures(subject, counted)
    macs = counted["macs"]
    gflops = 2 * macs / (median_ms / 1e3) / 1e9
    peak = config.matmul_peak_gflops
    return {
        **counted,
        "gflops_per_s": gflops,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": gflops / peak if peak else None,
    }


def run_config(config: BenchConfig, artifact: Artifact | None = None) -> Row:
    """Measure ``config`` here; failures become a row with status and reason. An artifact
    backend's file is ``artifact`` (exported by an earlier phase), or exported here first.

    Memory: the baseline is this process's RSS once imports are done and any artifact
    exported (:func:`backends.export_artifact`); ``peak_rss_mib`` is the kernel's
    high-water mark above it, through loading and timing.
    """
    row = base_row(config)
    folder = None
    try:
        if artifact is None and needs_export(config):
            folder = temporary_folder()
            artifact = export_artifact(config, Path(folder.name))
        with torch_threads(config.threads):
            _measure_into(row, config, artifact)
        row.status = "ok"
    except MobattnError as exc:
        row.reason = str(exc)
    except (Exception, MemoryError) as exc:
        row.status, row.reason = classify_failure(exc, config.memory_limit_mb)
        if row.status == "error":
            row.traceback = traceback.format_exc(limit=5)
    finally:
        if folder is not None:
            folder.cleanup()
        if config.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()  # in-process GPU sweeps: an oom row leaves the next room
    return row


def _measure_into(row: Row, config: BenchConfig, artifact: Artifact | None) -> None:
    if config.pin:  # before any runtime starts its thread pool
        os.sched_setaffinity(0, pinned_cores(config.pin))
    baseline_mb = memory.rss_mib()
    memory.reset_peak_rss()
    if config.memory_limit_mb:
        memory.limit_address_space(config.memory_limit_mb)
    cuda = config.device == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for name in get_backend(config.backend).imports:  # an import is the worker's start, not the load
        importlib.import_module(name)
    clock = time.perf_counter()
    prepared = prepare(config, artifact)
    row.load_ms = (time.perf_counter() - clock) * 1e3
    others = OtherLoad.start()
    result = measure(prepared.run, config.threads, TimingPolicy.named(config.profile), prepared.sync)
    row.other_cpu_cores = others.cores()
    for name, value in result.statistics().items():
        setattr(row, name, value)
    row.noisy = derived_noisy(row)  # the one rule, as when the row is read back
    row.first_run_ms = result.first_run_ns / 1e6
    phases = {
        "load": row.load_ms / 1e3,
        "first_run": row.first_run_ms / 1e3,
        "warmup": result.warmup_s,
        "timed": sum(result.samples_ns) / 1e9,
    }
    clock = time.perf_counter()
    row.throughput_fps = config.batch * 1000.0 / result.median_ms
    if config.samples:
        row.samples_ms = [round(ns / 1e6, 6) for ns in result.samples_ns]
    row.peak_rss_mib = memory.peak_rss_mib() - baseline_mb
    row.baseline_rss_mib = baseline_mb
    row.artifact_bytes = prepared.artifact_bytes
    row.cuda_max_allocated_mib = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    if cuda:  # the GPU's own time per call, after the wall timing
        from .cuda_timing import gpu_time_ms

        row.gpu_median_ms = gpu_time_ms(prepared.run)
        replays = config.backend == "torch-cudagraph"
        row.gpu_time_method = "CUDA events around each " + ("graph replay" if replays else "call")
    if config.backend == "torch" and config.device == "cpu":
        row.live_tensor_peak_mib = live_tensor_peak_mib(config, prepared)
    for name, value in compute_figures(result.median_ms, config, prepared).items():
        setattr(row, name, value)
    phases["figures"] = time.perf_counter() - clock  # memory and FLOP counts after timing
    row.phases_s = phases
    row.details = prepared.details
    if artifact is not None:
        row.details["export"] = artifact.export
        row.details["artifact_sha256"] = artifact.sha256  # the file timed, cached or not
        row.artifact_cached = artifact.cached
        row.phases_s.update(artifact.phases_s)
    if config.op_profile:  # after timing and memory, so profiling costs neither
        row.details["op_profile"] = (
            prepared.op_profile()
            if prepared.op_profile
            else {
                "unavailable": f"per-op profiles come from onnxruntime's profiler and ExecuTorch's event "
                f"tracer; {config.backend} has "
                "none here"
            }
        )
    row.validation = artifact.validation if artifact is not None else None
    if artifact is not None and artifact.cached:
        row.validation = row.details["cache_check"] = check_cached(config, prepared, artifact)
        if not row.validation["passed"]:  # nothing of the timing stands: it timed another file
            kept = {"details": row.details, "validation": row.validation, "environment": row.environment}
            vars(row).update({**vars(base_row(config)), **kept})
            raise MobattnError(
                "the cached artifact does not agree with its subject "
                f"({row.validation['note']}; cosine {row.validation['cosine']}); its entry is removed"
            )


def export_phase(config: BenchConfig) -> dict:
    """Write the artifact the measure phase will load, inside this worker's limits.

    The failure row and the exporter's modules are ready before the memory limit
    applies, so the limit covers the export's own work and a failure can still be told."""
    row = base_row(config)
    try:
        target_of(config).implementation()
        if config.memory_limit_mb:
            memory.limit_address_space(config.memory_limit_mb)
        return {"artifact": export_artifact(config, Path.cwd()).to_dict()}
    except MobattnError as exc:
        row.reason = f"export: {exc}"
    except (Exception, MemoryError) as exc:
        row.status, row.reason = classify_failure(exc, config.memory_limit_mb)
        row.reason = f"export: {row.reason}"
    return {"row": row.to_dict()}


def answer(phase: str, request: dict) -> dict:
    """One worker phase's answer to a runner's request (the same for a fresh worker and a
    child of the warm template, :mod:`.forkserver`); ``worker_s`` is the time spent here,
    after the imports, so the runner can tell the worker's start from its work."""
    start = time.perf_counter()
    if request.get("environment"):
        use_environment(request["environment"])  # measured once per sweep by the runner
    config = BenchConfig(**request["config"])
    artifact = Artifact(**request["artifact"]) if request.get("artifact") else None
    if phase == "export":
        result = export_phase(config)
    else:
        result = {"measured": run_config(config, artifact).to_dict()}
    return {**result, "worker_s": time.perf_counter() - start}


def main() -> None:
    phase = sys.argv[1] if len(sys.argv) > 1 else "measure"
    result = answer(phase, json.loads(sys.stdin.read()))
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
