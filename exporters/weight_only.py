"""Weight-only int8 for the layers mixed precision keeps in float (W8A32): their weights
stored int8, symmetric per output channel, and dequantized by a DequantizeLinear in the
graph, their activations float. A layer falls back to float because of its activations
(outliers a per-tensor range cannot hold), not its weights, so its weights need not cost
four times the bytes: the file stays near the all-int8 size."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHT_OPS = ("MatMul", "Gemm")


def weight_only_int8(model: onnx.ModelProto, tensors: set[str]) -> tuple[onnx.ModelProto, int]:
    """``model`` with the float weights of the MatMul/Gemm nodes producing ``tensors``
    stored int8; and how many weights were."""
    weights = {init.name: init for init in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    done = 0
    for node in list(model.graph.node):
        if node.op_type not in WEIGHT_OPS or not set(node.output) & tensors or len(node.input) < 2:
            continue
        name = node.input[1]
        init = weights.get(name)
        if init is None or init.data_type != onnx.TensorProto.FLOAT or readers.get(name, 0) != 1:
            continue  # not a float weight of this node alone
        value = numpy_helper.to_array(init)
        if value.ndim != 2:
            continue
        trans_b = (
            next((a.i for a in node.attribute if a.name == "transB"), 0) if node.op_type == "Gemm" else 0
        )
        axis = 0 if trans_b else 1  # the output channels
        scale = np.abs(value).max(axis=1 - axis) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        shaped = scale.reshape((-1, 1) if axis == 0 else (1, -1))
        quantized = np.clip(np.round(value / shaped), -127, 127).astype(np.int8)
        index = next(i for i, t in enumerate(model.graph.initializer) if t.name == name)
        del model.graph.initializer[index]
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{name}_w8"),
                numpy_helper.from_array(scale, f"{name}_w8_scale"),
                numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_w8_zero"),
            ]
        )
        dequantize = helper.make_node(
            "DequantizeLinear",
            [f"{name}_w8", f"{name}_w8_scale", f"{name}_w8_zero"],
            [name],
            axis=axis,
            name=f"{name}_w8_dequantize",
        )
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position, dequantize)
        done += 1
    return model, done
