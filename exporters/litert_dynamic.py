"""Dynamic int8 on LiteRT (``--int8-recipe dynamic``, and the ``--int8-target`` search's
trials): the float ``.tflite`` litert-torch writes, its Linear and Conv layers then made
dynamic-range int8 by Google's ai-edge-quantizer, layer by layer.

Why not litert-torch's own dynamic mode: its converter quantizes every Linear and Conv
weight in that mode, whatever the pt2e graph leaves float (litert-torch 0.10: 49 of the
ViT-Ti's 49 FULLY_CONNECTED were int8 with 14 layers left float in the graph), and it
makes depthwise convs dynamic-range kernels, which XNNPACK lacks (SwiftFormer's ran on
LiteRT's own kernels). ai-edge-quantizer's recipe names the ops instead (each by its
output's name, the op found by its weights, :func:`op_names`): FULLY_CONNECTED and CONV_2D
become int8 weights with each input quantized per row at run time (XNNPACK's ``qd8``
kernels, as ExecuTorch's), the layers the recipe or the search keeps float compute in float
(from int8 weights), and a depthwise conv stays a float kernel XNNPACK takes.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from .silence import quiet, quiet_native_stderr

QUANTIZER = (
    "ai-edge-quantizer on the float file: FULLY_CONNECTED and CONV_2D dynamic-range int8, float layers "
    "int8 weights with float compute, depthwise convs float"
)
_float_files: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class DynamicFile:
    """A LiteRT file with dynamic-range int8 layers: its bytes, the layers it keeps float,
    and a function of an input batch that runs it in LiteRT's interpreter (XNNPACK), as
    the search judges it."""

    content: bytes
    float_layers: frozenset[str]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "_run"):
            self._run = _runner(self.content)
        return self._run(x)


@dataclass(frozen=True)
class FloatFile:
    """A module converted in float once, with the output name of each Linear and Conv
    layer's op in it (by module path): a search's trials quantize the same float file with
    different layers left float."""

    shape: tuple[int, ...]
    content: bytes
    op_names: dict[str, str]


def float_file(module: torch.nn.Module, example: torch.Tensor) -> FloatFile:
    """``module`` converted by litert-torch in float, once per module and input shape."""
    known = _float_files.get(module)
    if known is not None and known.shape == tuple(example.shape):
        return known
    import litert_torch

    with quiet(), quiet_native_stderr(), torch.no_grad():
        content = bytes(litert_torch.convert(module, (example,)).model_content())
    converted = FloatFile(tuple(example.shape), content, op_names(module, content))
    _float_files[module] = converted
    return converted


WEIGHTED_OPS = {"FULLY_CONNECTED": (0, 1), "CONV_2D": (0, 3, 1, 2)}  # op -> its weight as torch lays it


def op_names(module: torch.nn.Module, content: bytes) -> dict[str, str]:
    """Each Linear and Conv layer's module path -> the output name of the op that computes
    it in the file, matched by weights (each output channel's, up to its scale: the
    converter folds a BatchNorm into the conv before it). Names cannot be derived from
    the path: litert-torch names an op by its call stack, where a ModuleList is no scope
    (EfficientFormer's ``network.0.0`` and ``network.2.0`` are both ``Meta4D_0``), and the
    last op's output takes the graph's output name."""
    from ai_edge_litert.interpreter import Interpreter

    loaded = Interpreter(model_content=content)
    names = {t["index"]: t["name"] for t in loaded.get_tensor_details()}
    candidates = [
        (_shape_free(loaded.get_tensor(op["inputs"][1]).transpose(WEIGHTED_OPS[op["op_name"]])), op)
        for op in loaded._get_ops_details()
        if op["op_name"] in WEIGHTED_OPS
    ]
    found = {}
    for path, layer in module.named_modules():
        if not isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            continue
        weight = _shape_free(layer.weight.detach().numpy())
        same = [op for w, op in candidates if w.shape == weight.shape and np.allclose(w, weight, atol=1e-4)]
        if len(same) == 1:
            found[path] = names[same[0]["outputs"][0]]
    return found


def _shape_free(weight: np.ndarray) -> np.ndarray:
    """Each output channel's weights, absolute and scaled to unit length."""
    rows = np.abs(weight.reshape(weight.shape[0], -1)).astype(np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def quantized_file(module: torch.nn.Module, example: torch.Tensor, float_layers: set[str]) -> DynamicFile:
    """``module``'s float file with every Linear and Conv layer but ``float_layers``
    (module paths) made dynamic-range int8 (symmetric, per output channel). A float layer
    keeps int8 weights, dequantized when the file loads (XNNPACK takes the DEQUANTIZE), and
    computes in float: its input's rounding is what hurts, not its weights' (as ONNX's
    ``weight_only``), and the file stays int8-sized. A layer whose op is not found in the
    file (see :func:`op_names`) cannot stay float: the file's ``float_layers`` are those
    that did."""
    from ai_edge_quantizer import qtyping, quantizer

    converted = float_file(module, example)
    kept = float_layers & converted.op_names.keys()
    chosen = quantizer.Quantizer(converted.content)
    layer_ops = (qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.CONV_2D)
    for op in layer_ops:
        chosen.add_dynamic_config(".*", op, 8)
    for path in sorted(kept):  # a later rule wins: float compute, int8 weights
        scope = f"^{re.escape(converted.op_names[path])};$"  # its scope: the output's name and ";"
        for op in layer_ops:
            chosen.add_weight_only_config(scope, op, 8)
    with quiet(), quiet_native_stderr():
        content = chosen.quantize(enable_progress_report=False).quantized_model
    return DynamicFile(bytes(content), frozenset(kept))


def _runner(content: bytes):
    from ai_edge_litert.interpreter import Interpreter

    loaded = Interpreter(model_content=content, num_threads=1)
    loaded.allocate_tensors()
    source, sink = loaded.get_input_details()[0]["index"], loaded.get_output_details()[0]["index"]

    def run(x: torch.Tensor) -> torch.Tensor:
        loaded.set_tensor(source, np.ascontiguousarray(x.numpy(), dtype=np.float32))
        loaded.invoke()
        return torch.from_numpy(loaded.get_tensor(sink).copy())

    return run
