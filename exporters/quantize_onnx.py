"""Static int8 post-training quantization of an ONNX export (onnxruntime.quantization):
QDQ format, int8 weights symmetric per output channel, uint8 activations per tensor,
calibrated with MinMax on the user's images (the model's own preprocessing) or on random
inputs with a warning. Which layers are quantized is the recipe's (:mod:`.int8_recipe`).

Choices, measured on swiftformer_s (seeded weights, onnxruntime CPU, 1 thread, median
of 60 runs against fp32 in one run; cosine and top-1 agreement to torch fp32 on 8 random
inputs): every op type onnxruntime quantizes 0.58x the fp32 latency, cosine 0.99992;
only Conv/MatMul/Gemm 0.60x, 0.99991; only Conv 0.62x, 0.99998. On the trained ViT-Ti and
real images every op type collapses (0% top-1 agreement), so the default recipe quantizes
Conv/MatMul/Gemm only and keeps outlier-dominated inputs in float; the record names the op
types that ended up quantized and the layers kept in float.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from .calibration import stack_batches
from .int8_recipe import DEFAULT_RECIPE, described, is_outlier, outlier_ratio
from .silence import quiet
from .subject import Subject

RANDOM_CALIBRATION_INPUTS = 16
# The op types the outlier-aware recipe quantizes: those that carry the arithmetic.
ARITHMETIC_OPS = ("Conv", "MatMul", "Gemm")
# ... whose outputs stay float (onnxruntime fuses them as MatMulIntegerToFloat / QGemm with a
# float output): the trained ViT-Ti's mean logit cosine on real images rose from 0.975 to
# 0.993 (300 images). Conv keeps its quantized output: QLinearConv needs one to run on int8.
FLOAT_OUTPUT_OPS = ("MatMul", "Gemm")
OUTLIER_BATCHES = 16  # calibration batches the outlier check looks at


def calibration_batches(subject: Subject, images: list[np.ndarray] | None) -> tuple[list[np.ndarray], str]:
    """Inputs to calibrate on, and how to describe them in the record."""
    if images:
        return stack_batches(subject, images), f"{len(images)} images (--calibration)"
    inputs = [subject.example_input(seed=1000 + i).numpy() for i in range(RANDOM_CALIBRATION_INPUTS)]
    return inputs, f"{RANDOM_CALIBRATION_INPUTS} random inputs"


def outlier_layers(model_path: Path, input_name: str, batches: list[np.ndarray]) -> dict[str, float]:
    """Conv/MatMul/Gemm nodes whose activation input is outlier-dominated on the
    calibration batches, with its ratio (see :func:`.int8_recipe.outlier_ratio`)."""
    import onnxruntime as ort

    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    initializers = {t.name for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ARITHMETIC_OPS]
    watched = sorted({i for n in nodes for i in n.input[:2] if i and i not in initializers})
    typed = {v.name: v for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    known = {o.name for o in model.graph.output}
    for name in watched:
        if name in typed and name not in known:
            model.graph.output.append(typed[name])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in watched]
    seen: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch in batches[:OUTLIER_BATCHES]:
        values = session.run(names, {input_name: batch.astype(np.float32)})
        for name, value in zip(names, values, strict=True):
            seen[name].append(value)
    ratios = {name: outlier_ratio(values) for name, values in seen.items()}
    return {
        n.name: max(ratios.get(i, 1.0) for i in n.input[:2])
        for n in nodes
        if any(is_outlier(ratios.get(i, 1.0)) for i in n.input[:2])
    }


def quantize_int8(
    model: onnx.ModelProto,
    subject: Subject,
    images: list[np.ndarray] | None,
    workdir: Path,
    recipe: str = DEFAULT_RECIPE,
    exclude: list[str] = (),
) -> tuple[onnx.ModelProto, dict]:
    """The QDQ int8 model and the facts of its quantization; the nodes producing the
    tensors ``exclude`` names stay in float (the mixed-precision search's choice)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    batches, source = calibration_batches(subject, images)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter([{subject.input_name: b.astype(np.float32)} for b in batches])

        def get_next(self):
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(dir=workdir, prefix=".quantize-") as tmp:
        fp32, pre, out = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, str(fp32))
        with quiet():
            # symbolic shape inference fails on the dynamo exporter's graphs; onnx's is enough
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            kept_float: dict[str, float] = {}
            chosen: dict = {}
            if recipe == "outlier-aware":
                kept_float = outlier_layers(pre, subject.input_name, batches)
                chosen = {
                    "op_types_to_quantize": list(ARITHMETIC_OPS),
                    "nodes_to_exclude": list(kept_float),
                    "extra_options": {"OpTypesToExcludeOutputQuantization": list(FLOAT_OUTPUT_OPS)},
                }
            if exclude:
                chosen["nodes_to_exclude"] = [*chosen.get("nodes_to_exclude", []), *_touching(pre, exclude)]
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                **chosen,
            )
        quantized = onnx.load(str(out))
    counts = Counter(node.op_type for node in quantized.graph.node)
    facts = {
        "format": "QDQ",
        "weights": "int8, symmetric, per output channel",
        "activations": "uint8, asymmetric, per tensor (MinMax)",
        "calibration": source,
        **described(recipe, kept_float),
        "quantize_nodes": counts.get("QuantizeLinear", 0),
        "op_types_with_int8_inputs": _quantized_op_types(quantized),
    }
    return quantized, facts


def _touching(model_path: Path, tensors: list[str]) -> list[str]:
    """The nodes that produce or read ``tensors``: excluding all of them keeps each tensor
    float (in QDQ a tensor is quantized when any node beside it is)."""
    wanted = set(tensors)
    return [n.name for n in onnx.load(str(model_path)).graph.node if wanted & (set(n.output) | set(n.input))]


def _quantized_op_types(model: onnx.ModelProto) -> dict[str, int]:
    """Op types that consume a DequantizeLinear output (they run on int8 in onnxruntime)."""
    produced_by_dq = {
        out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output
    }
    counts = Counter(
        node.op_type
        for node in model.graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and produced_by_dq & set(node.input)
    )
    return dict(counts.most_common())
