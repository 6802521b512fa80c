"""int8 with ranges chosen at run time (``--int8-recipe dynamic``, ExecuTorch and LiteRT):
int8 weights, each layer's input quantized per token when it runs. The search judges such
a graph in per-token emulation, as XNNPACK's kernels round."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from helpers import assert_one_line_error


def test_per_token_emulation_gives_each_token_its_own_range():
    """A token 1000x the others spoils one range per tensor; per token it does not."""
    pytest.importorskip("executorch")
    import torch

    from mobattn.exporters.pt2e_dynamic import per_token
    from mobattn.exporters.pt2e_int8 import quantize_int8

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(16, 8)).eval()
    example = torch.randn(1, 6, 16)
    quantized, facts = quantize_int8(module, example, [example], recipe="dynamic")
    assert "per token" in facts["activations"]
    emulated = per_token(quantized)
    targets = [str(n.target) for n in emulated.graph.nodes if n.op == "call_function"]
    assert any("fake_quantize_per_token" in t for t in targets)
    assert not any("dequantize_per_tensor.tensor" in t for t in targets)
    x = torch.randn(1, 6, 16)
    x[0, 0] *= 1000.0  # one outlier token
    with torch.no_grad():
        exact, per_tensor, per_row = module(x), quantized(x), emulated(x)
    ordinary = slice(1, None)
    error = lambda y: float((y[0, ordinary] - exact[0, ordinary]).abs().max())  # noqa: E731
    assert error(per_row) < 0.05 < error(per_tensor)


def test_onnx_refuses_the_dynamic_recipe_in_one_line(cli, tmp_path):
    result = cli(
        f"export --model swiftformer_xs --resolution 32 --to onnx --precision int8 --int8-recipe dynamic "
        f"--out {tmp_path}"
    )
    assert_one_line_error(result, "dynamic: ExecuTorch and LiteRT")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("target", ["executorch", "litert"])
def test_a_dynamic_int8_file_is_written_run_and_judged(cli, tmp_path, target):
    pytest.importorskip("executorch")
    if target == "litert":
        pytest.importorskip("ai_edge_litert")
    from PIL import Image

    folder = tmp_path / "calib" / "a"
    folder.mkdir(parents=True)
    for i in range(12):
        pixels = np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    result = cli(
        f"export --model swiftformer_xs --resolution 32 --to {target} --precision int8 --int8-recipe dynamic "
        f"--calibration {tmp_path / 'calib'} --out {tmp_path / 'out'} --json"
    )
    assert result.code == 0, result.err
    record = result.json()[0]
    assert record["status"] == "ok" and record["path"].endswith(
        f"-int8-dynamic{'.pte' if target == 'executorch' else '.tflite'}"
    )
    quantization = record["details"]["quantization"]
    assert quantization["recipe"] == "dynamic" and "per token" in quantization["activations"]
    assert record["validation"]["criterion"] == "top1_agreement"
    assert not record["details"].get("not_delegated"), record["details"]  # depthwise convs stay float
    if target == "litert":  # quantized on the float file, layer by layer
        assert quantization["io"].startswith("float") and "ai-edge-quantizer" in quantization["quantizer"]
    inspected = cli(f"inspect {record['path']} --json")  # the file names its subject
    assert inspected.code == 0 and inspected.json()[0]["metadata"]["model"] == "swiftformer_xs", inspected.out


def test_a_layer_read_unrounded_loses_its_rounding_whatever_its_kind():
    """The impact ranking unrounds one layer at a time: a conv's input (one range per image)
    as well as a linear's (one per token)."""
    pytest.importorskip("executorch")
    import torch

    from mobattn.exporters.pt2e_dynamic import (
        fake_quantize_per_image,
        fake_quantize_per_token,
        per_token,
        without_rounding,
    )
    from mobattn.exporters.pt2e_int8 import quantize_int8

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.linear = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.linear(self.conv(x).flatten(2).transpose(1, 2))

    torch.manual_seed(0)
    example = torch.randn(1, 3, 8, 8)
    emulated = per_token(quantize_int8(Net().eval(), example, [example], recipe="dynamic")[0])

    def roundings(graph):
        return sorted(
            n.target.__name__
            for n in graph.graph.nodes
            if n.op == "call_function" and "fake" in str(n.target)
        )

    assert roundings(emulated) == sorted([fake_quantize_per_image.__name__, fake_quantize_per_token.__name__])
    assert roundings(without_rounding(emulated, {"conv"})) == [fake_quantize_per_token.__name__]
    assert roundings(without_rounding(emulated, {"linear"})) == [fake_quantize_per_image.__name__]


def test_litert_keeps_float_the_layers_named_and_finds_them_by_their_weights():
    """On LiteRT a dynamic int8 file is quantized layer by layer on the float file: the
    layers named compute in float from dequantized int8 weights (found by their weights, the
    graph's last one included, whose output takes the graph's name), the rest are
    dynamic-range int8, and one not in the model is not claimed float."""
    pytest.importorskip("ai_edge_quantizer")
    pytest.importorskip("ai_edge_litert")
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from mobattn.exporters.litert_dynamic import quantized_file

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = torch.nn.ModuleList(
                torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))
                for _ in range(2)
            )
            self.head = torch.nn.Linear(16, 4)

        def forward(self, x):
            for stage in self.stages:
                x = x + stage(x)
            return self.head(x)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(1, 8, 16)
    file = quantized_file(net, x, {"stages.1.0", "head", "not.a.layer"})
    assert file.float_layers == {"stages.1.0", "head"}
    loaded = Interpreter(model_content=file.content)
    ops = loaded._get_ops_details()
    tensors = {t["index"]: t for t in loaded.get_tensor_details()}
    dequantized = {op["outputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}
    weights = Counter(
        "dequantized" if op["inputs"][1] in dequantized else tensors[op["inputs"][1]]["dtype"].__name__
        for op in ops
        if op["op_name"] == "FULLY_CONNECTED"
    )
    assert weights == {"int8": 3, "dequantized": 2}, weights
    assert {tensors[op["inputs"][0]]["dtype"].__name__ for op in ops if op["op_name"] == "DEQUANTIZE"} == {
        "int8"
    }
    with torch.no_grad():
        expected = net(x)
    assert torch.nn.functional.cosine_similarity(file(x).flatten(), expected.flatten(), dim=0) > 0.99
