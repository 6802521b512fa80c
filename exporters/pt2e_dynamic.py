"""int8 with activations quantized at run time (``--int8-recipe dynamic``), for the two
targets of the pt2e path: int8 weights (symmetric, per output channel) and each layer's
input quantized per token when it runs, with no calibrated range.

Why: a trained ViT's activations carry outliers in a few tokens (the class token) and
channels. A static per-tensor range calibrated over them rounds the ordinary values
coarsely at every layer's input and output. On the trained ViT-Ti (``../shared/real``)
static int8 agrees with fp32 on about 95% of held-out images, whatever few layers are left
float; run-time ranges per token agree on about 98.3% at the same size
(``results/benchmarks/int8_target.md``).

- ExecuTorch: the XNNPACK quantizer's dynamic configuration; XNNPACK's ``qd8`` kernels
  quantize each row (token) of a layer's input.
- LiteRT: the float file, its Linear and Conv layers made dynamic-range kernels by
  ai-edge-quantizer (:mod:`.litert_dynamic`: XNNPACK's ``qd8`` kernels again).

The torch graph the XNNPACK quantizer produces emulates one range per tensor;
:func:`per_token` rewrites a copy of it to one range per token, which ranks the layers a
search may keep float (:func:`impact_ranked`).
"""

from __future__ import annotations

import copy

import torch

DYNAMIC_ACTIVATIONS = "int8, per token, quantized at run time"


def xnnpack_config():
    """The XNNPACK quantizer's dynamic configuration (ExecuTorch's artifact, and the graph
    every dynamic search judges)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    return get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)


def litert_quant_config():
    """litert-torch's conversion config for a graph the XNNPACK quantizer made static int8
    (its static, per-channel configuration). Dynamic int8 on LiteRT is quantized on the
    float file instead (:mod:`.litert_dynamic`)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    return QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(config))


def fake_quantize_per_token(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to int8 with one symmetric range per row of its last dimension (per
    token). Of the emulations tried on the trained ViT-Ti (600 held-out images), this one
    predicts the runtimes best: agreement 97.8%, logits cosine 0.9989, against 97.5% and
    0.9987 for the ExecuTorch file and 97.7% and 0.9987 for the LiteRT one; an asymmetric
    range per token says 98.5% and 0.9993, one range per tensor 97.7% and 0.9977."""
    scale = (x.abs().amax(dim=-1, keepdim=True) / 127.0).clamp(min=1e-12)
    return (x / scale).round().clamp(-127.0, 127.0) * scale


def fake_quantize_per_image(x: torch.Tensor) -> torch.Tensor:
    """A conv's input rounded as XNNPACK rounds it: one range per batch item (a row of an
    NCHW tensor's last dimension is no token)."""
    dims = tuple(range(1, x.dim()))
    scale = (x.abs().amax(dim=dims, keepdim=True) / 127.0).clamp(min=1e-12)
    return (x / scale).round().clamp(-127.0, 127.0) * scale


ROUNDINGS = (fake_quantize_per_token, fake_quantize_per_image)


def per_token(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of a dynamically quantized pt2e graph (the XNNPACK quantizer's) whose
    run-time ranges are per token: each quantize, dequantize pair of a run-time range
    becomes :func:`fake_quantize_per_token` (a conv's, :func:`fake_quantize_per_image`)."""
    rewritten = copy.deepcopy(graph_module)
    graph = rewritten.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or "dequantize_per_tensor.tensor" not in str(node.target):
            continue
        quantize = node.args[0]
        if not isinstance(quantize, torch.fx.Node) or "quantize_per_tensor.tensor" not in str(
            quantize.target
        ):
            continue
        conv = any("conv" in str(user.target) for user in node.users)
        rounding = fake_quantize_per_image if conv else fake_quantize_per_token
        with graph.inserting_before(node):
            emulated = graph.call_function(rounding, (quantize.args[0],))
        node.replace_all_uses_with(emulated)
    graph.eliminate_dead_code()
    rewritten.recompile()
    return rewritten


def layer_reading(node: torch.fx.Node) -> str | None:
    """The module path of the layer that reads ``node`` (a rounding of its input)."""
    for user in node.users:
        stack = list(user.meta.get("nn_module_stack", {}).values())
        if stack:
            return stack[-1][0].removeprefix("L['self'].")
    return None


def without_rounding(emulated: torch.fx.GraphModule, layers: set[str]) -> torch.fx.GraphModule:
    """A copy of a :func:`per_token` graph whose ``layers`` read their input unrounded."""
    copied = copy.deepcopy(emulated)
    for node in list(copied.graph.nodes):
        if node.op == "call_function" and node.target in ROUNDINGS and layer_reading(node) in layers:
            node.replace_all_uses_with(node.args[0])
    copied.graph.eliminate_dead_code()
    copied.recompile()
    return copied


def impact_ranked(module, emulated: torch.fx.GraphModule, inputs: list) -> list[tuple[str, float]]:
    """The layers of a :func:`per_token` graph, the most harmful first, by how much the
    logits' KL divergence from the float module's falls when that one layer reads its input
    unrounded (measured on ``inputs``). Why measured: on the trained ViT-Ti the cosine a
    layer's input loses ranks every MLP's second layer first, and keeping the first one to
    twelve of those float left agreement at 97.7-98.3% on 700 held-out images; keeping this
    ranking's first layer float gave 98.9% (per-token emulation in torch)."""
    with torch.no_grad():
        reference = [module(x) for x in inputs]

    def divergence(graph) -> float:
        with torch.no_grad():
            pairs = [
                (graph(x).log_softmax(-1), r.log_softmax(-1)) for x, r in zip(inputs, reference, strict=True)
            ]
        return sum(
            float(torch.nn.functional.kl_div(q, p, log_target=True, reduction="sum")) for q, p in pairs
        )

    base = divergence(emulated)
    layers = [layer_reading(n) for n in emulated.graph.nodes if n.target in ROUNDINGS]
    gains = [
        (name, base - divergence(without_rounding(emulated, {name})))
        for name in dict.fromkeys(layers)
        if name
    ]
    return sorted([g for g in gains if g[1] > 0], key=lambda g: -g[1])
