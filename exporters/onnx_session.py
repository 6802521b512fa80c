"""The one place an onnxruntime session is made, shared by the exporter, its file side
and the op profiler (:mod:`.onnx_profile`)."""

from __future__ import annotations

from pathlib import Path

from mobattn.errors import MobattnError

# The runtime options a benchmark backend may set for this target's runner (bench.config)
RUNTIME_OPTIONS = {"graph_optimization": ("disabled", "basic", "extended", "all")}


def ort_session(
    path: Path,
    threads: int = 1,
    providers: list[str] | None = None,
    profile_prefix: str | None = None,
    graph_optimization: str = "all",
):
    """The one place an onnxruntime session is made: ``threads`` intra-op threads, one
    inter-op, quiet; profiling into ``profile_prefix`` on request; graph optimizations at
    ``graph_optimization`` (onnxruntime's default: all)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = {
        "disabled": level.ORT_DISABLE_ALL,
        "basic": level.ORT_ENABLE_BASIC,
        "extended": level.ORT_ENABLE_EXTENDED,
        "all": level.ORT_ENABLE_ALL,
    }[graph_optimization]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def providers_for(device: str) -> list[str]:
    """onnxruntime's execution providers for ``device``."""
    import onnxruntime as ort

    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise MobattnError(
                "--device cuda: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
