"""Backends turn a configuration into a prepared runner: a zero-argument callable doing
one batch-``B`` inference, plus what is known about it.

A backend that times an artifact (``Backend.target`` set) is generic: the target's own
module exports the subject (:func:`export_artifact`, in the export phase) and loads the
file (``load_runner``, in the measure phase). A backend that times a torch module names
its ``prepare`` function in the table of backends (:data:`.config.BACKENDS`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError

from .backend_checks import (  # noqa: F401  (re-exported: what the command process checks and plans with)
    Artifact,
    artifact_backend,
    check_backend,
    check_device,
    cuda_available,
    needs_export,
    target_of,
)
from .config import BenchConfig, get_backend

# What an export writes that the row repeats about the timed artifact
EXPORT_FACTS = ("form", "not_delegated")


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


def resolve(reference: str):
    """``"package.module:function"`` -> the function (the tables name code this way so
    that reading them imports nothing heavy)."""
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


def build_subject(config: BenchConfig):
    from mobattn.exporters import attention_subject, model_subject

    if config.kind == "model":
        return model_subject(
            config.model, config.attention, tuple(config.resolution), config.batch, config.weights
        )
    return attention_subject(config.attention, config.dim, tuple(config.hw), config.heads, config.batch)


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# torch.compile's mode per compiled backend
# (inductor's default mode: max-autotune-no-cudagraphs autotuned for about a minute per
# configuration on the H200, longer than a GPU lease allows for a preset)
COMPILE_MODES = {"torch-compile": "default", "torch-cudagraphs": "reduce-overhead"}


def prepare_torch(config: BenchConfig, artifact: Artifact | None = None) -> Prepared:
    """The module in eager mode, in the configuration's dtype on its device."""
    subject = build_subject(config)
    device = torch.device(config.device)
    dtype = DTYPES[config.precision]
    module = subject.module.to(device=device, dtype=dtype).eval()
    x = subject.example_input().to(device=device, dtype=dtype)

    def run():
        with torch.inference_mode():
            return module(x)

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return Prepared(run, sync, subject.module, subject.example_input(), details={"torch": torch.__version__})


def prepare_compiled(config: BenchConfig, artifact: Artifact | None = None) -> Prepared:
    """The module through ``torch.compile`` (inductor), compiled and run once before the
    timer starts: ``details.compile_s`` is that first call, apart from the latency."""
    import time

    prepared = prepare_torch(config)  # its module already on the device, in the dtype
    compiled = torch.compile(prepared.module, mode=COMPILE_MODES[config.backend], fullgraph=False)
    x = prepared.example.to(device=config.device, dtype=DTYPES[config.precision])

    def run():
        with torch.inference_mode():
            return compiled(x)

    start = time.perf_counter()
    run()
    if prepared.sync:
        prepared.sync()
    prepared.run = run
    prepared.details.update(
        compile_s=round(time.perf_counter() - start, 3), mode=COMPILE_MODES[config.backend]
    )
    return prepared


def prepare_cudagraph(config: BenchConfig, artifact: Artifact | None = None) -> Prepared:
    """The eager module captured in a CUDA graph (no compiler), replayed on a static
    input: ``details.capture_s`` is the capture, apart from the latency."""
    from .cuda_timing import capture

    prepared = prepare_torch(config)
    x = prepared.example.to(device=config.device, dtype=DTYPES[config.precision])
    module = prepared.module.to(device=config.device, dtype=DTYPES[config.precision]).eval()
    replay, seconds = capture(module, x)
    prepared.run = replay
    prepared.keep += [x, module]
    prepared.details.update(capture_s=round(seconds, 4), form="CUDA graph of the eager module")
    return prepared


