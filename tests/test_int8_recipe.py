"""int8 recipes on a network with an activation outlier, as trained transformers have, and
the layer-by-layer divergence report that finds it (exporters/int8_recipe.py,
exporters/divergence.py). The trained ViT-Ti's figures are on BENCHMARKS.md (real images,
bench/scripts/real_fidelity.py); these tests need no shared data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_one_line_error
from mobattn.exporters.divergence import divergence
from mobattn.exporters.int8_recipe import OUTLIER_RATIO, outlier_ratio
from mobattn.exporters.subject import Subject


class OutlierMLP(nn.Module):
    """fc1 -> GELU -> fc2 where one of 2,048 hidden channels is 400x the others (and fc2
    reads it 400x more weakly, so the output is ordinary): the shape of block 7 of the trained
    ViT-Ti, whose GELU output reaches 209 while 99.9% of it stays under 2.5."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(32, 2048), nn.Linear(2048, 10)
        with torch.no_grad():
            self.fc1.weight[0] *= 400.0
            self.fc1.bias[0] = 400.0
            self.fc2.weight[:, 0] /= 400.0

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


def outlier_subject() -> Subject:
    return Subject(
        module=OutlierMLP().eval(),
        input_shape=(1, 8, 32),
        model=None,
        attention="outlier-mlp",
        size="dim32-8",
        input_name="tokens",
        output_name="out",
    )


def test_outlier_ratio_is_peak_over_the_999th_percentile():
    ordinary = np.linspace(-1.0, 1.0, 100_001)
    assert outlier_ratio([ordinary]) == pytest.approx(1.0, abs=0.01)
    assert outlier_ratio([ordinary, np.array([500.0])]) > OUTLIER_RATIO
    assert outlier_ratio([np.zeros(10)]) == 1.0


def test_onnx_outlier_aware_keeps_the_outlier_layer_float_and_all_ops_loses_it(tmp_path):
    from mobattn.exporters import to_onnx

    subject = outlier_subject()
    aware = to_onnx.export(subject, tmp_path / "aware.onnx", precision="int8")
    every = to_onnx.export(subject, tmp_path / "every.onnx", precision="int8", int8_recipe="all-ops")
    kept = aware.details["quantization"]["kept_in_float_for_outliers"]
    assert len(kept) == 1 and min(kept.values()) > OUTLIER_RATIO  # fc2, named with its ratio
    assert aware.details["quantization"]["recipe"] == "outlier-aware"
    assert aware.validation.passed and aware.validation.cosine > 0.999
    assert every.details["quantization"]["kept_in_float_for_outliers"] == {}
    assert every.validation.cosine < aware.validation.cosine - 0.01  # fc2's input rounded away

    # the divergence report names the layer that reads the outlier as the one that loses most
    fp32 = tmp_path / "fp32.onnx"
    to_onnx.export(subject, fp32, precision="fp32")
    inputs = [subject.example_input(seed=7 + i).numpy() for i in range(4)]
    report = divergence(fp32, tmp_path / "every.onnx", inputs)
    worst = report.largest_losses[0]
    assert report.compared > 0 and report.first_diverged is not None
    assert worst.input_outlier_ratio > OUTLIER_RATIO and worst.op_type in ("MatMul", "Gemm", "Add")
    assert report.output_cosine < 0.9  # the collapse, seen at the output too
    assert divergence(fp32, tmp_path / "aware.onnx", inputs).output_cosine > report.output_cosine


@pytest.mark.slow
def test_executorch_outlier_aware_keeps_the_outlier_layer_float(tmp_path):
    from mobattn.exporters import to_executorch

    subject = outlier_subject()
    aware = to_executorch.export(subject, tmp_path / "aware.pte", precision="int8")
    every = to_executorch.export(subject, tmp_path / "every.pte", precision="int8", int8_recipe="all-ops")
    # both ends of a quantized module are rounded: fc1's output and fc2's input hold the outlier
    assert sorted(aware.details["quantization"]["kept_in_float_for_outliers"]) == ["fc1", "fc2"]
    assert aware.validation.passed and aware.validation.cosine > 0.999
    assert every.validation.cosine < aware.validation.cosine - 0.01


def test_int8_recipe_option_is_checked_and_named(tmp_path, cli):
    base = f"export --attention eaa --dim 8 --hw 2x2 --out {tmp_path}"
    assert_one_line_error(
        cli(f"{base} --to onnx --precision int8 --int8-recipe fast"), "outlier-aware or all-ops"
    )
    assert_one_line_error(cli(f"{base} --to onnx --int8-recipe all-ops"), "applies to --precision int8")
    assert_one_line_error(
        cli(f"{base} --to coreml --int8-recipe all-ops"), "--int8-recipe applies to --to onnx"
    )
    assert not any(tmp_path.iterdir())
    result = cli(f"{base} --to onnx --precision int8 --int8-recipe all-ops --json")
    assert result.code == 0, result.err
    (record,) = result.json()
    assert record["path"].endswith("eaa-dim8-2x2-int8-all-ops.onnx")
    assert record["details"]["quantization"]["recipe"] == "all-ops"


def test_validate_divergence_reports_layers_or_refuses_other_formats(tmp_path, cli):
    base = "--attention eaa --dim 16 --hw 4x4"
    assert cli(f"export {base} --to onnx --precision int8 --out {tmp_path}").code == 0
    result = cli(f"validate {tmp_path / 'eaa-dim16-4x4-int8.onnx'} {base} --divergence --json")
    assert result.code == 0, result.err
    (record,) = result.json()
    report = record["divergence"]
    assert report["compared"] > 3 and report["inputs"] == 3 and report["largest_losses"]
    assert 0.99 <= report["output_cosine"] <= 1.0
    shown = cli(f"validate {tmp_path / 'eaa-dim16-4x4-int8.onnx'} {base} --divergence")
    assert "layers losing the most" in shown.out and "first tensor below cosine 0.99" in shown.out
    pte = tmp_path / "x.pte"
    pte.write_bytes(b"not read")
    assert_one_line_error(cli(f"validate {pte} {base} --divergence"), "is not an .onnx file")


def test_the_search_loop_keeps_its_best_step_when_the_target_is_out_of_reach():
    """More float layers need not agree more (each step is judged on a few hundred images):
    short of the target, the loop keeps the step that agreed most, with its layers, the
    later (closer to float) among equals; met, it keeps the fewest that meet it."""
    from mobattn.exporters.int8_recipe import fall_back

    def search(agreements: dict[int, float], target: float):
        def trial(layers):
            return f"{len(layers)} float", {}, agreements[len(layers)]

        return fall_back(trial, lambda _: ["a", "b", "c", "d", "e", "f", "g"], str, target)

    (chosen, _, share), fallen, steps = search({0: 0.90, 1: 0.95, 3: 0.96, 7: 0.94}, 0.99)
    assert (chosen, share, fallen) == ("3 float", 0.96, ["a", "b", "c"])
    assert [s["float_layers"] for s in steps] == [0, 1, 3, 7]  # every step stays in the record
    (chosen, _, share), _, _ = search({0: 0.90, 1: 0.96, 3: 0.93, 7: 0.96}, 0.99)
    assert (chosen, share) == ("7 float", 0.96)
    (chosen, _, share), fallen, _ = search({0: 0.90, 1: 0.95, 2: 0.99, 3: 0.99}, 0.99)
    assert (chosen, fallen) == ("2 float", ["a", "b"])
