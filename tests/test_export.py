"""Exports through the real exporters, checked with the real onnxruntime and coremltools."""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import mobattn
from helpers import DATA, assert_one_line_error, join, load_case, relative_error
from mobattn.exporters import agreement, attention_subject, export, model_subject
from mobattn.exporters.to_coreml import ChannelScale, coremltools, image_input
from mobattn.exporters.to_onnx import ort_session

ATTENTIONS = mobattn.list_attentions()


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort_session(Path(path))
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def xs_onnx(tmp_path_factory):
    """swiftformer_xs exported once for the graph checks."""
    out = tmp_path_factory.mktemp("xs")
    subject = model_subject("swiftformer_xs")
    record = export(subject, "onnx", out)
    assert record.status == "ok", record.reason
    return subject, record, onnx.load(record.path)


# --- ONNX ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ATTENTIONS)
def test_every_attention_to_onnx_matches_torch(tmp_path, name):
    subject = attention_subject(name, 64, (9, 7))
    record = export(subject, "onnx", tmp_path)
    assert record.status == "ok", record.reason
    assert Path(record.path).name == f"{name}-dim64-9x7.onnx"
    x = subject.example_input(seed=7)
    with torch.no_grad():
        expected = subject.module(x).numpy()
    assert (
        relative_error(torch.from_numpy(run_onnx(record.path, x.numpy())), torch.from_numpy(expected)) < 1e-4
    )
    assert record.validation["passed"] and record.validation["cosine"] > 0.99999


@pytest.mark.slow
def test_model_onnx_is_checked_simplified_and_labelled(xs_onnx):
    subject, record, model = xs_onnx
    onnx.checker.check_model(model, full_check=True)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model"] == "swiftformer_xs" and meta["resolution"] == "224x224"
    assert meta["mean"] == "0.485,0.456,0.406" and meta["mobattn_version"] == mobattn.__version__
    assert record.details["simplified"] and record.op_count == len(model.graph.node)
    assert Path(record.path).name == "swiftformer_xs-224.onnx"


@pytest.mark.slow
def test_model_onnx_carries_no_unneeded_work(xs_onnx):
    _, _, model = xs_onnx
    ops = [n.op_type for n in model.graph.node]
    assert "Expand" not in ops and "Tile" not in ops  # EAA's global query is broadcast, not repeated
    assert "BatchNormalization" not in ops  # every BatchNorm folded
    producers = {out: n for n in model.graph.node for out in n.output}
    for node in model.graph.node:  # no transpose pair that cancels
        if node.op_type == "Transpose" and node.input[0] in producers:
            before = producers[node.input[0]]
            if before.op_type == "Transpose":
                p1 = list(before.attribute[0].ints)
                p2 = list(node.attribute[0].ints)
                assert [p1[i] for i in p2] != list(range(len(p1)))
    outputs_1000 = [
        n
        for n in model.graph.node
        if n.op_type in ("Gemm", "MatMul") and n.output[0] in {o.name for o in model.graph.output}
    ]
    assert len(outputs_1000) <= 1  # the two heads were merged into one


@pytest.mark.slow
def test_official_weights_round_trip_through_onnx(tmp_path, cli):
    meta, state_dict, x, y_ref = load_case(DATA / "model_swiftformer_xs.npz")
    ckpt = tmp_path / "official_xs.pth"
    torch.save({"model": state_dict}, ckpt)
    result = cli(f"export --model swiftformer_xs --weights {ckpt} --to onnx --out {tmp_path} --json")
    assert result.code == 0, result.err
    y = run_onnx(result.json()[0]["path"], x.numpy())
    assert relative_error(torch.from_numpy(y), y_ref) < 1e-4


@pytest.mark.slow
def test_swap_exports_to_onnx_and_coreml(tmp_path, cli):
    result = cli(f"export --model swiftformer_xs --attention hilo --to onnx,coreml --out {tmp_path} --json")
    assert result.code == 0, result.err
    rows = result.json()
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert sorted(leftovers(tmp_path)) == [
        "swiftformer_xs-hilo-224.mlpackage",
        "swiftformer_xs-hilo-224.onnx",
    ]


