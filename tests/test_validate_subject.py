"""``mobattn validate FILE`` reads the subject from a mobattn export's metadata and says
so (issue 41); a file that names none, or was exported from a checkpoint that is not
given again, is one line."""

from __future__ import annotations

import pytest

from helpers import assert_one_line_error


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from mobattn.exporters import attention_subject, export, model_subject

    folder = tmp_path_factory.mktemp("exports")
    bare = export(attention_subject("hilo", 16, (4, 4)), "onnx", folder)
    model = export(model_subject("swiftformer_xs", resolution=(64, 64)), "onnx", folder)
    assert bare.status == model.status == "ok"
    return bare.path, model.path


def test_validate_takes_the_subject_from_the_files_metadata(cli, exported):
    bare, model = exported
    result = cli(f"validate {bare} --json")
    assert result.code == 0, result.err
    assert "subject from hilo-dim16-4x4.onnx's metadata: hilo dim 16 at 4x4, 2 heads" in result.err
    assert result.json()[0]["passed"] is True
    result = cli(f"validate {model} --json")
    assert result.code == 0 and "model swiftformer_xs (eaa) at 64x64" in result.err, result.err
    stated = cli(f"validate {model} --model swiftformer_xs --resolution 64 --json")  # as before: no line
    assert stated.code == 0 and "metadata" not in stated.err


def test_a_file_naming_no_subject_or_a_checkpoint_not_given_is_one_line(cli, exported, tmp_path):
    import onnx

    bare, _ = exported
    graph = onnx.load(bare)
    del graph.metadata_props[:]
    onnx.save(graph, tmp_path / "other-tool.onnx")
    assert_one_line_error(
        cli(f"validate {tmp_path / 'other-tool.onnx'}"), "does not name its subject", "--model"
    )
    graph = onnx.load(bare)
    for prop in graph.metadata_props:
        if prop.key == "weights":
            prop.value = "local checkpoint"
    onnx.save(graph, tmp_path / "trained.onnx")
    assert_one_line_error(cli(f"validate {tmp_path / 'trained.onnx'}"), "local checkpoint", "--weights")


def test_eval_takes_the_model_from_the_metadata_and_refuses_a_bare_mechanisms_file(cli, exported, tmp_path):
    bare, _ = exported
    assert_one_line_error(cli(f"eval --artifact {bare} --data {tmp_path}"), "bare attention's export")
    assert_one_line_error(cli(f"eval --data {tmp_path}"), "give --model")


def _other_targets():
    from mobattn.exporters.formats import TARGETS

    return [name for name in TARGETS if name != "onnx"]  # onnx: the fixture above


@pytest.mark.slow
@pytest.mark.parametrize("target", _other_targets())
def test_every_targets_file_names_its_subject(cli, target, tmp_path):
    """Each target writes mobattn's metadata where its format keeps a producer's facts
    (a .tflite metadata entry, a .pte constant method, Core ML's user metadata), so
    ``validate FILE`` needs nothing restated whatever the file."""
    from mobattn.exporters import attention_subject, export
    from mobattn.exporters.formats import get_target

    if not get_target(target).installed():
        pytest.skip(f"{target} needs mobattn[{get_target(target).extra}]")
    record = export(attention_subject("hilo", 16, (4, 4)), target, tmp_path)
    assert record.status in ("ok", "unvalidated"), record.reason
    result = cli(f"validate {record.path} --json")
    assert result.code == 0, result.err
    assert "metadata: hilo dim 16 at 4x4, 2 heads" in result.err, result.err
    wrong = cli(f"validate {record.path} --attention mhsa --dim 16 --hw 4x4")
    assert_one_line_error(wrong, "is an export of attention hilo")
