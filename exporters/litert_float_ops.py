"""int8 ops that XNNPACK takes only in float, computed in float between a DEQUANTIZE and a
QUANTIZE, so that a static int8 .tflite runs wholly on the delegate.

litert-torch converts a pt2e graph's ``dequantize -> gelu -> quantize`` into one int8 GELU
(a lookup table in LiteRT's own kernels). XNNPACK's delegate takes GELU in float only, so
each int8 GELU was left to LiteRT's kernels and split the delegated graph around it
(swiftformer_xs int8: 21 partitions, its 20 GELUs left, copies in and out of XNNPACK at
each). Rewritten as ``DEQUANTIZE -> float GELU -> QUANTIZE``, all three run inside one
partition, and the values do not change: LiteRT's lookup table is built the same way, the
float GELU of each of the 256 dequantized inputs rounded to the output's scale."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .litert_metadata import packed, unpacked

FLOAT_ONLY = ("GELU",)  # int8 in LiteRT's kernels, float only in XNNPACK's delegate
DEQUANTIZE_INT8, QUANTIZE_INT8, FLOAT_VERSION = 2, 2, 1  # operator versions by tensor type
GREATER_OP_CODES = 127  # deprecated_builtin_code's placeholder for builtin codes above it


def float_between(content: bytes) -> tuple[bytes, dict[str, int]]:
    """``content`` with each int8 op of :data:`FLOAT_ONLY` computed in float between a
    DEQUANTIZE and a QUANTIZE, and how many of each were rewritten (the file unchanged, and
    {}, where there were none)."""
    from ai_edge_litert import schema_py_generated as schema

    model = unpacked(content)
    if model is None:  # too large to repack: left as it is
        return content, {}
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if name.isupper()}
    rewritten: Counter[str] = Counter()
    for subgraph in model.subgraphs or []:
        operators = []
        for op in subgraph.operators or []:
            name = names.get(_builtin(model.operatorCodes[op.opcodeIndex]))
            if name in FLOAT_ONLY and _int8_in_and_out(schema, subgraph, op):
                operators += _in_float(schema, model, subgraph, op, getattr(schema.BuiltinOperator, name))
                rewritten[name] += 1
            else:
                operators.append(op)
        subgraph.operators = operators
    if not rewritten:
        return content, {}
    return packed(model), dict(rewritten)


def _in_float(schema, model, subgraph, op, builtin: int) -> list:
    """``op`` computing on float copies of its int8 input and output, with the DEQUANTIZE
    before it and the QUANTIZE after it (the int8 tensors keep their indices: the ops around
    and the signatures still name them)."""
    int8_in, int8_out = op.inputs[0], op.outputs[0]
    float_in = _float_copy(schema, subgraph, int8_in)
    float_out = _float_copy(schema, subgraph, int8_out)
    dequantize = _operator(schema, _opcode(schema, model, schema.BuiltinOperator.DEQUANTIZE, DEQUANTIZE_INT8))
    dequantize.inputs, dequantize.outputs = [int8_in], [float_in]
    quantize = _operator(schema, _opcode(schema, model, schema.BuiltinOperator.QUANTIZE, QUANTIZE_INT8))
    quantize.inputs, quantize.outputs = [float_out], [int8_out]
    op.opcodeIndex = _opcode(schema, model, builtin, FLOAT_VERSION)
    op.inputs, op.outputs = [float_in, *list(op.inputs)[1:]], [float_out]
    return [dequantize, op, quantize]


def _float_copy(schema, subgraph, index: int) -> int:
    """A float32 tensor of the shape of tensor ``index``, appended; its index."""
    tensor = subgraph.tensors[index]
    copy = schema.TensorT()
    copy.shape, copy.shapeSignature, copy.hasRank = tensor.shape, tensor.shapeSignature, tensor.hasRank
    copy.type, copy.buffer = schema.TensorType.FLOAT32, 0  # buffer 0: the file's empty buffer
    copy.name = (tensor.name or b"") + b"/float"
    subgraph.tensors.append(copy)
    return len(subgraph.tensors) - 1


def _operator(schema, opcode_index: int):
    op = schema.OperatorT()
    op.opcodeIndex = opcode_index
    return op


def _opcode(schema, model, builtin: int, version: int) -> int:
    """The index of the operator code for ``builtin`` at ``version``, added if missing."""
    for index, code in enumerate(model.operatorCodes):
        if _builtin(code) == builtin and code.version == version:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, GREATER_OP_CODES)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _builtin(code) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _int8_in_and_out(schema, subgraph, op) -> bool:
    tensors = (subgraph.tensors[op.inputs[0]], subgraph.tensors[op.outputs[0]])
    return all(t.type == schema.TensorType.INT8 for t in tensors)


def float_between_file(path: Path) -> dict[str, int]:
    """:func:`float_between` on the file at ``path``, rewritten in place where it changed."""
    content = Path(path).read_bytes()
    new_content, rewritten = float_between(content)
    if rewritten:
        Path(path).write_bytes(new_content)
    return rewritten
