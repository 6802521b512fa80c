"""What keeps a Core ML program off the Apple Neural Engine: published rules, applied
to the ops of an ML Program.

The rules are *predictions* from Apple's public guidance, not Core ML's own placement
(``mobattn inspect --compute-plan`` asks Core ML on macOS). Each finding names its rule,
the ops it flags, the blocks they sit in (from the parameter names the ops read) and the
rule's public source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

ARTICLE = "https://machinelearning.apple.com/research/neural-engine-transformers"
ML_ANE = "https://github.com/apple/ml-ane-transformers"
FLEXIBLE = "https://apple.github.io/coremltools/docs-guides/source/flexible-inputs.html"

RESHAPES = {"reshape", "squeeze", "expand_dims", "flatten2d", "reshape_like"}
GATHERS = {"gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis"}


@dataclass(frozen=True)
class Rule:
    name: str
    says: str
    source: str
    applies: Callable  # (op) -> bool


def _rank(var) -> int | None:
    shape = getattr(var, "shape", None)
    return len(shape) if shape is not None else None


def _tensor_outputs(op) -> list:
    return [o for o in op.outputs if getattr(o, "shape", None) is not None and _rank(o)]


def _last_axis_one(op) -> bool:
    return any(
        _rank(o) >= 2 and o.shape[-1] == 1 and isinstance(o.shape[-2], int) and o.shape[-2] > 1
        for o in _tensor_outputs(op)
    )


def _linear_on_tokens(op) -> bool:
    x = op.inputs.get("x")
    return op.op_type == "linear" and x is not None and _rank(x) == 3


def _fp32(op) -> bool:
    from coremltools.converters.mil.mil import types

    return op.op_type != "cast" and any(o.dtype == types.fp32 for o in _tensor_outputs(op))


RULES = (
    Rule(
        "transpose",
        "transposes move data between layouts; the ANE layout needs none",
        ARTICLE + " (principle 1: minimize memory copies, reshapes and transposes)",
        lambda op: op.op_type == "transpose",
    ),
    Rule(
        "reshape",
        "reshapes change the memory layout the ANE must copy into",
        ARTICLE + " (principle 1: minimize memory copies, reshapes and transposes)",
        lambda op: op.op_type in RESHAPES,
    ),
    Rule(
        "rank3",
        "rank-3 (B, N, C) tensors: the ANE's layout is 4-D channels-first (B, C, 1, S)",
        ARTICLE + " (principle 1: the (B, C, 1, S) data format)",
        lambda op: any(_rank(o) == 3 for o in _tensor_outputs(op)),
    ),
    Rule(
        "linear_on_tokens",
        "linear on channels-last tokens; the ANE-friendly form is a 1x1 conv on (B, C, 1, S)",
        ML_ANE + " (nn.Linear -> nn.Conv2d 1x1)",
        _linear_on_tokens,
    ),
    Rule(
        "last_axis_one",
        "a last axis of size 1 (e.g. (1, N, 1)): the ANE pads the last axis to 64 bytes",
        ARTICLE + " (the last axis is not packed: unaligned, padded to 64 bytes)",
        _last_axis_one,
    ),
    Rule(
        "fp32",
        "fp32 compute: the ANE computes in fp16 only",
        ARTICLE + " (fp16 only)",
        _fp32,
    ),
    Rule(
        "gather",
        "gather-style indexing",
        ML_ANE + " (no gather-style indexing)",
        lambda op: op.op_type in GATHERS,
    ),
)


@dataclass
class Finding:
    rule: str
    says: str
    source: str
    count: int
    blocks: list[str]
    ops: list[str] = field(default_factory=list)  # the first few op names

    def to_dict(self) -> dict:
        return asdict(self)


_PARAM = re.compile(r"^p_(.+?)_(weight|bias)(_to_fp16|_to_fp32)?(_palettized|_quantized)?$")
_BLOCK = re.compile(r"^((?:network_\d+_\d+)|(?:mixer)|(?:patch_embed)|(?:head)|(?:norm))")


def block_of(parameter: str) -> str:
    """``network_3_3_attn_to_query`` -> ``network.3.3``: the block an op's weights
    belong to (the module path, as torch.export names parameters)."""
    match = _BLOCK.match(parameter)
    return (match.group(1) if match else parameter).replace("_", ".")


def op_blocks(operations) -> dict[str, str]:
    """Op name -> block: the block of the parameters the op reads, else of the last
    op before it that read some (reshapes and transposes read none)."""
    blocks, current = {}, "input"
    for op in operations:
        for value in op.inputs.values():
            for var in value if isinstance(value, list | tuple) else [value]:
                match = _PARAM.match(getattr(var, "name", "") or "")
                if match:
                    current = block_of(match.group(1))
        blocks[op.name] = current
    return blocks


def compute_ops(program) -> list:
    function = program.functions["main"]
    return [
        op for op in function.operations if op.op_type != "const" and not op.op_type.startswith("constexpr")
    ]


def analyze(program, spec) -> dict:
    """``{"findings": [...], "summary": {...}}`` for ``main``: every op rule's findings,
    range-shaped inputs and fp16-subnormal epsilons (which are not ops), and the summary
    ``ops_at_risk`` (ops any op rule flags) of ``ops_total`` (non-constant ops)."""
    from .coreml_package import subnormal_constants

    operations = list(program.functions["main"].operations)
    blocks = op_blocks(operations)
    ops = compute_ops(program)
    found, flagged = [], set()
    for rule in RULES:
        hit = [op for op in ops if rule.applies(op)]
        flagged.update(op.name for op in hit)
        if hit:
            names = sorted({blocks[op.name] for op in hit})
            found.append(
                Finding(rule.name, rule.says, rule.source, len(hit), names, [o.name for o in hit[:5]])
            )
    flexible = [i.name for i in spec.description.input if _is_flexible(i)]
    if flexible:
        found.append(
            Finding(
                "flexible_shape",
                "range-shaped input: enumerated shapes are what the ANE takes",
                FLEXIBLE,
                len(flexible),
                ["input"],
                flexible,
            )
        )
    tiny = list(subnormal_constants(program))
    if tiny:
        found.append(
            Finding(
                "fp16_subnormal",
                "an epsilon below fp16's smallest normal: hardware may flush it to 0",
                ARTICLE + " (fp16 only: epsilons must survive fp16)",
                len(tiny),
                sorted({blocks[n] for n in tiny}),
                tiny[:5],
            )
        )
    summary = {
        "ops_at_risk": len(flagged),
        "ops_total": len(ops),
        "rules": {f.rule: f.count for f in found},
        "prediction": "from Apple's published guidance, not Core ML's placement (see --compute-plan)",
    }
    return {"findings": [f.to_dict() for f in found], "summary": summary}


def _is_flexible(feature) -> bool:
    array = feature.type.multiArrayType
    return array.WhichOneof("ShapeFlexibility") == "shapeRange"