def export_artifact(config: BenchConfig, folder: Path) -> Artifact:
    """Export what an artifact backend will load, into ``folder``, before the measuring
    process takes its memory baseline (the exporter's own memory is not the runtime's)."""
    import time

    check_device(config.device)
    target = target_of(config)
    path = folder / f"subject{target.suffix}"
    start = time.perf_counter()
    subject = build_subject(config)
    built = time.perf_counter()
    result = target.implementation().export(subject, path, precision=config.precision)
    # the exporter's own clock stops before it validates the file against torch
    validation_s = max(0.0, time.perf_counter() - built - result.seconds)
    return Artifact(
        path=str(path),
        validation=result.validation.to_dict() if result.validation else None,  # how faithful the file is
        export={k: v for k, v in result.details.items() if k in EXPORT_FACTS},
        phases_s={"build": built - start, "export": result.seconds, "validation": validation_s},
    )


def _input_shape(shape: list, config: BenchConfig, name: str) -> list[int]:
    """The artifact's input shape, with symbolic dims filled from --batch/--resolution."""
    filled = []
    for i, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            filled.append(dim)
        elif i == 0:
            filled.append(config.batch)
        elif config.resolution and len(shape) == 4 and i in (2, 3):
            filled.append(config.resolution[i - 2])
        else:
            raise MobattnError(f"input '{name}' has a dynamic dimension {i} ({dim}); give --resolution")
    return filled


def prepare_artifact(config: BenchConfig, artifact: Artifact | None = None) -> Prepared:
    """Time a file in its target's runtime: mobattn's own export of the subject
    (``artifact``), or the user's file (``config.file``)."""
    path = Path(config.file if config.kind == "file" else artifact.path)
    options = get_backend(config.backend).runtime_options
    runner = target_of(config).implementation().load_runner(path, config.threads, config.device, **options)
    shape = _input_shape(runner.input_shape, config, runner.input_name)
    x = np.random.default_rng(0).standard_normal(shape).astype(runner.input_dtype)
    details = {**runner.details, **({"runtime_options": options} if options else {})}
    if config.kind == "file":
        details.update(input_shape=shape, metadata=runner.metadata)
    return Prepared(
        runner.bind(x),
        artifact_bytes=path.stat().st_size,
        details=details,
        keep=[runner],
        op_profile=(lambda: runner.op_profile(x)) if runner.op_profile else None,
    )


def check_cached(config: BenchConfig, prepared: Prepared, artifact: Artifact) -> dict:
    """A file from the artifact cache, checked against its subject in the row that times
    it (the cache's hash only catches damage: whoever can write an entry can rewrite the
    hash too). The loaded runner and torch run one seeded input and are judged by the
    precision's criterion, and the file's content must hold the row's precision. The
    agreement is the row's ``validation``; the entry's own record is kept beside it."""
    from mobattn.exporters.agreement import agreement_on

    runner = prepared.keep[0]
    subject = build_subject(config)
    x = subject.example_input(seed=1)

    def run(t: torch.Tensor):
        return runner.run(t.numpy().astype(runner.input_dtype))

    agreement = agreement_on(run, subject.module.eval(), [x], config.precision, config.backend)
    content = target_of(config).implementation().file_precision(Path(artifact.path))
    if content != config.precision:
        agreement.passed = False
        agreement.add_note(f"the file holds {content}, not {config.precision}")
    agreement.add_note("checked in this row: the file came from the artifact cache")
    return {**agreement.to_dict(), "content": content, "cached_record": artifact.validation}


def subject_for_figures(config: BenchConfig) -> tuple[torch.nn.Module | None, torch.Tensor | None]:
    """The torch module and input behind a configuration, for FLOPs (None for files)."""
    if config.kind == "file":
        return None, None
    subject = build_subject(config)
    return subject.module, subject.example_input()


def prepare(config: BenchConfig, artifact: Artifact | None = None) -> Prepared:
    check_device(config.device)
    if target_of(config) is not None:
        return prepare_artifact(config, artifact)
    return resolve(get_backend(config.backend).prepare)(config, artifact)


def temporary_folder() -> tempfile.TemporaryDirectory:
    """Where an in-process (``--no-isolate``) run exports its artifact."""
    return tempfile.TemporaryDirectory(prefix="mobattn-export-")
