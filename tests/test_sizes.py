"""One artifact for several input sizes (``export --sizes``): refused in one line where
it cannot apply; on ONNX, ExecuTorch and LiteRT validated at every size it promises,
named by them, and timed at each of them by ``bench FILE``."""

from __future__ import annotations

import pytest

from helpers import assert_one_line_error

MODEL = "--model swiftformer_xs"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("--attention eaa --dim 32 --hw 7x7 --to onnx --sizes 224,256", "token grid is fixed"),
        (f"{MODEL} --to onnx --sizes 224", "two sizes or more"),
        (f"{MODEL} --to onnx --sizes 256,320 --resolution 224", "must include the example resolution"),
        (f"{MODEL} --to onnx --sizes 224,abc", "--sizes must be integers"),
        (f"{MODEL} --to executorch --precision int8 --sizes 224,256", "drop --sizes"),
        (f"{MODEL} --to coreml --sizes 224,256 --image-input", "tensor input"),
    ],
)
def test_sizes_that_cannot_apply_are_one_line(cli, tmp_path, args, fragment):
    if "executorch" in args:
        pytest.importorskip("executorch")
    result = cli(f"export {args} --out {tmp_path}")
    assert_one_line_error(result, fragment)
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.slow  # three exports of a model and their benchmarks (about a minute)
@pytest.mark.parametrize("target", ["onnx", "executorch", "litert"])
def test_one_artifact_validated_and_timed_at_every_size(cli, tmp_path, target):
    extra = {"executorch": "executorch", "litert": "litert_torch"}.get(target)
    if extra:
        pytest.importorskip(extra)
    exported = cli(f"export {MODEL} --to {target} --sizes 256,224 --out {tmp_path} --json")
    assert exported.code == 0, exported.err
    (record,) = exported.json()
    assert record["status"] == "ok" and record["details"]["sizes"] == [224, 256]
    assert "sizes224-256" in record["path"]  # named by what it promises
    path = record["path"]
    validated = cli(f"validate {path} --json")  # the file says its sizes: nothing restated
    assert validated.code == 0, validated.err
    note = validated.json()[0]["note"]
    assert "1x3x224x224" in note and "1x3x256x256" in note  # validated at each size
    rows = cli(f"bench {path} --runs 3 --warmup 1 --json").json()  # one row per promised size
    assert [r["resolution"] for r in rows] == [[224, 224], [256, 256]]
    assert all(r["status"] == "ok" for r in rows)
    assert_one_line_error(cli(f"bench {path} --resolution 288"), "takes sizes 224,256")


@pytest.mark.slow  # a Core ML export run by the reference executor at each size (about 20 s)
def test_core_ml_enumerated_shapes_validated_at_every_size(cli, tmp_path):
    pytest.importorskip("coremltools")
    exported = cli(f"export {MODEL} --to coreml --sizes 224,256 --out {tmp_path} --json")
    assert exported.code == 0, exported.err
    (record,) = exported.json()
    assert record["status"] == "ok" and record["details"]["sizes"] == [224, 256]
    assert "1x3x256x256" in record["validation"]["note"]
    validated = cli(f"validate {record['path']} --json")
    assert validated.code == 0, validated.err
    assert "1x3x256x256" in validated.json()[0]["note"]  # the file's own sizes, checked again
