"""Accuracy-aware mixed precision on the pt2e path (``--int8-target`` for ExecuTorch and
LiteRT): the search of :mod:`.int8_search`, on a torch graph instead of an ONNX one.

Quantize with the recipe (:func:`.pt2e_int8.quantize_int8`) and measure the quantized torch
graph's top-1 agreement with the float module on the held-out images; while short, rank the
quantized Linear and Conv modules by the cosine each one's input loses to its quantize and
dequantize pair on the calibration images, keep the worst 1, then 2, 4,
... more in float, ranked again after each repair, and bisect an overshooting last step
back. A layer kept float keeps the layer upstream of it float too: an outlier a layer's
output carries keeps that output's cosine near 1 and shows as its reader's loss. The graph
measured is the one ExecuTorch lowers and litert-torch converts, run in
torch (its quantize/dequantize pairs emulated): XNNPACK's int8 kernels round alike.

Unless ``--int8-recipe`` names one, the static recipe is tried first, and the layers fall
back on ``dynamic`` int8 if it is short: on the trained ViT-Ti static int8 stayed near 95%
with any few layers float (its loss is spread over every layer's input and output range),
while run-time ranges start near 97.5% at the same size and speed. A dynamic graph is
judged in the runtime it is for (:mod:`.pt2e_judges`: no torch emulation tried rounds as
XNNPACK does), its layers ranked in per-token emulation (:func:`.pt2e_dynamic.impact_ranked`).
"""

from __future__ import annotations

import numpy as np
import torch

from .int8_recipe import fall_back
from .pt2e_dynamic import impact_ranked, per_token
from .pt2e_int8 import quantize_int8
from .pt2e_judges import JUDGES

MAX_STEPS = 8
MAX_REFINEMENTS = 4
SENSITIVITY_INPUTS = 16
LAYER_OPS = ("aten.linear.default", "aten.conv2d.default", "aten.conv1d.default")


def search(
    module,
    example,
    calibration: list,
    held_out: list,
    recipe: str,
    target: float,
    fold_weights: bool,
    runtime: str = "executorch",
    recipe_given: bool = True,
):
    """The quantized module meeting ``target`` with the fewest float layers found, and the
    record's facts (``mixed_precision``: every step and each float layer). Without a
    recipe the user chose, the static recipe is tried first and kept if it meets the
    target (its kernels are the fastest); else the search runs on ``dynamic`` int8
    (:mod:`.pt2e_dynamic`), which a trained ViT keeps far better at the same size."""
    judged_on = held_out or calibration
    with torch.no_grad():
        reference = [module(x).argmax(-1) for x in judged_on]
    tried: list[dict] = []
    if not recipe_given and recipe != "dynamic":
        quantized, facts = quantize_int8(module, example, calibration, recipe, fold_weights, runtime=runtime)
        share = _agreement(quantized, judged_on, reference)
        if share >= target:
            return quantized, _with_search(facts, target, share, judged_on, held_out, [], [])
        tried.append({"recipe": recipe, "float_layers": 0, "agreement": share})
        recipe = "dynamic"
    dynamic = recipe == "dynamic"
    upstream: dict[str, str] = {}  # static only: a dynamic layer's output is never rounded
    impacts: list = []

    def float_names(layers: list) -> set[str]:
        return {name for name, _ in layers} | {upstream[n] for n, _ in layers if n in upstream}

    def trial(layers: list) -> tuple:
        names = float_names(layers)
        quantized, facts = quantize_int8(module, example, calibration, recipe, fold_weights, names, runtime)
        judged = JUDGES[runtime](example)(quantized) if dynamic else quantized  # see .pt2e_judges
        return quantized, facts, _agreement(judged, judged_on, reference)

    def rank(quantized) -> list:
        if dynamic:  # measured once, a layer at a time, in per-token emulation; near additive
            if not impacts:  # on the XNNPACK quantizer's graph (a LiteRT trial is a file already)
                graph = quantized if runtime != "litert" else xnnpack_graph()
                emulated = per_token(graph)
                impacts.extend(impact_ranked(module, emulated, calibration[:SENSITIVITY_INPUTS]))
            return impacts
        if not upstream:  # the graph's layers, read once from the first quantized graph
            upstream.update(upstream_layers(quantized))
        return _ranked(module, quantized, calibration[:SENSITIVITY_INPUTS])

    def xnnpack_graph():
        return quantize_int8(module, example, calibration, recipe, runtime="executorch")[0]

    (quantized, facts, share), fallen, steps = fall_back(
        trial, rank, lambda layer: layer[0], target, MAX_STEPS, MAX_REFINEMENTS
    )
    why = _gain_said if dynamic else _loss_said(upstream)
    return quantized, _with_search(facts, target, share, judged_on, held_out, tried + steps, fallen, why)


