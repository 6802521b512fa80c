"""nn.Module -> ExecuTorch program (.pte) lowered to XNNPACK, validated with
ExecuTorch's own Python runtime.

XNNPACK is the CPU kernel library behind PyTorch's on-device runtime on Android and
iOS; running the lowered program on the host is the closest thing to on-device CPU
numbers without a phone. fp32 lowers the folded module as is; int8 first quantizes it
post-training with the XNNPACK quantizer (symmetric, per-channel weights, calibrated on
random inputs or on the user's images).

ExecuTorch is an optional dependency: ``pip install 'mobattn[executorch]'``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError, first_line

from .agreement import Agreement, agreement_on, judged_as
from .calibration import validation_inputs, validation_note
from .deploy import deployable
from .executorch_content import INSTALL_HINT, file_precision, forward_plan
from .executorch_profile import executorch_op_profile
from .fold import fold_for_inference
from .int8_recipe import DEFAULT_RECIPE, check_recipe, check_target
from .pt2e_int8 import calibration_inputs, described_inputs
from .pt2e_search import quantize_for_target
from .record import ExportResult, Runner, check_runtime_options
from .silence import quiet, quiet_native_stderr
from .sizes import (
    check_sizes,
    flexible_shape,
    parse_metadata,
    shapes_note,
    sizes_fact,
    text,
    torch_dims,
    validation_set,
    with_sizes,
)
from .subject import Subject, artifact_metadata

FORM = "xnnpack"  # every program is lowered from the deployable form (see exporters.deploy)

RUNTIME_OPTIONS: dict = {}  # what a benchmark backend may set for its runner: nothing yet
METADATA_METHOD = "mobattn_metadata"  # a constant method returning the export's metadata as JSON


def require_executorch() -> None:
    """A one-line user error, saying how to get it, when ExecuTorch is missing."""
    from importlib.util import find_spec

    # found, not imported: importing the runtime takes seconds, and its importer pays them anyway
    try:
        found = find_spec("executorch") is not None and find_spec("executorch.runtime") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MobattnError(INSTALL_HINT)


def set_threads(threads: int) -> None:
    """Size XNNPACK's thread pool (ExecuTorch's pybindings expose it as experimental)."""
    from executorch.extension.pybindings import portable_lib

    with contextlib.suppress(AttributeError, RuntimeError):
        portable_lib._unsafe_reset_threadpool(threads)


def delegation(graph_module) -> dict:
    """How much of the graph XNNPACK took; ops left on the portable kernels by name."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    left = {
        op: b.non_delegated
        for op, b in info.delegation_by_operator.items()
        if b.non_delegated and not op.startswith(("getitem", "executorch_call_delegate"))
    }
    return {
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "delegated_ops": info.num_delegated_nodes,
        "not_delegated_ops": sum(left.values()),
        "not_delegated": dict(sorted(left.items(), key=lambda kv: -kv[1])),
    }


def load_method(path: Path):
    """The ``forward`` method of a .pte program, through ExecuTorch's runtime."""
    require_executorch()
    from executorch.runtime import Runtime

    with quiet(), quiet_native_stderr():
        return Runtime.get().load_program(str(path)).load_method("forward")


def input_shape(method) -> tuple[tuple[int, ...], torch.dtype]:
    meta = method.metadata.input_tensor_meta(0)
    dtypes = {6: torch.float32, 5: torch.float16}
    return tuple(meta.sizes()), dtypes.get(int(meta.dtype()), torch.float32)


def validate_pte(
    path: Path,
    subject: Subject,
    precision: str,
    inputs: list[torch.Tensor] | None = None,
    run=None,
    sizes: tuple[int, ...] | None = None,
) -> Agreement:
    """ExecuTorch's runtime against torch on random inputs at every promised size (or
    ``inputs``); ``run`` is an already loaded program's (a Runner's ``run``), else the
    program is loaded here."""
    if run is None:
        method = load_method(path)

        def run(x):
            return method.execute([x])[0].numpy()

    criterion = judged_as(precision, bool(inputs))
    inputs = inputs or validation_set(subject, sizes)
    agreement = agreement_on(run, subject.module, inputs, criterion, "executorch")
    agreement.add_note("ExecuTorch runtime (XNNPACK) vs torch")
    if sizes:
        agreement.add_note(
            f"{shapes_note(inputs)} (height and width dynamic between the sizes {text(sizes)})"
        )
    return agreement


