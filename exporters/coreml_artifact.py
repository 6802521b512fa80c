"""The file side of the Core ML target: an existing ``.mlpackage`` validated against its
subject, inspected, or (not yet) run. :mod:`.to_coreml` re-exports these as the target's
functions (see :mod:`.formats`)."""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path

from mobattn.errors import MobattnError

from .agreement import Agreement
from .sizes import parse_metadata, shapes_note, with_sizes
from .subject import Subject

RUNTIME_OPTIONS: dict = {}  # no runner here, so no runtime options


def load_runner(path: Path, threads: int = 1, device: str = "cpu", **options):
    """Core ML runs only on Apple's OSes; mobattn times it nowhere yet."""
    raise MobattnError(
        f"cannot run {path.name}: mobattn has no Core ML benchmark backend (Core ML runs on macOS)"
    )


def validate_file(path: Path, subject: Subject, precision: str | None, inputs) -> tuple[Agreement, dict]:
    """An existing package against ``subject`` (``mobattn validate``): in Core ML on macOS,
    in the reference executor elsewhere."""
    from .coreml_reference import load_program
    from .coreml_validation import Unvalidated, criterion_for, validate_coreml

    spec, program = load_program(path)
    description = spec.description.input[0]
    image = description.type.WhichOneof("Type") == "imageType"
    if image:
        shape = [1, 3, description.type.imageType.height, description.type.imageType.width]
    else:
        shape = list(description.type.multiArrayType.shape)
    meta = dict(spec.description.metadata.userDefined)
    subject.check_artifact(path, shape, meta)
    content_precision, compression = content_of(program)
    criterion = criterion_for(precision or content_precision, compression)
    facts = {
        "criterion": criterion,
        "content": criterion_for(content_precision, compression),
        "metadata": meta,
    }
    claimed = criterion_for(meta.get("precision", content_precision), _claimed_compression(meta))
    if claimed != facts["content"]:
        facts["claim_disagrees"] = f"its metadata says {claimed!r}, its program is {facts['content']}"
    if image and not subject.is_model:
        raise MobattnError(f"{path.name} takes an image; describe it with --model")
    sizes = parse_metadata(meta.get("sizes"))
    inputs = with_sizes(subject, inputs, sizes)
    try:
        agreement = validate_coreml(path, subject, criterion, image, inputs=inputs)
    except Unvalidated as exc:
        raise MobattnError(str(exc)) from None
    if sizes:
        agreement.add_note(f"{shapes_note(inputs)} (enumerated shapes)")
    return agreement, facts


def file_metadata(path: Path) -> dict:
    """The package's user-defined metadata (mobattn's exports name their subject there)."""
    from .coreml_reference import load_program

    return dict(load_program(path)[0].description.metadata.userDefined)


def file_precision(path: Path) -> str:
    """The package's compute precision, read from its program (:func:`content_of`)."""
    from .coreml_reference import load_program

    return content_of(load_program(path)[1])[0]


def content_of(program) -> tuple[str, str | None]:
    """What the ML Program is: its compute precision (fp16 when any op computes in fp16)
    and its weight compression, read from its ops (``constexpr_affine_dequantize``: int8;
    ``constexpr_lut_to_dense`` with a 2^n-entry table: palettize n), never from metadata."""
    from coremltools.converters.mil.mil import types

    ops = list(program.functions["main"].operations)
    compression = None
    for op in ops:
        if op.op_type in ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"):
            compression = "int8"
        elif op.op_type == "constexpr_lut_to_dense":
            entries = op.inputs["lut"].shape[-1] if op.inputs["lut"].shape else 0
            compression = f"palettize{max(entries, 1).bit_length() - 1}"
    dtypes = {
        types.builtin_to_string(op.outputs[0].dtype)
        for op in ops
        if op.outputs and op.op_type != "const" and not op.op_type.startswith("constexpr")
    }
    return ("fp16" if "fp16" in dtypes else "fp32"), compression


def _claimed_compression(meta: dict) -> str | None:
    claimed = meta.get("compression", "none")
    return None if claimed == "none" else claimed


def inspect(path: Path, compute_plan: bool = False):
    """The ML Program's ops, their output ranks, and the Neural Engine rules of
    :mod:`.ane_rules` (predictions); on macOS, Core ML's own compute plan on request."""
    from .ane_rules import analyze, compute_ops
    from .coreml_reference import load_program
    from .inspection import Inspection, rank_histogram

    spec, program = load_program(path)
    ops = compute_ops(program)
    ranks = [len(op.outputs[0].shape) for op in ops if getattr(op.outputs[0], "shape", None) is not None]
    return Inspection(
        path=str(path),
        format="coreml",
        op_histogram=dict(Counter(op.op_type for op in ops).most_common()),
        ops_total=len(ops),
        ranks=rank_histogram(ranks),
        ane=analyze(program, spec),
        compute_plan=core_ml_compute_plan(path) if compute_plan else None,
    )


def core_ml_compute_plan(path: Path) -> dict:
    """Core ML's preferred device per op (``MLComputePlan``), macOS 14.4+ only; elsewhere
    a one-line reason."""
    if platform.system() != "Darwin":
        return {"skipped": f"Core ML's compute plan needs macOS; this is {platform.system()}"}
    import coremltools as ct
    from coremltools.models.compute_plan import MLComputePlan

    compiled = ct.utils.compile_model(str(path))
    plan = MLComputePlan.load_from_path(path=compiled, compute_units=ct.ComputeUnit.ALL)
    devices: Counter = Counter()
    per_op = {}
    for function in plan.model_structure.program.functions.values():
        for op in function.block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            if usage is None:
                continue
            device = type(usage.preferred_compute_device).__name__
            devices[device] += 1
            per_op[op.outputs[0].name if op.outputs else op.operator_name] = device
    return {"devices": dict(devices), "ops": per_op}