def _gain_said(name: str, gain: float) -> str:
    return f"logits KL to fp32 falls {gain:.2e} with its input unrounded"


def _loss_said(upstream: dict[str, str]):
    def said(name: str, loss: float) -> str:
        return f"lost cosine {loss:.4f}" + (f"; with {upstream[name]}, upstream" if name in upstream else "")

    return said


def _with_search(facts, target, share, judged_on, held_out, steps, fallen, why=_gain_said) -> dict:
    facts["mixed_precision"] = {
        "target": target,
        "met": share >= target,
        "agreement": share,
        "judged_on": f"{sum(len(x) for x in judged_on)} {'held-out' if held_out else 'calibration'} images",
        "steps": steps,
        "float_layers": {name: why(name, value) for name, value in fallen},
    }
    return facts


def quantize_for_target(
    module,
    example,
    inputs,
    recipe,
    fold_weights=True,
    target=None,
    held_out=None,
    runtime="executorch",
    recipe_given=True,
):
    """:func:`.pt2e_int8.quantize_int8`, or with ``target`` (``--int8-target``) the search
    above, judged on ``held_out`` (image batches)."""
    if target is None:
        return quantize_int8(module, example, inputs, recipe, fold_weights, runtime=runtime)
    return search(
        module, example, inputs, held_out or [], recipe, target, fold_weights, runtime, recipe_given
    )


def _agreement(quantized, inputs: list, reference: list) -> float:
    with torch.no_grad():
        same = [quantized(x).argmax(-1) == ref for x, ref in zip(inputs, reference, strict=True)]
    return float(torch.cat(same).float().mean())


def _ranked(module, quantized, inputs: list) -> list[tuple[str, float]]:
    """The quantized layers (module path, cosine lost), the most harmful first: the cosine
    a layer's input loses to its quantize/dequantize pair, measured in the quantized graph
    (a tensor a per-tensor range cannot hold loses most; a float layer loses nothing)."""
    losses = []
    for name, (before, after) in _graph_values(quantized, inputs).items():
        loss = 1.0 - _cosine(after, before)
        if loss > 1e-9:
            losses.append((name, loss))
    return sorted(losses, key=lambda item: -item[1])


def _cosine(a: list, b: list) -> float:
    x = np.concatenate([t.ravel() for t in a]).astype(np.float64)
    y = np.concatenate([t.ravel() for t in b]).astype(np.float64)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / denominator if denominator else 1.0


def _path(node) -> str | None:
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return stack[-1][0].removeprefix("L['self'].") if stack else None


def upstream_layers(graph_module) -> dict[str, str]:
    """Each layer's nearest layer upstream along its activation input (through quantize,
    dequantize and elementwise nodes): an outlier a layer's output carries shows as the
    loss of the layer that reads it, so both are kept float together."""
    found = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or str(node.target) not in LAYER_OPS or not _path(node):
            continue
        source = node.args[0]
        for _ in range(64):  # a bounded walk back
            if not isinstance(source, torch.fx.Node) or source.op != "call_function" or not source.args:
                break
            if str(source.target) in LAYER_OPS:
                if _path(source):
                    found[_path(node)] = _path(source)
                break
            source = source.args[0]
    return found


def _before_quantization(node):
    """The tensor a layer's input was before its quantize/dequantize pair: the layer's own
    rounding of its input is part of what the layer loses."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function" and "quantize" in str(node.target):
        node = node.args[0]
    return node


def _graph_values(graph_module, inputs: list) -> dict[str, tuple[list, list]]:
    """Each layer node's input before and after its quantize/dequantize pair, in the
    quantized graph, by the module path it was traced in."""
    seen: dict[str, tuple[list, list]] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.op == "call_function" and str(node.target) in LAYER_OPS:
                stack = list(node.meta.get("nn_module_stack", {}).values())
                if stack:
                    name = stack[-1][0].removeprefix("L['self'].")
                    before, after = seen.setdefault(name, ([], []))
                    before.append(self.env[_before_quantization(node.args[0])].detach().numpy())
                    after.append(self.env[node.args[0]].detach().numpy())
            return result

    with torch.no_grad():
        for x in inputs:
            Recorder(graph_module, garbage_collect_values=False).run(x)
    return seen