def check_options(
    subject: Subject,
    precision: str,
    calibration=None,
    int8_recipe: str | None = None,
    int8_target: float | None = None,
    sizes: tuple[int, ...] | None = None,
    **_,
) -> None:
    require_executorch()
    if precision not in ("fp32", "int8"):
        raise MobattnError(f"ExecuTorch precision must be fp32 or int8, got '{precision}'")
    check_recipe(precision, calibration, int8_recipe)
    check_target(precision, calibration, int8_target)
    check_sizes(subject, sizes, precision)


def export(
    subject: Subject,
    path: Path,
    precision: str = "fp32",
    calibration: Iterable[np.ndarray] | None = None,
    int8_recipe: str | None = None,
    validation_images: list[np.ndarray] | None = None,
    int8_target: float | None = None,
    sizes: tuple[int, ...] | None = None,
) -> ExportResult:
    """Write ``path`` (.pte) and return the facts of the export; with ``sizes``, height
    and width are dynamic between the smallest and the largest (:mod:`.sizes`)."""
    options = dict(calibration=calibration, int8_recipe=int8_recipe, int8_target=int8_target, sizes=sizes)
    check_options(subject, precision, **options)
    sizes = check_sizes(subject, sizes)
    metadata = artifact_metadata(subject, precision, FORM, **sizes_fact(sizes))
    calibration = list(calibration) if calibration is not None else None
    with quiet():  # torchao's and torch's import-time log lines are not the user's output
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    start = time.perf_counter()
    module = deployable(fold_for_inference(subject.module), FORM)
    example = subject.example_input()
    quantization = None
    with quiet(), torch.no_grad():
        if precision == "int8":
            inputs = calibration_inputs(subject, calibration)
            held_out = calibration_inputs(subject, validation_images) if validation_images else None
            recipe = int8_recipe or DEFAULT_RECIPE
            module, quantization = quantize_for_target(
                module,
                example,
                inputs,
                recipe,
                target=int8_target,
                held_out=held_out,
                recipe_given=int8_recipe is not None,
            )
        program = _exported(module, example, sizes)
        edge = to_edge_transform_and_lower(
            program,
            partitioner=[XnnpackPartitioner()],
            constant_methods={METADATA_METHOD: json.dumps(metadata)},
        )
        report = delegation(edge.exported_program().graph_module)
        path.write_bytes(edge.to_executorch().buffer)
    seconds = time.perf_counter() - start
    images = validation_inputs(subject, calibration, validation_images) if precision == "int8" else None
    agreement = validate_pte(path, subject, precision, images, sizes=sizes)
    if images:
        agreement.add_note(validation_note(images, validation_images))
    histogram = {"delegated": report["delegated_ops"], **report["not_delegated"]}
    details = {"backend": "XNNPACK", "form": FORM, **report}
    if sizes:
        details["sizes"] = list(sizes)
    if quantization:
        details["quantization"] = {"calibration": described_inputs(calibration, inputs), **quantization}
    return ExportResult(seconds, histogram, agreement, details)


def _exported(module: torch.nn.Module, example: torch.Tensor, sizes: tuple[int, ...] | None):
    """``torch.export`` of the module, height and width symbolic when ``sizes`` are given;
    a module that cannot take them is one line saying where."""
    if not sizes:
        return torch.export.export(module, (example,))
    try:
        return torch.export.export(module, (example,), dynamic_shapes=(torch_dims(sizes),))
    except Exception as exc:  # noqa: BLE001 - a shape the module fixes: say which
        raise MobattnError(f"cannot export with symbolic height and width: {first_line(exc)}") from None


