"""A backend may time a target's file with other runtime options (issue 41): the options
live in its row of the backend table, the target's runner takes them or refuses them in
one line, and each row records them."""

from __future__ import annotations

import pytest

from helpers import assert_one_line_error
from mobattn.bench.config import BACKENDS
from mobattn.errors import MobattnError
from mobattn.exporters.formats import TARGETS
from mobattn.exporters.record import check_runtime_options


@pytest.mark.parametrize("backend", [b for b in BACKENDS.values() if b.target], ids=lambda b: b.name)
def test_every_backends_runtime_options_are_ones_its_target_takes(backend):
    accepted = TARGETS[backend.target].implementation().RUNTIME_OPTIONS
    check_runtime_options(backend.target, backend.runtime_options, accepted)


def test_an_option_a_target_does_not_take_is_one_line(tmp_path):
    from mobattn.exporters import attention_subject, export

    record = export(attention_subject("eaa", 8, (2, 2)), "onnx", tmp_path)
    onnx = TARGETS["onnx"].implementation()
    assert onnx.load_runner(record.path, graph_optimization="basic").details["runtime_options"]
    with pytest.raises(MobattnError, match="graph_optimization is one of disabled, basic"):
        onnx.load_runner(record.path, graph_optimization="fast")
    with pytest.raises(MobattnError, match="takes no runtime option 'xnnpack'"):
        onnx.load_runner(record.path, xnnpack=False)


@pytest.mark.slow
def test_a_backend_with_other_options_times_the_same_file_and_says_how(cli, tmp_path):
    """onnxruntime and onnxruntime-basic: one export, two rows, the second naming its
    options; a file is timed by either when asked."""
    command = (
        "bench --attention eaa --dim 16 --hw 4x4 --backend onnxruntime,onnxruntime-basic --profile quick"
    )
    result = cli(f"{command} --json")
    assert result.code == 0, result.err
    full, basic = result.json()
    assert full["status"] == basic["status"] == "ok"
    assert "runtime_options" not in full["details"]
    assert basic["details"]["runtime_options"] == {"graph_optimization": "basic"}
    assert basic["artifact_cached"]  # the same file: exported once
    export = cli(f"export --attention eaa --dim 16 --hw 4x4 --to onnx --out {tmp_path} --json").json()[0]
    (row,) = cli(f"bench {export['path']} --backend onnxruntime-basic --profile quick --json").json()
    assert row["backend"] == "onnxruntime-basic" and row["details"]["runtime_options"]
    assert_one_line_error(cli(f"bench {export['path']} --backend executorch"), "runs in onnxruntime or")


def test_a_target_with_no_backend_row_is_benched_by_its_file(cli, tmp_path, monkeypatch):
    """A newcomer's target (here ONNX again under another suffix) gets a backend from the
    target table, under its own name: its files are benchable without a Backend row
    (issue 41); Core ML, whose runner does not load here, gets none."""
    import dataclasses
    import shutil

    from mobattn.bench import config
    from mobattn.exporters import attention_subject, export

    again = dataclasses.replace(TARGETS["onnx"], name="onnx-again", suffix=".onnx2", magic=None)
    monkeypatch.setitem(TARGETS, "onnx-again", again)
    derived = config._file_backends()
    assert set(derived) == {"onnx-again"} and derived["onnx-again"].target == "onnx-again"
    monkeypatch.setitem(BACKENDS, "onnx-again", derived["onnx-again"])
    record = export(attention_subject("eaa", 8, (2, 2)), "onnx", tmp_path)
    file = tmp_path / "eaa.onnx2"
    shutil.copy(record.path, file)
    result = cli(f"bench {file} --profile quick --no-isolate --json")
    assert result.code == 0, result.err
    (row,) = result.json()
    assert row["backend"] == "onnx-again" and row["status"] == "ok"
    assert "coreml" not in BACKENDS and not TARGETS["coreml"].times_here
