"""Post-training static int8 in torch's pt2e flow with ExecuTorch's XNNPACK quantizer,
layers chosen by the recipe (:mod:`.int8_recipe`): one implementation for the two targets
that take a quantized torch graph, ExecuTorch (lowered to XNNPACK) and LiteRT (converted
by litert-torch, which reads the same quantize/dequantize pairs)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .calibration import stack_batches
from .int8_recipe import DEFAULT_RECIPE, described, is_outlier, outlier_ratio
from .pt2e_dynamic import DYNAMIC_ACTIVATIONS, xnnpack_config
from .subject import Subject

CALIBRATION_INPUTS = 8


def described_inputs(images, inputs: list[torch.Tensor]) -> str:
    source = "image batches (--calibration)" if images is not None else "random inputs"
    return f"{len(inputs)} {source}"


def calibration_inputs(subject: Subject, images: Iterable[np.ndarray] | None) -> list[torch.Tensor]:
    if images is not None:
        return [torch.from_numpy(b) for b in stack_batches(subject, list(images))]
    return [subject.example_input(seed=1000 + i) for i in range(CALIBRATION_INPUTS)]


def quantize_int8(
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: list[torch.Tensor],
    recipe: str = DEFAULT_RECIPE,
    fold_weights: bool = True,
    keep_float: set[str] = frozenset(),
    runtime: str = "executorch",
) -> tuple[torch.nn.Module, dict]:
    """Post-training int8 in the pt2e flow, layers chosen by ``recipe`` (see
    :mod:`.int8_recipe`): the quantized module and the record's facts. Static recipes
    calibrate each activation's range with the XNNPACK quantizer; ``dynamic`` quantizes
    inputs at run time (:mod:`.pt2e_dynamic`; for ``runtime="litert"`` the result is a
    :class:`.litert_dynamic.DynamicFile`, quantized on the float file). ``fold_weights=False`` keeps
    each weight's quantize op (LiteRT's converter reads them); the modules ``keep_float``
    names stay float (the mixed-precision search's choice)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = recipe == "dynamic"
    kept_float = outlier_modules(module, calibration) if recipe != "all-ops" else {}
    skipped = {**kept_float, **dict.fromkeys(keep_float, 0.0)}
    facts = {
        "weights": "int8, symmetric, per output channel",
        "activations": DYNAMIC_ACTIVATIONS if dynamic else "int8, per tensor (histogram-calibrated)",
        **described(recipe, kept_float),
    }
    if dynamic and runtime == "litert":  # quantized on the float file: see .litert_dynamic
        from .litert_dynamic import QUANTIZER, quantized_file

        file = quantized_file(module, example, set(skipped))
        lost = sorted(set(skipped) - file.float_layers)
        return file, {**facts, "quantizer": QUANTIZER, **({"not_found_in_file": lost} if lost else {})}
    config = xnnpack_config() if dynamic else get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer().set_global(config)
    if recipe != "all-ops":
        # The quantizer's patterns for linear and conv layers only; its module-name filters
        # are not used: they also test a conv's weight node, which carries no module path,
        # so a conv named in set_module_name is never annotated.
        quantizer.SUPPORTED_PATTERNS = [
            p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if p.name.startswith(ARITHMETIC_PATTERNS)
        ]
    if skipped:
        quantizer.set_filter_function(lambda node: not _inside(node, skipped))
    graph = torch.export.export(module, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration[: 1 if dynamic else None]:  # dynamic ranges calibrate nothing
            prepared(x)
    return convert_pt2e(prepared, fold_quantize=fold_weights), facts


# The modules the outlier-aware recipe quantizes: those that carry the arithmetic (and the
# XNNPACK quantizer's patterns for them).
ARITHMETIC_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
ARITHMETIC_PATTERNS = ("linear", "conv")


def _inside(node, modules) -> bool:
    """Whether ``node`` was traced inside one of ``modules`` (by its module path)."""
    paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return any(path.removeprefix("L['self'].") in modules for path in paths)


def outlier_modules(module: torch.nn.Module, calibration: list[torch.Tensor]) -> dict[str, float]:
    """Linear and Conv modules whose input or output is outlier-dominated on the
    calibration inputs, with the larger ratio (see :func:`.int8_recipe.outlier_ratio`):
    the XNNPACK quantizer rounds both ends of a module it quantizes."""
    seen: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def hook(name):
        def record(_module, inputs, output):
            ins, outs = seen.setdefault(name, ([], []))
            ins.append(inputs[0].detach().float().numpy())
            outs.append(output.detach().float().numpy())

        return record

    handles = [
        layer.register_forward_hook(hook(name))
        for name, layer in module.named_modules()
        if isinstance(layer, ARITHMETIC_MODULES)
    ]
    try:
        with torch.no_grad():
            for x in calibration:
                module(x)
    finally:
        for handle in handles:
            handle.remove()
    ratios = {name: max(outlier_ratio(ins), outlier_ratio(outs)) for name, (ins, outs) in seen.items()}
    return {name: ratio for name, ratio in ratios.items() if is_outlier(ratio)}
