"""What an artifact holds: op histogram, tensor ranks, and what keeps it off the fast
path of the hardware it is meant for (``mobattn inspect``).

- ``.mlpackage``: the ML Program's ops, their output ranks, and the Neural Engine rules
  of :mod:`.ane_rules` (predictions); on macOS, Core ML's own compute plan on request.
- ``.onnx``: the graph's ops and ranks (after ONNX shape inference) and onnxruntime's
  mobile usability verdict (:mod:`.mobile_check`).
- ``.pte``: the program's instructions: calls into a delegate (XNNPACK) and ops left on
  ExecuTorch's portable kernels.
"""

from __future__ import annotations

import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobattn.errors import MobattnError, first_line

from .silence import quiet, quiet_native_stderr


@dataclass
class Inspection:
    path: str
    format: str
    op_histogram: dict[str, int]
    ops_total: int
    ranks: dict[str, int] = field(default_factory=dict)  # output rank -> ops producing one
    ane: dict | None = None  # {"findings": [...], "summary": {...}} for Core ML
    mobile_usability: dict | None = None  # onnxruntime's verdict, for ONNX
    delegation: dict | None = None  # for ExecuTorch
    compute_plan: dict | None = None  # Core ML's own placement (macOS, --compute-plan)

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_artifact(path: str | Path, compute_plan: bool = False) -> Inspection:
    path = Path(path)
    if not path.exists():
        raise MobattnError(f"{path} does not exist")
    if path.suffix == ".mlpackage":
        return inspect_coreml(path, compute_plan)
    if compute_plan:
        raise MobattnError("--compute-plan applies to Core ML packages (.mlpackage)")
    if path.suffix == ".onnx":
        return inspect_onnx(path)
    if path.suffix == ".pte":
        return inspect_pte(path)
    raise MobattnError(f"cannot inspect {path.name}: expected an .mlpackage, .onnx or .pte")


def _ranks(ranks: list[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(ranks).items())}


def inspect_coreml(path: Path, compute_plan: bool = False) -> Inspection:
    from .ane_rules import analyze, compute_ops
    from .coreml_reference import load_program

    spec, program = load_program(path)
    ops = compute_ops(program)
    ranks = [len(op.outputs[0].shape) for op in ops if getattr(op.outputs[0], "shape", None) is not None]
    return Inspection(
        path=str(path),
        format="coreml",
        op_histogram=dict(Counter(op.op_type for op in ops).most_common()),
        ops_total=len(ops),
        ranks=_ranks(ranks),
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


def inspect_onnx(path: Path) -> Inspection:
    import onnx

    from .mobile_check import mobile_usability

    try:
        model = onnx.load(str(path))
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's input
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None
    rank_of = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
        if v.type.tensor_type.HasField("shape")
    }
    nodes = list(model.graph.node)
    ranks = [rank_of[n.output[0]] for n in nodes if n.output and n.output[0] in rank_of]
    return Inspection(
        path=str(path),
        format="onnx",
        op_histogram=dict(Counter(n.op_type for n in nodes).most_common()),
        ops_total=len(nodes),
        ranks=_ranks(ranks),
        mobile_usability=mobile_usability(path),
    )


def inspect_pte(path: Path) -> Inspection:
    try:
        with quiet(), quiet_native_stderr():
            from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError:
        from .to_executorch import INSTALL_HINT

        raise MobattnError(INSTALL_HINT) from None
    try:
        program = deserialize_pte_binary(path.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None
    program = getattr(program, "program", program)
    plan = program.execution_plan[0]
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
