"""LiteRT (TensorFlow Lite): export with the real converter (litert-torch), run in the
real interpreter with its XNNPACK delegate, bench, validate, inspect, and refuse bad
input in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import assert_one_line_error
from mobattn.attention import list_attentions
from mobattn.exporters import attention_subject, export, model_subject

pytest.importorskip("litert_torch", reason="LiteRT is an extra: pip install 'mobattn[litert]'")


@pytest.mark.slow
@pytest.mark.parametrize("name", list_attentions())
def test_every_attention_exports_to_litert_runs_on_xnnpack_and_matches_torch(tmp_path, name):
    record = export(attention_subject(name, 32, (8, 8)), "litert", tmp_path)
    assert record.status == "ok", record.reason
    assert record.path.endswith(f"{name}-dim32-8x8.tflite")
    assert record.validation["executor"] == "litert" and record.validation["max_rel"] < 1e-4
    assert record.details["delegated_ops"] > 0
    assert record.details["not_delegated"] == {}  # HiLo: only in the litert form (no batch-1 bmm)


@pytest.mark.slow
def test_int8_litert_is_full_integer_delegated_and_close_in_direction(tmp_path):
    subject = attention_subject("mhsa", 64, (8, 8))
    record = export(subject, "litert", tmp_path, precision="int8")
    assert record.status == "ok", record.reason
    assert record.path.endswith("mhsa-dim64-8x8-int8.tflite")
    assert record.validation["criterion"] == "cosine" and record.validation["cosine"] >= 0.99
    assert record.details["not_delegated"] == {}
    assert record.details["quantization"]["recipe"] == "outlier-aware"
    from pathlib import Path

    from mobattn.exporters.to_litert import interpreter, validate_file

    detail = interpreter(record.path).get_input_details()[0]
    assert detail["dtype"].__name__ == "int8" and detail["quantization"][0] > 0  # quantized input
    validated = validate_file(Path(record.path), subject, None, None)  # judged as what it is
    assert validated[1]["content"] == "int8" and validated[0].passed


@pytest.mark.slow
def test_model_exports_to_litert_wholly_delegated(tmp_path):
    """Every model of the zoo was checked by hand the same way (closing note of issue 22)."""
    record = export(model_subject("swiftformer_xs"), "litert", tmp_path)
    assert record.status == "ok", record.reason
    assert record.validation["max_rel"] < 1e-4
    assert record.details["not_delegated"] == {} and record.details["delegated_subgraphs"] == 1


@pytest.mark.slow  # measures in worker processes (seconds)
def test_litert_file_benches_validates_and_inspects(tmp_path, cli):
    base = "--attention mhsa --dim 16 --hw 4x4"
    assert cli(f"export {base} --to litert --out {tmp_path}").code == 0
    path = tmp_path / "mhsa-dim16-4x4.tflite"
    (row,) = cli(f"bench {path} --profile quick --op-profile --json").json()
    assert row["status"] == "ok" and row["backend"] == "litert" and row["median_ms"] > 0
    profile = row["details"]["op_profile"]  # LiteRT's own profiler, through its C API
    assert profile["runtime"].startswith("LiteRT profiler") and profile["inferences"] == 20
    assert "Softmax (NC, F32)" in {e["op_type"] for e in profile["by_op_type"]}  # XNNPACK's own ops
    assert all("(node" not in e["node"] for e in profile["by_node"])  # nothing off the delegate
    validated = cli(f"validate {path} {base} --json")
    assert validated.code == 0, validated.err
    assert validated.json()[0]["passed"] and validated.json()[0]["executor"] == "litert"
    (inspection,) = cli(f"inspect {path} --json").json()
    assert inspection["format"] == "litert" and inspection["delegation"]["not_delegated"] == {}
    assert inspection["op_histogram"].get("SOFTMAX") == 1


@pytest.mark.slow  # measures in worker processes (seconds)
def test_litert_backend_measures_like_the_others(cli):
    result = cli(
        "bench --attention eaa --dim 16 --hw 4x4 --backend litert --threads 1,2 --profile quick --json"
    )
    assert result.code == 0, result.err
    rows = result.json()
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["threads"] for r in rows] == [1, 2]
    assert all(r["artifact_bytes"] > 0 and r["load_ms"] is not None for r in rows)
    assert rows[0]["environment"]["ai-edge-litert"] and rows[0]["environment"]["litert-torch"]


def test_bad_litert_input_is_one_line(tmp_path, cli):
    out = tmp_path / "out"
    assert_one_line_error(
        cli(f"export --attention eaa --dim 8 --hw 2x2 --to litert --precision fp16 --out {out}"),
        "--to litert takes --precision fp32 or int8",
    )
    assert_one_line_error(
        cli(f"export --attention eaa --dim 8 --hw 2x2 --to litert --form mobile --out {out}"),
        "--form applies to --to onnx",
    )
    assert not out.exists()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    assert_one_line_error(cli(f"bench {bad}"), "bad.tflite is not a .tflite file")
    assert_one_line_error(cli(f"validate {bad} --attention eaa --dim 8 --hw 2x2"), "not a .tflite file")
    skipped = cli("bench --attention eaa --dim 8 --hw 2x2 --backend litert --precision fp16 --json")
    (row,) = skipped.json()
    assert row["status"] == "skipped" and "fp32 or int8" in row["reason"]


@pytest.mark.slow
def test_missing_litert_says_how_to_get_it(tmp_path):
    code = (
        "import sys; sys.modules['litert_torch'] = None\n"
        "from mobattn.cli import main\n"
        "sys.exit(main(['export', '--attention', 'eaa', '--dim', '8', '--hw', '2x2', '--to', 'litert',"
        f" '--out', {str(tmp_path)!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert "pip install 'mobattn[litert]'" in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_int8_export_runs_wholly_on_xnnpack_its_gelus_in_float_between_int8(cli, tmp_path):
    """SwiftFormer's GELUs were int8 GELUs on LiteRT's own kernels (20, splitting XNNPACK's
    graph in 21; issue 36). Each is now computed in float between a DEQUANTIZE and a
    QUANTIZE, which XNNPACK takes; an op still left off would be a warning, not only a count."""
    result = cli(
        f"export --model swiftformer_xs --resolution 64 --to litert --precision int8 --out {tmp_path} --json"
    )
    assert result.code == 0, result.err
    (record,) = result.json()
    details = record["details"]
    assert details["not_delegated"] == {} and details["delegated_subgraphs"] == 1
    assert details["quantization"]["float_between_int8"] == {"GELU": 20}
    assert "run outside XNNPACK" not in result.err
    assert "litert: int8 calibrated on random inputs" in result.err