@pytest.mark.slow
def test_dynamic_onnx_runs_at_two_resolutions_and_batches(tmp_path):
    subject = model_subject("swiftformer_xs", attention="hilo")
    record = export(subject, "onnx", tmp_path, dynamic=True)
    assert record.status == "ok", record.reason
    for shape in [(1, 3, 224, 224), (2, 3, 288, 256)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = subject.module(x)
        got = torch.from_numpy(run_onnx(record.path, x.numpy()))
        assert got.shape == (shape[0], 1000)
        assert relative_error(got, expected) < 1e-4


@pytest.mark.slow
def test_fp16_onnx_keeps_float32_io(tmp_path):
    subject = attention_subject("eaa", 64, (14, 14))
    record = export(subject, "onnx", tmp_path, precision="fp16")
    assert record.status == "ok", record.reason
    assert record.path.endswith("eaa-dim64-14x14-fp16.onnx")
    model = onnx.load(record.path)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert record.validation["max_rel"] < agreement.TOLERANCE["fp16"]


@pytest.mark.slow
def test_fp16_onnx_is_half_the_fp32_file(tmp_path):
    """The fp16 file once kept every fp32 weight beside its fp16 copy (1.5x the fp32 size)."""
    subject = attention_subject("mhsa", 256, (4, 4))  # weight-dominated: 263k parameters
    fp32 = export(subject, "onnx", tmp_path, precision="fp32")
    fp16 = export(subject, "onnx", tmp_path, precision="fp16")
    assert fp32.status == fp16.status == "ok"
    assert fp16.size_bytes <= 0.55 * fp32.size_bytes, (fp16.size_bytes, fp32.size_bytes)
    model = onnx.load(fp16.path)
    read = {name for node in model.graph.node for name in node.input}
    assert all(init.name in read for init in model.graph.initializer)  # no unused weight left


@pytest.mark.slow
def test_validation_failure_exits_1_and_keeps_nothing(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(agreement.TOLERANCE, "fp32", 1e-12)
    result = cli(f"export --attention mhsa --dim 32 --hw 4x4 --out {tmp_path}")
    assert result.code == 1
    assert "relative" in result.out and "tolerance" in result.out
    assert leftovers(tmp_path) == []


# --- Core ML -------------------------------------------------------------------------


def spec_of(path):
    return coremltools().utils.load_spec(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTENTIONS)
def test_every_attention_to_coreml_is_an_ml_program(tmp_path, name):
    subject = attention_subject(name, 64, (7, 7))
    record = export(subject, "coreml", tmp_path)
    assert record.status == "ok", record.reason
    spec = spec_of(record.path)
    assert spec.WhichOneof("Type") == "mlProgram"
    assert [i.name for i in spec.description.input] == ["tokens"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 49, 64]
    assert record.op_histogram and record.op_count == sum(record.op_histogram.values())


@pytest.mark.slow
def test_model_to_coreml_with_metadata(tmp_path, cli):
    result = cli(f"export --model swiftformer_xs --to coreml --min-target iOS17 --out {tmp_path} --json")
    assert result.code == 0, result.err
    (record,) = result.json()
    spec = spec_of(record["path"])
    assert record["path"].endswith("swiftformer_xs-224-ios17.mlpackage")  # the option is in the name
    assert spec.description.metadata.author == "mobattn"
    meta = dict(spec.description.metadata.userDefined)
    assert (
        meta["model"] == "swiftformer_xs" and meta["attention"] == "eaa" and meta["resolution"] == "224x224"
    )
    assert spec.specificationVersion >= 8  # iOS17
    validation = record["validation"]  # executed: by Core ML on macOS, the reference executor elsewhere
    assert validation["passed"] and validation["executor"] == (
        "coreml" if sys.platform == "darwin" else "reference"
    )
    assert (
        validation["criterion"] == "cosine"
        and validation["cosine"] >= 0.999
        and validation["top1_agreement"] == 1
    )


@pytest.mark.slow
def test_image_input_folds_mean_and_std(tmp_path):
    subject = model_subject("swiftformer_xs")
    kind, wrapped = image_input(subject, subject.module)
    pixels = torch.randint(0, 256, (1, 3, 32, 40)).float()
    coreml_pre = kind.scale * pixels + torch.tensor(kind.bias).reshape(1, 3, 1, 1)
    mean, std = torch.tensor(subject.mean).reshape(1, 3, 1, 1), torch.tensor(subject.std).reshape(1, 3, 1, 1)
    assert isinstance(wrapped, ChannelScale)
    torch.testing.assert_close(
        coreml_pre * wrapped.factors, (pixels / 255 - mean) / std, rtol=1e-5, atol=1e-5
    )
    record = export(subject, "coreml", tmp_path, image=True)
    assert record.status == "ok", record.reason
    assert record.validation["passed"] and record.details["classifier"]
    spec = spec_of(record.path)
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    # what an iOS developer gets: a classifier with labels, described inputs and outputs,
    # Xcode's preview type, a license, no mean/std left for the app to apply twice
    assert spec.description.predictedFeatureName == "classLabel"
    assert len(spec.mlProgram.functions) and len(spec.description.output) == 2
    labels = spec.description.output  # classLabel (string) and its probabilities (dictionary)
    assert {o.type.WhichOneof("Type") for o in labels} == {"stringType", "dictionaryType"}
    meta = dict(spec.description.metadata.userDefined)
    assert meta["com.apple.coreml.model.preview.type"] == "imageClassifier"
    assert "mean" not in meta and "std" not in meta and meta["normalization"].startswith("folded")
    assert spec.description.metadata.license and spec.description.input[0].shortDescription
    model_file = Path(record.path) / "Data" / "com.apple.CoreML" / "model.mlmodel"
    assert model_file.stat().st_mode & 0o044 == 0o044  # readable by group and others, not 0600


# What each smaller artifact promises against its target's fp32 file, for a
# weight-dominated subject (issue: fp16 <= 0.55x, int8 <= 0.35x; 4-bit palettes <= 0.2x).
SIZE_PROMISES = {
    "onnx": [({"precision": "fp16"}, 0.55), ({"precision": "int8"}, 0.35)],
    "executorch": [({"precision": "int8"}, 0.35)],
    "litert": [({"precision": "int8"}, 0.35)],
    "coreml": [
        ({"precision": "fp16"}, 0.55),
        ({"precision": "fp16", "compress": "int8"}, 0.35),
        ({"precision": "fp16", "compress": "palettize8"}, 0.35),
        ({"precision": "fp16", "compress": "palettize4"}, 0.2),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("target", list(SIZE_PROMISES))
def test_every_smaller_artifact_delivers_the_size_it_promises(tmp_path, target):
    if target == "litert":
        pytest.importorskip("litert_torch", reason="LiteRT is an extra: pip install 'mobattn[litert]'")
    subject = attention_subject("mhsa", 256, (4, 4))  # weight-dominated: 263k parameters
    fp32 = export(subject, target, tmp_path, precision="fp32")
    assert fp32.status == "ok", fp32.reason
    for options, ratio in SIZE_PROMISES[target]:
        small = export(subject, target, tmp_path, **options)
        assert small.status == "ok", (options, small.reason)
        assert small.size_bytes <= ratio * fp32.size_bytes, (options, small.size_bytes, fp32.size_bytes)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("compress", "op"), [("int8", "constexpr_affine_dequantize"), ("palettize4", "constexpr_lut_to_dense")]
)
def test_coreml_weight_compression(tmp_path, compress, op):
    subject = attention_subject("mhsa", 64, (7, 7))
    plain = export(subject, "coreml", tmp_path)
    small = export(subject, "coreml", tmp_path, compress=compress)
    assert small.status == "ok", small.reason
    assert small.path.endswith(f"mhsa-dim64-7x7-{compress}.mlpackage")
    assert small.op_histogram.get(op, 0) >= 2
    assert small.size_bytes < plain.size_bytes
    assert small.validation["passed"] and small.validation["executor"] in ("reference", "coreml")


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predictions run on macOS only")
def test_coreml_predictions_match_torch_on_macos(tmp_path):
    record = export(model_subject("swiftformer_xs"), "coreml", tmp_path, precision="fp32")
    assert record.status == "ok" and record.validation["passed"]


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "swiftformer_q"], ["unknown model"]),
        (["--model", "swiftformer_xs", "--to", "tflite"], ["unknown export target", "onnx"]),
        (["--model", "swiftformer_xs", "--attention", "flash"], ["unknown attention"]),
        (["--model", "swiftformer_xs", "--resolution", "22O"], ["--resolution"]),
        (["--model", "swiftformer_xs", "--resolution", "8"], ["at least 32"]),
        (["--model", "swiftformer_xs", "--resolution", "224,320"], ["one resolution"]),
        (["--model", "swiftformer_xs", "--weights", "missing.pth"], ["not found"]),
        (["--attention", "hilo", "--dim", "64"], ["--hw"]),
        (["--model", "swiftformer_xs", "--to", "coreml", "--compress", "int3"], ["--compress"]),
        (["--model", "swiftformer_xs", "--to", "coreml", "--min-target", "iOS9"], ["--min-target"]),
        (["--attention", "eaa", "--dim", "64", "--hw", "4x4", "--to", "coreml", "--image-input"], ["image"]),
    ],
)
def test_bad_export_input_exits_2_and_writes_nothing(tmp_path, cli, args, fragments):
    out = tmp_path / "out"
    assert_one_line_error(cli(f"export {join(args)} --out {out}"), *fragments)
    assert leftovers(out) == []


def test_corrupt_and_mismatched_weights(tmp_path, cli):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"garbage" * 100)
    out = tmp_path / "out"
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --weights {corrupt} --out {out}"), "cannot read"
    )
    other = tmp_path / "s.pth"
    torch.save(mobattn.create_model("swiftformer_s").state_dict(), other)
    assert_one_line_error(cli(f"export --model swiftformer_xs --weights {other} --out {out}"), "do not fit")
    assert leftovers(out) == []


@pytest.mark.slow
def test_existing_output_is_not_replaced_without_force(tmp_path, cli):
    args = ["export", "--attention", "eaa", "--dim", "32", "--hw", "4x4", "--out", tmp_path]
    assert cli(f"{join(args)}").code == 0
    target = tmp_path / "eaa-dim32-4x4.onnx"
    before = target.read_bytes()
    assert_one_line_error(cli(f"{join(args)}"), "exists", "--force")
    assert target.read_bytes() == before
    assert cli(f"{join(args)} --force").code == 0
    assert leftovers(tmp_path) == ["eaa-dim32-4x4.onnx"]
