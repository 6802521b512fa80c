"""Precision as an axis: int8 ONNX (static QDQ), precisions in bench, tables and reports."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from helpers import assert_one_line_error
from mobattn.bench.report import precision_tables
from mobattn.bench.row import Row
from mobattn.environment import environment


@pytest.mark.slow
def test_int8_onnx_is_quantized_validated_and_named(tmp_path, cli):
    result = cli(
        f"export --attention eaa --dim 32 --hw 8x8 --to onnx --precision int8 --out {tmp_path} --json"
    )
    assert result.code == 0, result.err
    (record,) = result.json()
    assert record["path"].endswith("eaa-dim32-8x8-int8.onnx")
    validation = record["validation"]
    assert validation["criterion"] == "cosine" and validation["tolerance"] == 0.99 and validation["passed"]
    quantization = record["details"]["quantization"]
    assert quantization["format"] == "QDQ" and quantization["calibration"] == "16 random inputs"
    assert quantization["op_types_with_int8_inputs"]  # something runs on int8
    assert record["op_histogram"]["QuantizeLinear"] > 0 and record["op_histogram"]["DequantizeLinear"] > 0
    assert "random inputs" not in result.err  # a bare mechanism takes no images: nothing to warn of


def test_int8_onnx_options_that_do_not_fit_are_refused(tmp_path, cli):
    base = f"export --attention eaa --dim 8 --hw 2x2 --to onnx --out {tmp_path}"
    assert_one_line_error(cli(f"{base} --precision int8 --dynamic"), "drop --dynamic")
    assert_one_line_error(cli(f"{base} --model swiftformer_xs"), "drop them with --model")
    assert not any(tmp_path.iterdir())


def attention_row(
    precision: str, backend: str, median: float, cosine: float | None = None, status="ok"
) -> Row:
    return Row(
        kind="attention",
        attention="eaa",
        dim=64,
        hw=[14, 14],
        tokens=196,
        backend=backend,
        precision=precision,
        status=status,
        median_ms=median if status == "ok" else None,
        validation=None
        if cosine is None
        else {"cosine": cosine, "passed": cosine >= 0.99, "tolerance": 0.99},
    )


def test_precision_tables_give_ratio_fidelity_and_say_slower():
    rows = [
        attention_row("fp32", "onnxruntime", 2.0),
        attention_row("int8", "onnxruntime", 1.0, 0.9795),
        attention_row("fp32", "executorch", 2.0),
        attention_row("int8", "executorch", 3.0, 0.999),
        replace(attention_row("fp32", "executorch", 5.0), attention="mhsa"),
        replace(attention_row("int8", "executorch", 0.0, status="oom"), attention="mhsa"),
    ]
    tables = {title.split(",")[0]: body for title, _, body in precision_tables(rows)}
    assert tables["onnxruntime"] == [["14x14 (196)", "0.50x, cos 0.9795 (below 0.99)"]]
    assert tables["executorch"] == [["14x14 (196)", "1.50x (slower), cos 0.9990", "fp32 ok, int8 oom"]]


def test_table_gives_a_row_per_precision_with_its_fidelity(tmp_path, cli):
    here = environment()
    base = Row(
        kind="model",
        model="swiftformer_xs",
        attention="eaa",
        resolution=[224, 224],
        backend="onnxruntime",
        status="ok",
        median_ms=10.0,
        p90_ms=11.0,
        params=3_500_000,
        macs=600_000_000,
        environment=here,
        validation={"cosine": 0.99999999, "top1_agreement": 1.0},
    )
    int8 = replace(
        base, precision="int8", median_ms=6.0, validation={"cosine": 0.9998, "top1_agreement": 1.0}
    )
    results = tmp_path / "r.jsonl"
    results.write_text(base.to_json() + "\n" + int8.to_json() + "\n")
    result = cli(
        f"table --models swiftformer_xs --precision fp32,int8 --results {results} --format csv "
        f"--accuracy {tmp_path / 'none.jsonl'}"
    )
    assert result.code == 0, result.err
    header, *body = list(csv.reader(io.StringIO(result.out)))
    assert [r[2] for r in body] == ["fp32", "int8"]
    fidelity = header.index("cosine to torch fp32 (min over backends)")
    assert body[1][fidelity] == "0.99980" and body[1][header.index("onnxruntime median (ms)")] == "6.00"


@pytest.mark.slow
def test_bench_measures_each_precision_and_skips_what_a_backend_lacks(cli):
    result = cli(
        "bench --attention eaa --dim 16 --hw 4x4 --backend onnxruntime,torch --precision fp32,int8 "
        "--profile quick --json"
    )
    assert result.code == 0, result.err
    rows = {(r["backend"], r["precision"]): r for r in result.json()}
    assert rows[("torch", "int8")]["status"] == "skipped"
    assert rows[("onnxruntime", "int8")]["status"] == "ok"
    assert rows[("onnxruntime", "int8")]["validation"]["criterion"] == "cosine"


@pytest.mark.slow
def test_a_models_int8_on_random_inputs_is_said_for_every_target_a_mechanisms_is_not(tmp_path):
    """Random calibration loses the most on ExecuTorch and LiteRT (17% agreement on the
    trained ViT): every target says so for a model, in one warning before the export
    (issue 36); a bare mechanism takes no images, so nothing is said for it."""
    import warnings

    from mobattn.exporters import attention_subject, export, model_subject

    with pytest.warns(UserWarning, match="onnx: int8 calibrated on random inputs"):
        record = export(
            model_subject("swiftformer_xs", resolution=(64, 64)), "onnx", tmp_path, precision="int8"
        )
    assert record.status == "ok", record.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export(attention_subject("eaa", 8, (2, 2)), "onnx", tmp_path, precision="int8")
