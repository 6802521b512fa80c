"""int8 ops XNNPACK takes only in float (GELU) are computed in float between int8 tensors
(:mod:`exporters.litert_float_ops`): on the delegate, with the values LiteRT's int8 kernel gave."""

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("executorch.backends.xnnpack.quantizer")

from mobattn.exporters.int8_recipe import DEFAULT_RECIPE  # noqa: E402
from mobattn.exporters.litert_float_ops import float_between  # noqa: E402
from mobattn.exporters.pt2e_dynamic import litert_quant_config  # noqa: E402
from mobattn.exporters.pt2e_search import quantize_for_target  # noqa: E402
from mobattn.exporters.to_litert import _run_function, delegation, interpreter  # noqa: E402


def _int8_file(tmp_path):
    """conv -> GELU -> conv, static int8 as litert-torch converts it: an int8 GELU."""
    import litert_torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(8, 4, 1))
    example = torch.randn(1, 3, 16, 16)
    calibration = [torch.randn(1, 3, 16, 16) for _ in range(8)]
    with torch.no_grad():
        net = net.eval()
        quantized, _ = quantize_for_target(net, example, calibration, DEFAULT_RECIPE, False, runtime="litert")
        path = tmp_path / "int8.tflite"
        litert_torch.convert(quantized, (example,), quant_config=litert_quant_config()).export(str(path))
    return path


@pytest.mark.slow
def test_an_int8_gelu_runs_in_float_on_xnnpack_and_gives_the_same_values(tmp_path):
    original = _int8_file(tmp_path)
    content, rewritten = float_between(original.read_bytes())
    assert rewritten == {"GELU": 1}
    (tmp_path / "float_gelu.tflite").write_bytes(content)
    before, after = interpreter(original), interpreter(tmp_path / "float_gelu.tflite")
    assert delegation(before)["not_delegated"] == {"GELU": 1}  # what litert-torch writes
    assert delegation(after)["not_delegated"] == {} and delegation(after)["delegated_subgraphs"] == 1
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32) * 2
        np.testing.assert_array_equal(_run_function(before)(x), _run_function(after)(x))
    assert float_between(content) == (content, {})  # nothing int8 left to rewrite
