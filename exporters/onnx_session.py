"""The one place an onnxruntime session is made, shared by the exporter, its file side
and the op profiler (:mod:`.onnx_profile`)."""

from __future__ import annotations

from pathlib import Path

from mobattn.errors import MobattnError


def ort_session(
    path: Path, threads: int = 1, providers: list[str] | None = None, profile_prefix: str | None = None
):
    """The one place an onnxruntime session is made: ``threads`` intra-op threads, one
    inter-op, quiet; profiling into ``profile_prefix`` on request."""
    import onnxruntime as ort

    options = ort.SessionOptions()
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