def load_runner(path: Path, threads: int = 1, device: str = "cpu", **options) -> Runner:
    """The program's ``forward`` in ExecuTorch's runtime, XNNPACK sized to ``threads``
    (no runtime options yet)."""
    check_runtime_options("executorch", options, RUNTIME_OPTIONS)
    if device != "cpu":
        raise MobattnError(f"ExecuTorch runs on cpu here, not {device}")
    require_executorch()
    with quiet(), quiet_native_stderr():  # its log line goes to Python's stderr or fd 2
        set_threads(threads)  # before loading: the delegate takes the pool it finds
    try:
        method, metadata = _forward_and_metadata(path)
        shape, dtype = input_shape(method)
    except Exception as exc:  # noqa: BLE001 - any load failure is a corrupt artifact
        raise MobattnError(f"{path} is not a valid ExecuTorch program: {first_line(exc)}") from None
    sizes = parse_metadata(metadata.get("sizes"))  # a file of several sizes: H and W are dynamic

    def bind(x):
        tensor = torch.as_tensor(x).to(dtype)
        return lambda: method.execute([tensor])

    return Runner(
        input_name="input",
        input_shape=flexible_shape(list(shape), sizes),
        input_dtype=str(dtype).removeprefix("torch."),
        bind=bind,
        run=lambda x: method.execute([torch.as_tensor(x).to(dtype)])[0].numpy(),
        details={"runtime": "ExecuTorch (XNNPACK)", "input_shape": flexible_shape(list(shape), sizes)},
        metadata=metadata,
        keep=[method],
        op_profile=lambda x: executorch_op_profile(path, torch.as_tensor(x).to(dtype)),
    )


def validate_file(path: Path, subject: Subject, precision: str | None, inputs) -> tuple[Agreement, dict]:
    """An existing .pte against ``subject`` (``mobattn validate``), judged as what its
    delegates compute in unless ``precision`` says otherwise."""
    runner = load_runner(path)
    subject.check_artifact(path, runner.input_shape, runner.metadata)
    content = file_precision(path)
    criterion = precision or content
    facts = {"criterion": criterion, "content": content}
    sizes = parse_metadata(runner.metadata.get("sizes"))
    inputs = with_sizes(subject, inputs, sizes)
    return validate_pte(path, subject, criterion, inputs=inputs, run=runner.run, sizes=sizes), facts


def inspect(path: Path, compute_plan: bool = False):
    """The program's instructions: calls into a delegate (XNNPACK) and ops left on
    ExecuTorch's portable kernels."""
    from .inspection import Inspection

    try:
        with quiet(), quiet_native_stderr():
            from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError:
        raise MobattnError(INSTALL_HINT) from None
    try:
        program = deserialize_pte_binary(path.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None
    program = getattr(program, "program", program)
    plan = forward_plan(program)
    calls: Counter = Counter()
    portable: Counter = Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            if hasattr(args, "delegate_index"):
                calls[f"delegate:{plan.delegates[args.delegate_index].id}"] += 1
            elif hasattr(args, "op_index"):
                name = plan.operators[args.op_index].name
                calls[name] += 1
                portable[name] += 1
    return Inspection(
        path=str(path),
        format="executorch",
        op_histogram=dict(calls.most_common()),
        ops_total=sum(calls.values()),
        delegation={
            "delegates": [d.id for d in plan.delegates],
            "portable_ops": dict(portable.most_common()),
        },
    )


def _forward_and_metadata(path: Path):
    """``forward`` and the metadata pairs, from one load of the program (the metadata is a
    constant method: reading it costs no second load, which the row's load time would count)."""
    require_executorch()
    from executorch.runtime import Runtime

    with quiet(), quiet_native_stderr():
        program = Runtime.get().load_program(str(path))
        return program.load_method("forward"), _program_metadata(program)


def _program_metadata(program) -> dict:
    """The pairs of a loaded program's ``mobattn_metadata`` constant method; {} without one."""
    if METADATA_METHOD not in program.method_names:
        return {}
    with quiet(), quiet_native_stderr():
        said = json.loads(program.load_method(METADATA_METHOD).execute([])[0])
    return {str(k): str(v) for k, v in said.items()} if isinstance(said, dict) else {}


def file_metadata(path: Path) -> dict:
    """The pairs mobattn wrote as the program's ``mobattn_metadata`` constant method (a
    method that returns one string: the slot a .pte has for a producer's facts); {} for a
    program without one."""
    require_executorch()
    with quiet(), quiet_native_stderr():
        from executorch.runtime import Runtime
    try:
        with quiet(), quiet_native_stderr():
            return _program_metadata(Runtime.get().load_program(str(path)))
    except Exception as exc:  # noqa: BLE001 - an unreadable program is a corrupt artifact
        raise MobattnError(f"cannot read {path}'s metadata: {first_line(exc)}") from None
