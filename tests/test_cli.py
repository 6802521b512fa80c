"""The `mobattn` command: output for people and programs, and its handling of bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mobattn
from helpers import assert_one_line_error, join


@pytest.mark.slow
def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "mobattn", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and mobattn.__version__ in out.stdout


def test_help_lists_the_commands(cli):
    result = cli("--help")
    assert result.code == 0
    for command in ("info", "list"):
        assert command in result.out


def test_list_attentions_json(cli):
    result = cli("list attentions --dim 64 --hw 8x8 --json")
    assert result.code == 0
    rows = result.json()
    assert [r["attention"] for r in rows] == mobattn.list_attentions()
    assert all(r["macs"] == r["measured_macs"] and r["tokens"] == 64 for r in rows)


@pytest.mark.slow
def test_list_models_table(cli):
    result = cli("list models")
    assert result.code == 0
    for name in mobattn.list_models():
        assert name in result.out
    assert "75.7" in result.out


def test_info_attention_json(cli):
    result = cli("info --attention hilo --dim 96 --hw 14x14 --heads 6 --json")
    assert result.code == 0
    (info,) = result.json()
    assert info["settings"] == {"num_heads": 6, "window_size": 2, "alpha": 0.5}
    assert info["params"] > 0 and info["macs"] == info["measured_macs"]


def test_info_model_shows_swap_rule_and_published(cli):
    result = cli("info --model swiftformer_s --attention hilo --resolution 320 --json")
    (info,) = result.json()
    assert info["resolution"] == [320, 320] and info["attention"] == "hilo"
    assert [m["dim"] for m in info["mixers"]] == [48, 64, 168, 224]
    assert info["mixers"][0]["tokens"] == 80 * 80
    assert info["published_top1"] == 78.5
    table = cli("info --model swiftformer_s --attention hilo")
    assert "window_size=2" in table.out and "78.5" not in table.out  # no published accuracy for a swap


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["info", "--attention", "hil", "--dim", "96", "--hw", "14x14"], ["unknown attention", "hilo"]),
        (["info", "--attention", "hilo", "--dim", "96", "--hw", "14by14"], ["--hw", "HxW"]),
        (["info", "--attention", "hilo", "--dim", "0", "--hw", "14x14"], ["--dim", "at least 1"]),
        (["info", "--attention", "hilo", "--dim", "96", "--hw", "0x14"], ["--hw", "at least 1"]),
        (["info", "--attention", "hilo", "--dim", "96", "--hw", "14x14", "--heads", "5"], ["divisible"]),
        (["info", "--model", "swiftformer_m"], ["unknown model", "swiftformer_s"]),
        (["info", "--model", "swiftformer_s", "--resolution", "16"], ["at least 32"]),
        (["info", "--dim", "abc"], ["--dim"]),
        (["info", "--nope"], ["--nope"]),
        (["info"], ["--model"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, fragments):
    assert_one_line_error(cli(f"{join(args)}"), *fragments)


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "mobattn", "info", "--model", "nope"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_readme_table_of_targets_is_the_one_the_cli_reads():
    from pathlib import Path

    from mobattn.exporters.formats import markdown_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, (
        "README's table of targets is stale: replace it with the output of python -c "
        "'from mobattn.exporters.formats import markdown_table; print(markdown_table())'"
    )


def test_list_targets_and_backends_json(cli):
    import tomllib

    from mobattn.bench.config import BACKENDS
    from mobattn.exporters.formats import TARGETS

    targets = cli("list targets --json")
    assert [t["name"] for t in targets.json()] == list(TARGETS)  # the table, in its order
    # each names the extra that installs it (one pyproject declares), and whether it is here
    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    for target in targets.json():
        if target["extra"] is None:
            assert target["needs"] == "-"
        else:
            assert target["extra"] in extras["optional-dependencies"] and target["extra_modules"]
            assert target["needs"] in (
                f"mobattn[{target['extra']}], installed",
                f"pip install 'mobattn[{target['extra']}]'",
            )
    assert {t["name"]: t["needs"] for t in targets.json()}[
        "litert"
    ] == "mobattn[litert], installed"  # make installs it

    backends = cli("list backends --json")
    assert [b["name"] for b in backends.json()] == list(BACKENDS)  # the table, in its order
    assert {"torch", "torch-cudagraph", "onnxruntime", "executorch", "litert"} <= set(BACKENDS)
    needs = {b["name"]: b["needs"] for b in backends.json()}
    assert needs["torch"] == "-" and needs["torch-cudagraph"] == "a CUDA GPU"
    assert needs["executorch"] == "mobattn[executorch], installed"


@pytest.mark.slow
def test_rtol_and_atol_override_the_criterion(tmp_path, cli):
    base = f"export --attention eaa --dim 8 --hw 2x2 --to onnx --out {tmp_path} --json"
    strict = cli(f"{base} --atol 0 --rtol 0")  # bit-exact: onnxruntime's kernels differ in the last bits
    (record,) = strict.json()
    assert record["validation"]["criterion"] == "allclose(rtol=0, atol=0)"
    loose = cli(f"{base} --atol 1 --force")
    assert loose.code == 0
    (record,) = loose.json()
    assert record["validation"]["criterion"] == "allclose(rtol=0, atol=1)" and record["validation"]["passed"]
    assert record["validation"]["kept_under_user_tolerance"] is False  # the default passes it too


def test_a_user_tolerance_that_keeps_what_the_default_refuses_says_so():
    """``--atol 100`` kept an all-ops int8 ViT with cosine -0.10 as a plain pass (issue 36):
    it is now marked, with the default criterion that refuses it."""
    import numpy as np

    from mobattn.exporters.agreement import compare, user_tolerance

    reference = [np.linspace(-1, 1, 10, dtype=np.float32)[None]]
    garbage = [-reference[0]]  # cosine -1
    with user_tolerance(None, 100.0):
        kept = compare(garbage, reference, "int8")
    assert kept.passed and kept.kept_under_user_tolerance
    assert "kept under a user tolerance: the default criterion (cosine at least 0.99) refuses it" in kept.note
    with user_tolerance(None, 100.0):
        fine = compare(reference, reference, "int8")
    assert fine.passed and not fine.kept_under_user_tolerance and fine.note == ""
    assert not compare(garbage, reference, "int8").passed  # and the default refuses it


def test_bench_runs_and_warmup_fix_the_counts(cli):
    result = cli("bench --attention eaa --dim 8 --hw 2x2 --runs 7 --warmup 2 --samples --no-isolate --json")
    assert result.code == 0, result.err
    (row,) = result.json()
    assert row["iterations"] == 7 and row["warmup_runs"] == 2 and len(row["samples_ms"]) == 7
    assert row["profile"] == "default,runs=7,warmup=2"  # part of the row's identity
    assert row["throughput_fps"] == pytest.approx(1000 / row["median_ms"])
    assert row["grid_h"] == 2 and row["heads"] == 1  # flat sizes, and the heads the swap rule chose


@pytest.mark.slow
def test_list_models_smallest_first(cli):
    infos = cli("list models --json").json()
    params = [m["params"] for m in infos]
    assert params == sorted(params)
    swiftformers = [m["model"] for m in infos if m["model"].startswith("swiftformer")]
    assert swiftformers == ["swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["list", "targets"],
        ["list", "backends", "--json"],
        ["cache", "info"],
        ["bench", "--threads", "x"],
    ],
)
def test_help_and_tables_import_no_torch(argv, tmp_path):
    """`mobattn --help` once took 1.8 s, most of it importing torch before parsing."""
    code = (
        "import sys\n"
        "from mobattn.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'onnx' in sys.modules, 'onnxruntime' in sys.modules)\n"
    )
    env = {**os.environ, "MOBATTN_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "False False False", out.stdout + out.stderr


def test_an_int8_export_says_it_calibrates_and_may_take_minutes():
    """The spinner of a long export says what it is doing (issue 38: 245-322 s of silence)."""
    import numpy as np

    from mobattn.cli.export import export_status
    from mobattn.exporters import attention_subject, model_subject
    from mobattn.exporters.export import ExportRequest

    subject = attention_subject("eaa", 8, (2, 2))
    line = export_status(subject, ExportRequest.checked(subject, "onnx", "int8"), 2, 3)
    assert "to onnx (2 of 3)" in line and "calibrating on random inputs" in line and "minutes" in line
    assert (
        export_status(subject, ExportRequest.checked(subject, "onnx"), 1, 1)
        == "exporting eaa-dim8-2x2 to onnx..."
    )
    images = [np.zeros((3, 8, 8), np.float32)] * 5
    model = model_subject("swiftformer_xs", resolution=(64, 64))
    request = ExportRequest.checked(model, "onnx", "int8", calibration=images)
    assert "calibrating on 5 images" in export_status(model, request, 1, 1)


def test_help_texts_name_what_the_tables_hold(cli):
    """No hand-kept list of suffixes or backends in a help text (issues 38, 41): each is
    read from the target and backend tables, so a new entry shows up in them."""
    from mobattn.bench.config import BACKENDS
    from mobattn.exporters.formats import TARGETS

    timed = {b.target for b in BACKENDS.values()}
    for name in ("inspect", "validate", "bench", "eval"):
        text = " ".join(cli(f"{name} --help").out.split())
        for target in TARGETS.values():
            expected = name in ("inspect", "validate") or target.name in timed
            assert (target.suffix in text) == expected, (name, target.suffix)
    bench = " ".join(cli("bench --help").out.split())
    assert all(backend in bench for backend in BACKENDS)
