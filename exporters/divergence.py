"""Where a quantized ONNX graph leaves its float twin: every intermediate tensor the two
graphs share, compared on the same inputs, in the float graph's order.

The quantizer keeps the float graph's tensor names (it inserts QuantizeLinear and
DequantizeLinear pairs between them), so each node's output can be read from both graphs
by name, as ExecuTorch's numeric-gap tool and Core ML's model comparator compare a
program layer by layer. ``mobattn validate --images DIR --divergence`` prints the report.

Cosine over a whole tensor is dominated by its largest values: a residual stream with one
channel at 560 keeps a cosine near 1 while everything else in it is lost. So the report
ranks nodes by the cosine they *lose* (their inputs' worst cosine minus their output's)
and gives each tensor's outlier ratio (max |x| over its 99.9th percentile, on the float
graph): a large drop after an outlier-dominated input names the culprit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .int8_recipe import outlier_ratio

DIVERGED_BELOW = 0.99  # a tensor whose cosine to the float graph is below this has diverged
TOP = 8  # nodes listed by the cosine they lose
DIVERGENCE_INPUTS = 16  # images compared (each runs both graphs with every tensor an output)


@dataclass(frozen=True)
class TensorGap:
    """One tensor of the float graph, read from both graphs."""

    node: str
    op_type: str
    tensor: str
    cosine: float  # candidate vs reference, over every input
    loss: float  # the worst cosine reaching the node's inputs, minus ``cosine``
    input_outlier_ratio: float  # the largest outlier ratio among the node's float inputs
    outlier_ratio: float  # this tensor's own (reference graph)


@dataclass
class DivergenceReport:
    compared: int  # tensors read from both graphs
    inputs: int
    first_diverged: TensorGap | None  # the first tensor, in graph order, below DIVERGED_BELOW
    largest_losses: list[TensorGap] = field(default_factory=list)
    output_cosine: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def _with_every_output(model: onnx.ModelProto, names: set[str]) -> bytes:
    """The model with ``names`` (typed by shape inference) added to its outputs."""
    model = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v for v in model.graph.value_info}
    present = {o.name for o in model.graph.output}
    for name in sorted(names - present):
        if name in typed and typed[name].type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            model.graph.output.append(typed[name])
    return model.SerializeToString()


def _session(model: onnx.ModelProto, names: set[str]):
    import onnxruntime as ort

    session = ort.InferenceSession(_with_every_output(model, names), providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name, [o.name for o in session.get_outputs() if o.name in names]


class _Gap:
    """Running cosine of one tensor over many inputs (dot products and norms summed),
    with the reference's peak and a strided sample of its magnitudes for the outlier
    ratio, so no tensor is held for more than one input."""

    SAMPLE = 20_000  # magnitudes kept per input

    def __init__(self):
        self.dot = self.ref_sq = self.cand_sq = 0.0
        self.samples: list[np.ndarray] = []

    def add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        a, b = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
        self.dot += float(a @ b)
        self.ref_sq += float(a @ a)
        self.cand_sq += float(b @ b)
        stride = max(1, a.size // self.SAMPLE)
        self.samples += [np.abs(a[::stride]), np.abs(a).max(keepdims=True)]

    @property
    def cosine(self) -> float:
        denominator = (self.ref_sq * self.cand_sq) ** 0.5
        return self.dot / denominator if denominator > 0 else float(self.ref_sq == self.cand_sq)

    @property
    def outlier_ratio(self) -> float:
        return outlier_ratio(self.samples)


def divergence(
    reference: Path, candidate: Path, inputs: list[np.ndarray], top: int | None = TOP
) -> DivergenceReport:
    """Compare every float tensor the two graphs share on ``inputs`` (batches the graphs
    take); ``largest_losses`` holds the ``top`` nodes by cosine lost (None: every one)."""
    ref_model, cand_model = onnx.load(str(reference)), onnx.load(str(candidate))
    produced = {o for n in cand_model.graph.node for o in n.output}
    shared = {o for n in ref_model.graph.node for o in n.output if o in produced}
    (ref_run, ref_input, ref_names), (cand_run, cand_input, cand_names) = (
        _session(m, shared) for m in (ref_model, cand_model)
    )
    names = [n for n in ref_names if n in set(cand_names)]
    running: dict[str, _Gap] = {}
    for x in inputs:
        ref_values = dict(zip(names, ref_run.run(names, {ref_input: x}), strict=True))
        cand_values = dict(zip(names, cand_run.run(names, {cand_input: x}), strict=True))
        for name in names:
            if np.size(ref_values[name]) > 1:
                running.setdefault(name, _Gap()).add(ref_values[name], cand_values[name])
    cosines = {name: gap.cosine for name, gap in running.items()}
    ratios = {name: gap.outlier_ratio for name, gap in running.items()}
    gaps = []
    reaching: dict[str, float] = {}  # a tensor's cosine, or its nearest compared ancestors' worst
    for node in ref_model.graph.node:
        upstream = min((reaching[i] for i in node.input if i in reaching), default=1.0)
        for tensor in node.output:
            reaching[tensor] = cosines.get(tensor, upstream)
            if tensor not in cosines:
                continue
            gaps.append(
                TensorGap(
                    node=node.name,
                    op_type=node.op_type,
                    tensor=tensor,
                    cosine=cosines[tensor],
                    loss=upstream - cosines[tensor],
                    input_outlier_ratio=max((ratios[i] for i in node.input if i in ratios), default=1.0),
                    outlier_ratio=ratios[tensor],
                )
            )
    first = next((g for g in gaps if g.cosine < DIVERGED_BELOW), None)
    return DivergenceReport(
        compared=len(running),
        inputs=len(inputs),
        first_diverged=first,
        largest_losses=sorted(gaps, key=lambda g: -g.loss)[:top],
        output_cosine=cosines.get(ref_model.graph.output[0].name, float("nan")),
    )
