"""Backends turn a configuration into a prepared runner: a zero-argument callable
doing one batch-``B`` inference, plus what is known about it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError, first_line, unknown_name_error

from .config import BENCHMARK_TARGET_SUFFIX, DEVICES, BenchConfig, get_backend
from .op_profile import onnxruntime_op_profile


@dataclass
class Prepared:
    run: object  # () -> Any
    sync: object = None  # () -> None, CUDA
    module: torch.nn.Module | None = None  # the torch module, for FLOPs and tensor memory
    example: torch.Tensor | None = None
    artifact_bytes: int | None = None
    details: dict = field(default_factory=dict)
    keep: list = field(default_factory=list)  # objects that must outlive the run
    op_profile: object = None  # () -> dict, where the runtime can profile per op


def build_subject(config: BenchConfig):
    from mobattn.exporters import attention_subject, model_subject

    if config.kind == "model":
        return model_subject(
            config.model, config.attention, tuple(config.resolution), config.batch, config.weights
        )
    return attention_subject(config.attention, config.dim, tuple(config.hw), config.heads, config.batch)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def check_backend(backend: str, device: str) -> None:
    """The backend and device exist and can run here, checked before anything runs
    (a precision a backend does not measure is a ``skipped`` row, see api.measure)."""
    get_backend(backend)
    if device not in DEVICES:
        raise unknown_name_error("device", device, list(DEVICES))
    if backend == "executorch":
        from mobattn.exporters.to_executorch import require_executorch

        require_executorch()
    check_device(device)


def check_device(device: str) -> None:
    if device == "cuda" and not cuda_available():
        raise MobattnError(
            "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False)"
        )


def prepare_torch(config: BenchConfig) -> Prepared:
    subject = build_subject(config)
    device = torch.device(config.device)
    dtype = torch.float16 if config.precision == "fp16" else torch.float32
    module = subject.module.to(device=device, dtype=dtype).eval()
    x = subject.example_input().to(device=device, dtype=dtype)

    def run():
        with torch.inference_mode():
            return module(x)

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return Prepared(run, sync, subject.module, subject.example_input(), details={"torch": torch.__version__})


def ort_providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise MobattnError(
                "--device cuda: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session(path: Path, config: BenchConfig):
    from mobattn.exporters.to_onnx import ort_session

    return ort_session(path, config.threads, ort_providers(config.device))


def materialize(config: BenchConfig, folder: Path | None = None) -> tempfile.TemporaryDirectory | None:
    """Export what an artifact backend (onnxruntime, executorch) will load, before the
    measuring process takes its memory baseline (the exporter's own memory is not the
    runtime's). Sets ``config.extra["artifact_path"]``, ``config.extra["validation"]``
    (the artifact's agreement with torch) and ``config.extra["export"]`` (its form).
    Written into ``folder``, or into a temporary directory that the caller keeps alive."""
    suffix = BENCHMARK_TARGET_SUFFIX.get(config.backend)
    if suffix is None or config.kind == "file" or "artifact_path" in config.extra:
        return None
    check_device(config.device)
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="mobattn-bench-")
        folder = Path(tmp.name)
    path = folder / f"subject{suffix}"
    subject = build_subject(config)
    if config.backend == "onnxruntime":
        from mobattn.exporters.to_onnx import export_onnx

        facts = export_onnx(subject, path, precision=config.precision)
    else:
        from mobattn.exporters.to_executorch import export_executorch

        facts = export_executorch(subject, path, precision=config.precision)
    config.extra["artifact_path"] = str(path)
    config.extra["validation"] = facts["validation"].to_dict()  # the row says how faithful the artifact is
    # which deployable form was timed, and what (if anything) stayed off the fast path
    config.extra["export"] = {k: v for k, v in facts["details"].items() if k in ("form", "not_delegated")}
    return tmp


def prepare_onnxruntime(config: BenchConfig) -> Prepared:
    """Time mobattn's own ONNX export of the subject (see :func:`materialize`)."""
    keep = materialize(config)
    path = Path(config.extra["artifact_path"])
    session = _session(path, config)
    spec = session.get_inputs()[0]
    shape = [config.batch, *spec.shape[1:]]
    feed = {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return Prepared(
        lambda: session.run(None, feed),
        artifact_bytes=path.stat().st_size,
        details={"providers": session.get_providers()},
        keep=[keep, session],
        op_profile=lambda: onnxruntime_op_profile(path, feed, config.threads),
    )


def _executorch_runner(path: Path, config: BenchConfig) -> tuple[object, dict]:
    from mobattn.exporters.to_executorch import input_shape, load_method, set_threads

    set_threads(config.threads)
    method = load_method(path)
    shape, dtype = input_shape(method)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    return (lambda: method.execute([x])), {"runtime": "ExecuTorch (XNNPACK)", "input_shape": list(shape)}


def prepare_executorch(config: BenchConfig) -> Prepared:
    """Time mobattn's XNNPACK-lowered .pte of the subject in ExecuTorch's runtime."""
    keep = materialize(config)
    path = Path(config.extra["artifact_path"])
    run, details = _executorch_runner(path, config)
    return Prepared(run, artifact_bytes=path.stat().st_size, details=details, keep=[keep])


def _file_input_shape(session, config: BenchConfig) -> tuple[list[int], np.dtype]:
    """The artifact's input shape, with symbolic dims filled from --batch/--resolution."""
    spec = session.get_inputs()[0]
    shape = []
    for i, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif i == 0:
            shape.append(config.batch)
        elif config.resolution and len(spec.shape) == 4 and i in (2, 3):
            shape.append(config.resolution[i - 2])
        else:
            raise MobattnError(f"input '{spec.name}' has a dynamic dimension {i} ({dim}); give --resolution")
    dtype = np.float16 if "float16" in spec.type else np.float32
    return shape, dtype


def prepare_file(config: BenchConfig) -> Prepared:
    path = Path(config.file)
    if path.suffix == ".pte":
        run, details = _executorch_runner(path, config)
        return Prepared(run, artifact_bytes=path.stat().st_size, details=details)
    if path.suffix != ".onnx":
        raise MobattnError(f"cannot benchmark {path.name}: only .onnx and .pte artifacts are supported")
    try:
        session = _session(path, config)
    except MobattnError:
        raise
    except Exception as exc:
        raise MobattnError(f"cannot load {path}: {first_line(exc, 200)}") from None
    shape, dtype = _file_input_shape(session, config)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    feed = {session.get_inputs()[0].name: x}
    meta = session.get_modelmeta().custom_metadata_map
    return Prepared(
        lambda: session.run(None, feed),
        artifact_bytes=path.stat().st_size,
        details={"providers": session.get_providers(), "input_shape": shape, "metadata": dict(meta)},
        keep=[session],
        op_profile=lambda: onnxruntime_op_profile(path, feed, config.threads),
    )


def subject_for_figures(config: BenchConfig) -> tuple[torch.nn.Module | None, torch.Tensor | None]:
    """The torch module and input behind a configuration, for FLOPs (None for files)."""
    if config.kind == "file":
        return None, None
    subject = build_subject(config)
    return subject.module, subject.example_input()


def prepare(config: BenchConfig) -> Prepared:
    check_device(config.device)
    if config.kind == "file":
        return prepare_file(config)
    if config.backend == "torch":
        return prepare_torch(config)
    if config.backend == "onnxruntime":
        return prepare_onnxruntime(config)
    if config.backend == "executorch":
        return prepare_executorch(config)
    raise MobattnError(f"unknown backend '{config.backend}'")


def artifact_backend(path: str) -> str:
    """The backend that runs an existing artifact file; a missing, unsupported or
    corrupt file is a one-line error before anything is measured."""
    file = Path(path)
    if not file.is_file():
        raise MobattnError(f"artifact not found: {file}")
    runtimes = {BENCHMARK_TARGET_SUFFIX[b]: b for b in BENCHMARK_TARGET_SUFFIX}
    if file.suffix not in runtimes:
        raise MobattnError(
            f"cannot benchmark {file.name}: only {' and '.join(runtimes)} artifacts are supported"
        )
    try:
        if file.suffix == ".pte":
            from mobattn.exporters.to_executorch import load_method, require_executorch

            require_executorch()
            load_method(file)
        else:
            import onnx

            onnx.checker.check_model(str(file))
    except MobattnError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is a corrupt artifact
        kind = "ExecuTorch program" if file.suffix == ".pte" else "ONNX model"
        first = first_line(exc)
        raise MobattnError(f"{file} is not a valid {kind}: {first}") from None
    return runtimes[file.suffix]
