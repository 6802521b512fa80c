"""ExecuTorch with XNNPACK: export, validation through ExecuTorch's runtime, benchmarks.
The whole module needs the optional dependency (CI installs it)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("executorch", reason="optional dependency: pip install 'mobattn[executorch]'")

import mobattn  # noqa: E402
from helpers import assert_one_line_error  # noqa: E402
from mobattn.exporters import attention_subject, export, model_subject  # noqa: E402
from mobattn.exporters.to_executorch import load_method  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", mobattn.list_attentions())
def test_every_attention_lowers_to_xnnpack_and_matches_torch(tmp_path, name):
    subject = attention_subject(name, 64, (7, 7))
    record = export(subject, "executorch", tmp_path)
    assert record.status == "ok", record.reason
    assert record.path.endswith(f"{name}-dim64-7x7.pte")
    details = record.details
    # the deployable form (exporters.deploy): one XNNPACK subgraph, nothing on portable kernels
    assert details["form"] == "xnnpack"
    assert details["delegated_subgraphs"] == 1 and details["delegated_ops"] > 0
    assert details["not_delegated"] == {} and details["not_delegated_ops"] == 0
    x = subject.example_input(seed=3)
    out = load_method(Path(record.path)).execute([x])[0]
    with torch.no_grad():
        torch.testing.assert_close(out, subject.module(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_model_to_executorch_through_the_cli(tmp_path, cli):
    result = cli(f"export --model swiftformer_xs --to executorch --out {tmp_path} --json")
    assert result.code == 0, result.err
    (record,) = result.json()
    assert record["validation"]["passed"] and record["validation"]["max_rel"] < 1e-4
    assert record["details"]["not_delegated"] == {}, record["details"]["not_delegated"]  # all on XNNPACK


@pytest.mark.slow
def test_int8_is_smaller_and_close_in_direction(tmp_path):
    subject = attention_subject("mhsa", 128, (8, 8))
    fp32 = export(subject, "executorch", tmp_path)
    int8 = export(subject, "executorch", tmp_path, precision="int8")
    assert int8.status == "ok", int8.reason
    assert int8.path.endswith("mhsa-dim128-8x8-int8.pte")
    assert int8.validation["criterion"] == "cosine" and int8.validation["cosine"] >= 0.99
    assert int8.size_bytes < 0.6 * fp32.size_bytes


@pytest.mark.slow
def test_bench_executorch_backend_and_pte_file(tmp_path, cli):
    result = cli(
        "bench --attention ufo --dim 32 --hw 4x4 --backend executorch --threads 1,2 --profile quick --json"
    )
    assert result.code == 0, result.err
    rows = result.json()
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["threads"] for r in rows] == [1, 2]
    assert all(r["backend"] == "executorch" and r["artifact_bytes"] > 0 and r["macs"] > 0 for r in rows)
    assert cli(f"export --attention ufo --dim 32 --hw 4x4 --to executorch --out {tmp_path}").code == 0
    (row,) = cli(f"bench {tmp_path / 'ufo-dim32-4x4.pte'} --profile quick --json").json()
    assert row["status"] == "ok" and row["kind"] == "file" and row["backend"] == "executorch"


def test_bad_executorch_input(tmp_path, cli):
    out = tmp_path / "out"
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --to executorch --precision fp16 --out {out}"),
        "fp32 or int8",
    )
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --to coreml,executorch --precision int8 --out {out}"),
        "--to coreml takes --precision",
    )
    assert not out.exists()  # checked for every target before the first file
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program" * 10)
    assert_one_line_error(cli(f"bench {bad}"), "bad.pte is not a .pte file")
    skipped = cli("bench --attention eaa --dim 8 --hw 2x2 --backend executorch --precision fp16 --json")
    assert skipped.code == 0, skipped.err  # a combination that does not exist is a row, not a crash
    (row,) = skipped.json()
    assert row["status"] == "skipped" and "fp32 or int8" in row["reason"] and row["median_ms"] is None


@pytest.mark.slow
def test_missing_executorch_says_how_to_get_it(tmp_path):
    code = (
        "import sys; sys.modules['executorch'] = None\n"
        "from mobattn.cli import main\n"
        f"sys.exit(main(['export', '--attention', 'eaa', '--dim', '8', '--hw', '2x2', '--to', 'executorch',"
        f" '--out', {str(tmp_path)!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert "pip install 'mobattn[executorch]'" in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_model_subject_for_int8_calibration_images(tmp_path, cli):
    """--calibration feeds preprocessed images of an ImageFolder to the quantizer."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "calib" / "cls"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    from mobattn.exporters.calibration import calibration_images

    images = calibration_images(model_subject("swiftformer_xs", resolution=(64, 64)), str(tmp_path / "calib"))
    assert len(images) == 2 and images[0].shape == (3, 64, 64)
    assert_one_line_error(
        cli(
            "export --attention eaa --dim 8 --hw 2x2 --to executorch --precision int8 "
            f"--calibration {tmp_path / 'calib'}"
        ),
        "needs --model",
    )


@pytest.mark.slow
def test_int8_export_keeps_library_log_lines_off_stderr(tmp_path):
    """torchao's and torch's import-time log lines (a CUDA kernel library that does not
    load, a deprecated registration) are not the user's output (issue 38): a fresh
    interpreter's ExecuTorch int8 export prints its table and nothing on stderr."""
    argv = [sys.executable, "-m", "mobattn", "export", "--attention", "eaa", "--dim", "8", "--hw", "2x2"]
    argv += ["--to", "executorch", "--precision", "int8", "--out", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    assert done.stderr == ""
