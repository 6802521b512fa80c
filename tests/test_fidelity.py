"""``mobattn fidelity``: accuracy after conversion as a command (issue 36): every artifact
exported as ``export`` would, run on the images whatever its verdict, one row each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_line_error
from mobattn.bench.fidelity import paired_delta, taking_int8_options, variants


def test_the_paired_top1_change_and_its_interval():
    torch_right = np.array([True] * 80 + [False] * 20)
    same = paired_delta(torch_right.copy(), torch_right)
    assert same == (0.0, (0.0, 0.0))  # no discordant pair: no change, no doubt
    artifact_right = torch_right.copy()
    artifact_right[:5] = False  # five lost
    delta, (low, high) = paired_delta(artifact_right, torch_right)
    assert delta == -0.05 and low < -0.05 < high < 0


def test_variants_are_what_each_target_takes_and_the_rest_is_said():
    chosen, skipped = variants(["onnx", "executorch"], ["fp16", "int8"])
    assert [v.name for v in chosen] == ["onnx fp16", "onnx int8", "executorch int8"]
    assert skipped == ["executorch fp16: executorch takes fp32, int8"]
    chosen, _ = variants(["coreml"], None)
    assert [v.name for v in chosen] == ["coreml fp16"]  # the target's own default


def test_an_int8_option_a_target_lacks_is_refused_for_that_target_alone():
    """``--int8-recipe dynamic`` is ExecuTorch's and LiteRT's: ONNX's int8 is not measured
    (said why), the rest is; asked of ONNX alone, one line and exit 2 (below)."""
    pytest.importorskip("executorch")
    from mobattn.exporters import model_subject

    subject = model_subject("swiftformer_xs", None, (64, 64))
    chosen, _ = variants(["onnx", "executorch"], ["fp32", "int8"])
    kept, refused = taking_int8_options(subject, chosen, calibration="c.txt", int8_recipe="dynamic")
    assert [v.name for v in kept] == ["onnx fp32", "executorch fp32", "executorch int8"]
    assert len(refused) == 1 and refused[0].startswith("onnx int8: --int8-recipe must be")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("fidelity")
    lines = []
    for i in range(12):
        pixels = np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
        lines.append(f"{root / f'{i}.png'} {i % 3}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root


def test_bad_requests_are_one_line(cli, labelled, tmp_path):
    base = (
        f"fidelity --model swiftformer_xs --data {labelled / 'labels.txt'} --results {tmp_path / 'f.jsonl'}"
    )
    assert_one_line_error(cli(f"{base} --to executorch --precision fp16"), "no target takes")
    assert_one_line_error(cli(f"{base} --limit 0"), "--limit must be positive")
    assert_one_line_error(cli(f"{base} --to tflite"), "export target")
    assert_one_line_error(cli(f"{base} --validation-images {labelled}"), "give --calibration too")
    dynamic_on_onnx = cli(f"{base} --to onnx --precision int8 --calibration {labelled} --int8-recipe dynamic")
    assert_one_line_error(dynamic_on_onnx, "onnx int8: --int8-recipe must be outlier-aware or all-ops here")
    assert not (tmp_path / "f.jsonl").exists()  # nothing half-written


@pytest.mark.slow
def test_every_artifact_gets_a_row_with_its_verdict(cli, labelled, tmp_path):
    results = tmp_path / "fidelity.jsonl"
    result = cli(
        f"fidelity --model swiftformer_xs --resolution 32 --data {labelled / 'labels.txt'} --to onnx "
        f"--precision fp32,int8 --calibration {labelled} --results {results} --json"
    )
    assert result.code == 0, result.err
    rows = result.json()
    assert [(r["target"], r["precision"]) for r in rows] == [("onnx", "fp32"), ("onnx", "int8")]
    fp32, int8 = rows
    assert fp32["agreement"] == 1.0 and fp32["kept"] is True and fp32["verdict"] == "kept"
    assert fp32["images"] == 12 and fp32["top1_delta"] == 0.0 and fp32["cosine_mean"] > 0.9999
    assert int8["size_ratio"] < 0.5 * fp32["size_ratio"] and int8["calibration"].startswith("12 images")
    assert 0 <= int8["agreement"] <= 1 and int8["top1"] is not None
    low, high = int8["agreement_interval"]
    assert low <= int8["agreement"] <= high
    stored = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["kind"] for r in stored] == ["fidelity", "fidelity"] and stored[1]["precision"] == "int8"


def _row(**measured):
    """A fidelity row as ``mobattn fidelity`` appends it, with ``measured`` over defaults."""
    from mobattn.bench.fidelity import FidelityRow

    defaults = dict(model="m", attention=None, weights="w", target="onnx", precision="int8", images=100)
    defaults |= dict(agreement=0.95, agreement_interval=(0.89, 0.98), cosine_mean=0.99, cosine_p1=0.95)
    defaults |= dict(size_bytes=3, size_ratio=0.3, kept=True, verdict="kept", calibration="75 images")
    return FidelityRow(**(defaults | measured))


def test_the_page_table_says_what_each_row_measured():
    from mobattn.bench.fidelity import markdown

    labelled = dict(top1=0.80, top1_torch=0.81, top1_delta=-0.01, top1_delta_interval=(-0.03, 0.01))
    refused = dict(agreement=0.17, agreement_interval=(0.1, 0.26), kept=False, size_ratio=0.33)
    refused |= dict(verdict="top-1 agrees on 17%", calibration="random")
    rows = [_row(**labelled), _row(target="litert", **refused)]
    text = markdown(rows)
    assert (
        text.startswith("Measured by `mobattn fidelity` on an unnamed CPU")
        and "int8 calibrated on 75" in text
    )
    table = text.splitlines()[2:]  # after the provenance line
    assert table[2] == (
        "| onnx int8 | 95.00% [89.0%, 98.0%] | 80.00% (-1.00 [-3.00, +1.00]) | 0.9900 (0.9500) "
        "| 0.30x | kept |"
    )
    assert "n/a (unlabelled)" in table[3] and table[3].endswith("top-1 agrees on 17% |")


@pytest.mark.slow
def test_report_shows_accuracy_after_conversion(cli, tmp_path):
    from dataclasses import replace

    from test_guarantees import write_results

    row = _row(model="vit", images=40, agreement_interval=(0.83, 0.99), cosine_p1=0.97, source="eval.txt")
    fidelity = tmp_path / "fidelity.jsonl"
    fidelity.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in (row, replace(row, target="litert"))))
    results = write_results(tmp_path / "r.jsonl")
    result = cli(f"report {results} --out {tmp_path / 'out'} --fidelity {fidelity}")
    assert result.code == 0, result.err
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Accuracy after conversion (vit, 40 images of eval.txt)" in report
    assert "| onnx int8 | 95.00% [83.0%, 99.0%]" in report and "| litert int8 |" in report


def test_the_speed_table_shows_each_backends_agreement_on_real_images():
    """`mobattn table` joins `mobattn fidelity`'s newest row per (model, target, precision):
    a column per backend, only when some row has one."""
    from dataclasses import replace

    from test_report import model_row

    from mobattn.bench.table import build_rows, render

    speed = [
        replace(model_row("deit_tiny", "mhsa", b, 10.0), precision="int8") for b in ("onnxruntime", "litert")
    ]
    older = _row(model="deit_tiny", agreement=0.90, images=700, top1_delta=-0.02)
    newer = _row(model="deit_tiny", agreement=0.9857, images=700, top1_delta=-0.0014)
    other = _row(model="deit_tiny", precision="fp16", agreement=0.5)  # not this row's precision
    table = build_rows(speed, [], ["onnxruntime", "litert"], [older, newer, other])
    assert table[0].real_images == {"onnxruntime": "98.57% of 700 (top-1 -0.14 pts)"}
    text = render(table, ["onnxruntime", "litert"], "md")
    header, _, line = text.splitlines()
    assert "onnxruntime agreement with fp32, real images (mobattn fidelity)" in header
    assert "| 98.57% of 700 (top-1 -0.14 pts) |" in line and "| n/a |" in line
    plain = render(build_rows(speed, [], ["onnxruntime", "litert"]), ["onnxruntime", "litert"], "md")
    assert "real images" not in plain  # no fidelity rows: the table as before
