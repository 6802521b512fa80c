"""Accuracy-aware mixed precision for ONNX int8 (``--int8-target AGREEMENT``): layers fall
back to float, most harmful first, until the held-out images' top-1 agreement with the
float graph reaches the target.

In the manner of Intel Neural Compressor's accuracy-aware tuning and AIMET's AutoQuant:
quantize with the recipe, measure; while short, rank the layers that run on int8 by the
cosine each one *loses* against the float graph on the calibration images (:mod:`.divergence`,
the same per-layer comparison ``validate --divergence`` prints) and keep the worst 1, then
2, 4, 8, ... more in float (a kept tensor: its producer and every reader), re-quantizing
and ranking again each time (a repaired layer unmasks the next), until the target is met,
no layer is left or :data:`MAX_STEPS` is reached; a last step that overshot is bisected
back to the fewest float layers that still meet the target. A layer kept in float keeps its
activation inputs float too: an outlier tensor's own cosine stays near 1 (its largest
values dominate it), so the loss shows at its reader. The record lists the float layers,
each with the cosine it lost, and every step. A float layer's weights stay int8
(:mod:`.weight_only`): its activations are what a per-tensor range could not hold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from .calibration import stack_batches
from .divergence import divergence
from .int8_recipe import fall_back
from .weight_only import weight_only_int8

SENSITIVITY_INPUTS = 16  # calibration images the layer ranking compares on
MAX_STEPS = 8  # rankings at most (1, then 2, 4, ... more layers kept in float)
MAX_REFINEMENTS = 4  # bisections back from an overshooting last step


def agreement(model: onnx.ModelProto, batches: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Top-1 agreement of ``model`` with the float graph's logits ``reference``."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    same = [
        np.argmax(session.run(None, {name: batch})[0], 1) == np.argmax(ref, 1)
        for batch, ref in zip(batches, reference, strict=True)
    ]
    return float(np.concatenate(same).mean())


def search(
    float_model: onnx.ModelProto, subject, images, held_out, workdir: Path, recipe: str, target: float
):
    """The quantized model meeting ``target`` with the fewest layers in float found, and
    the facts of the search (for the record)."""
    import onnxruntime as ort

    from .quantize_onnx import quantize_int8

    judged_on = held_out or images
    batches = [b.astype(np.float32) for b in stack_batches(subject, list(judged_on))]
    session = ort.InferenceSession(float_model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reference = [session.run(None, {name: batch})[0] for batch in batches]
    initializers = {t.name for t in float_model.graph.initializer}
    inputs_of = {
        out: [i for i in node.input if i and i not in initializers]
        for node in float_model.graph.node
        for out in node.output
    }

    def trial(layers: list) -> tuple:
        """Quantized with ``layers`` (and their activation inputs) kept float, and its agreement."""
        kept = [t for g in layers for t in (g.tensor, *inputs_of.get(g.tensor, ()))]
        model, facts = quantize_int8(float_model, subject, images, workdir, recipe, exclude=kept)
        model, facts["weight_only_int8_layers"] = weight_only_int8(model, {g.tensor for g in layers})
        return model, facts, agreement(model, batches, reference)

    def rank(quantized) -> list:  # ranked again on the graph as it now is
        return _ranked(float_model, quantized, subject, images, workdir)

    (quantized, facts, share), fallen, steps = fall_back(
        trial, rank, lambda g: g.tensor, target, MAX_STEPS, MAX_REFINEMENTS
    )
    facts["mixed_precision"] = {
        "target": target,
        "met": share >= target,
        "agreement": share,
        "judged_on": f"{len(judged_on)} {'held-out' if held_out else 'calibration'} images",
        "steps": steps,
        "float_layers": {g.node: f"{g.op_type}, lost cosine {g.loss:.4f}" for g in fallen},
    }
    return quantized, facts


def _ranked(float_model, quantized, subject, images, workdir: Path) -> list:
    """The layers that run on int8 (they read a dequantized tensor), the most harmful
    first (the cosine each loses against the float graph)."""
    inputs = [b.astype(np.float32) for b in stack_batches(subject, list(images)[:SENSITIVITY_INPUTS])]
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".search-") as tmp:
        reference, candidate = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(float_model, str(reference))
        onnx.save(quantized, str(candidate))
        report = divergence(reference, candidate, inputs, top=None)
    dequantized = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    runs_on_int8 = {o for n in quantized.graph.node if dequantized & set(n.input) for o in n.output}
    return [g for g in report.largest_losses if g.tensor in runs_on_int8 and g.loss > 0]
