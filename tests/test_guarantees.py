"""The promises of the README's "What is guaranteed" section, one regression test per
item of the adversarial review (issue 11): nothing from the working directory runs,
NaN never validates, results files survive torn writes, limits cover every step,
nothing is written through links or over files without --force, and bad input of
every kind is one line with exit code 2."""

from __future__ import annotations

import errno
import json
import os
import signal
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from mobattn import MobattnError
from mobattn.bench.config import BenchConfig
from mobattn.bench.results import append_row, read_rows, sweep_lock
from mobattn.bench.row import Row
from mobattn.bench.runner import run
from mobattn.bench.workers import WORKER_KINDS, killed_row, worker_pool
from mobattn.environment import environment
from mobattn.exporters.agreement import compare


def quick(**kwargs) -> BenchConfig:
    base = dict(kind="attention", attention="eaa", dim=16, hw=[4, 4], profile="quick", timeout_s=120)
    return BenchConfig(**{**base, **kwargs})


def ok_row(**kwargs) -> Row:
    base = dict(kind="attention", attention="eaa", dim=16, hw=[4, 4], status="ok", median_ms=1.0)
    return Row(**{**base, "environment": environment(), "timestamp": "2026-01-01T00:00:00", **kwargs})


def bench_folders() -> set[Path]:
    """This process's run folders (named by the runner's pid): another mobattn on the
    machine, a sweep or a CI run beside this one, has its own."""
    return set(Path(tempfile.gettempdir()).glob(f"mobattn-bench-{os.getpid()}-*"))


@pytest.fixture(params=WORKER_KINDS)
def workers(request):
    """Each guarantee holds for fresh interpreters and for forks of the warm template."""
    with worker_pool(request.param) as pool:
        chosen = pool.get()
        assert chosen.kind == request.param, pool.note
        yield chosen


# 1. code in the working directory never runs -------------------------------------------


@pytest.mark.slow
def test_worker_ignores_modules_in_the_working_directory(tmp_path, monkeypatch, workers):
    marker = tmp_path / "EXECUTED"
    for name in ("json", "profile", "numpy", "torch"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name}\\n')\n")
    forged = tmp_path / "mobattn" / "bench"
    forged.mkdir(parents=True)
    (forged / "worker.py").write_text(f"open({str(marker)!r}, 'a').write('worker\\n')\n")
    monkeypatch.chdir(tmp_path)
    row = run(quick(), workers=workers)
    assert row.ok, row.reason
    assert not marker.exists(), marker.read_text()


# 2. NaN never validates -------------------------------------------------------------------


def test_non_finite_outputs_fail_and_a_non_finite_reference_is_named():
    ref = np.ones(10)
    nan_out = np.full(10, np.nan)
    agreement = compare([nan_out], [ref], "fp32")
    assert not agreement.passed and "NaN or inf" in agreement.note
    assert agreement.to_dict()["max_rel"] is None  # plain JSON, no NaN literal
    overflow = ref.copy()
    overflow[3] = np.inf
    assert not compare([ref, overflow], [ref, ref], "fp16").passed
    assert compare([ref], [ref], "int8").passed  # a finite match still passes
    both_nan = compare([nan_out], [nan_out], "int8")
    assert not both_nan.passed and "reference itself is not finite" in both_nan.note


@pytest.mark.slow
def test_an_export_of_nan_weights_is_refused(tmp_path):
    from mobattn.exporters import attention_subject, export

    subject = attention_subject("eaa", 16, (4, 4))
    with torch.no_grad():
        next(subject.module.parameters()).fill_(float("nan"))
    record = export(subject, "onnx", tmp_path)
    assert record.status == "failed" and "not finite" in record.reason
    assert list(tmp_path.iterdir()) == []


# 3. a torn last line never corrupts a results file ----------------------------------------


def test_append_after_a_torn_line_keeps_the_file_valid(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, ok_row())
    with path.open("a") as f:
        f.write('{"kind": "attention", "attent')  # a write cut by a kill or a full disk
    with pytest.warns(UserWarning, match="torn"):
        append_row(path, ok_row(dim=32))
    assert [r.dim for r in read_rows(path)] == [16, 32]
    assert Path(f"{path}.torn").read_text().startswith('{"kind": "attention", "attent')


def test_a_full_disk_is_one_error_and_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    append_row(path, ok_row())
    before = path.read_bytes()

    def full(fd, data):
        os.ftruncate(fd, os.fstat(fd).st_size + 5)  # part of the row got out before the error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(MobattnError, match="No space left"):
        append_row(path, ok_row(dim=32))
    monkeypatch.undo()
    assert path.read_bytes() == before


# 4. limits cover the export step ------------------------------------------------------------


@pytest.mark.slow
def test_export_runs_inside_the_limits_and_leaves_no_folder(workers):
    before = bench_folders()
    limited = quick(attention="mhsa", dim=256, hw=[96, 96], backend="onnxruntime", memory_limit_mb=64)
    oom = run(limited, workers=workers)
    # a MemoryError in the export worker, or native code crashing on a failed allocation
    assert oom.status == "oom" and ("export:" in oom.reason or "memory limit" in oom.reason), oom.reason
    slow = run(
        quick(attention="mhsa", dim=64, hw=[96, 96], backend="onnxruntime", timeout_s=0.5), workers=workers
    )
    assert slow.status == "timeout"
    after = run(quick(), workers=workers)  # the warm template serves on after a kill
    assert after.ok, after.reason
    assert bench_folders() <= before


def test_a_worker_killed_by_a_user_is_not_out_of_memory():
    config = quick(memory_limit_mb=1000)
    assert killed_row(config, signal.SIGKILL, 120.0).status == "error"
    assert "SIGKILL" in killed_row(config, signal.SIGKILL, 120.0).reason
    assert killed_row(config, signal.SIGKILL, 990.0).status == "oom"
    assert killed_row(config, signal.SIGTERM, 990.0).status == "error"
    assert killed_row(config, signal.SIGSEGV, 100.0).status == "oom"  # under its memory limit
    assert killed_row(quick(), signal.SIGSEGV, 100.0).status == "error"  # no limit: a crash


# 5. report writes through nothing -------------------------------------------------------------


def write_results(path: Path) -> Path:
    path.write_text("".join(ok_row(hw=[s, s], tokens=s * s).to_json() + "\n" for s in (4, 8, 16)))
    return path


@pytest.mark.slow
def test_report_refuses_to_replace_and_never_writes_through_a_link(tmp_path, cli):
    results = write_results(tmp_path / "r.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "report.md").symlink_to(victim)
    assert_one_line_error(cli(f"report {results} --out {out}"), "exists", "--force")
    assert not (out / "latency_vs_tokens.png").exists()  # refused before the first file
    readme = tmp_path / "README.md"
    readme.write_text("mine")
    assert_one_line_error(cli(f"report {results} --out {tmp_path / 'o2'} --page {readme}"), "exists")
    assert readme.read_text() == "mine" and not (tmp_path / "o2").exists()
    assert cli(f"report {results} --out {out} --force").code == 0
    assert victim.read_text() == "keep me" and not (out / "report.md").is_symlink()


# 6. merge keeps an ok row over a later failure --------------------------------------------------


def test_merge_never_replaces_ok_with_a_failure(tmp_path, cli):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(ok_row().to_json() + "\n")
    failed = replace(ok_row(), status="error", median_ms=None, timestamp="2026-06-01T00:00:00")
    second.write_text(failed.to_json() + "\n")
    for order in ((first, second), (second, first)):
        merged = tmp_path / "m.jsonl"
        assert cli(f"merge {order[0]} {order[1]} --out {merged} --force").code == 0
        (row,) = read_rows(merged)
        assert row.status == "ok"


# 7. names and records agree with the file --------------------------------------------------------


@pytest.mark.slow
def test_options_that_do_not_apply_are_refused_and_the_opset_is_read_back(tmp_path, cli):
    out = tmp_path / "out"
    base = f"export --attention eaa --dim 8 --hw 2x2 --out {out}"
    assert_one_line_error(cli(f"{base} --to onnx --compress int8"), "--compress applies to --to coreml")
    assert_one_line_error(cli(f"{base} --to coreml --opset 18"), "--opset applies to --to onnx")
    assert_one_line_error(cli(f"{base} --to onnx --opset 999"), "--opset must be between")
    assert_one_line_error(cli(f"{base} --to ,"), "--to is empty")
    assert not out.exists()
    result = cli(f"{base} --to onnx --opset 18 --json")
    assert result.code == 0, result.err
    (record,) = result.json()
    import onnx

    model = onnx.load(record["path"])
    assert record["details"]["opset"] == 18 == model.opset_import[0].version
    assert record["path"].endswith("eaa-dim8-2x2-opset18.onnx")


# 8. grid files are validated in full before the first measurement -------------------------------


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('precisions = ["int3"]', "unknown precision"),
        ('profile = "turbo"', "unknown profile"),
        ("hws = [[14, 14, 14]]", "two sizes"),
        ("hws = [[14]]", "two sizes"),
        ("dims = [true]", "integer"),
        ("resolutions = [16]", "at least 32"),
        ('preset = "nope"', "unknown preset"),
        ("backends = []", "backends is empty"),
        ('attentions = "eaa"', "must be a list"),
        ('timeout_s = "soon"', "number of seconds"),
        ("timeout_s = nan", "between 0"),
    ],
)
def test_bad_grid_files_are_refused_up_front(tmp_path, cli, toml, fragment):
    grid = tmp_path / "g.toml"
    keys = {"attentions": '["eaa"]', "hws": "[4]", "backends": '["torch"]'}
    own = toml.split(" = ")[0]
    lines = [f"{k} = {v}" for k, v in keys.items() if k != own] + [toml]
    grid.write_text("\n".join(lines) + "\n")
    results = tmp_path / "r.jsonl"
    assert_one_line_error(cli(f"sweep {grid} --results {results}"), fragment)
    assert not results.exists()


# 9. one line, not a traceback -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("list attentions --hw 100000x100000", "--hw"),
        ("list attentions --dim 100000000", "--dim must be at most"),
        ("info --model swiftformer_xs --resolution 100000", "at most 4096"),
        ("export --attention eaa --dim 100000000 --hw 2x2 --out {tmp}", "--dim must be at most"),
        ("bench --attention eaa --dim 8 --hw 2x2 --timeout nan", "--timeout"),
        ("bench --attention eaa --dim 8 --hw 2x2 --timeout inf", "--timeout"),
        ("bench --attention eaa --dim 8 --hw 2x2 --timeout 0", "--timeout"),
        ("bench --attention eaa --dim 8 --hw 2x2 --timeout -1", "--timeout"),
        ("info --model swiftformer_xs --dim 64", "drop them with --model"),
        ("bench --attention eaa --dim 8 --hw 2x2 --weights {tmp}/w.pth", "--weights applies to --model"),
        ("eval --model swiftformer_xs --data {tmp} --limit 0", "--limit must be at least 1"),
        ("eval --model swiftformer_xs --data {tmp} --limit -1", "--limit must be at least 1"),
        ("eval --model swiftformer_xs --data {tmp} --resolution 0", "--resolution"),
    ],
)
def test_bad_sizes_and_options_are_one_line(tmp_path, cli, command, fragment):
    assert_one_line_error(cli(command.format(tmp=tmp_path)), fragment)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[1, 2]\n", "must be a JSON object"),
        (b'"text"\n', "must be a JSON object"),
        (b'{"kind": "model", "environment": "x"}\n', "environment"),
        (b'{"kind": "model", "median_ms": "fast"}\n', "median_ms"),
        (b'{"kind": "model", "resolution": [224]}\n', "resolution"),
        (b'{"kind": "model", "status": "great"}\n', "unknown status"),
        (b"\xff\xfe not utf-8\n", "UTF-8"),
    ],
)
def test_bad_results_files_are_one_line_everywhere(tmp_path, cli, content, fragment):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "report"
    assert_one_line_error(cli(f"report {bad} --out {out}"), fragment)
    assert not out.exists()  # no empty folder left behind
    assert_one_line_error(cli(f"merge {bad} --out {tmp_path / 'm.jsonl'}"), fragment)


@pytest.mark.slow
def test_eval_of_an_artifact_of_another_subject_is_one_line(tmp_path, cli):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / "data" / cls / "x.png")
    assert cli(f"export --attention eaa --dim 8 --hw 2x2 --out {tmp_path}").code == 0
    artifact = tmp_path / "eaa-dim8-2x2.onnx"
    common = f"eval --model swiftformer_xs --data {tmp_path / 'data'} --results {tmp_path / 'acc.jsonl'}"
    assert_one_line_error(cli(f"{common} --artifact {artifact}"), "not images")
    assert not (tmp_path / "acc.jsonl").exists()


# 10. the smaller ones ---------------------------------------------------------------------------


def test_bench_exits_1_when_a_configuration_fails(cli):
    result = cli("bench --attention mhsa --dim 64 --hw 64x64 --timeout 0.2 --json")
    assert result.code == 1
    (row,) = result.json()
    assert row["status"] == "timeout"


def test_a_second_identical_sweep_is_refused_while_one_runs(tmp_path, cli):
    grid = tmp_path / "g.toml"
    grid.write_text('attentions = ["eaa"]\nhws = [4]\nprofile = "quick"\n')
    results = tmp_path / "r.jsonl"
    with sweep_lock(results, "1/1"):
        assert_one_line_error(cli(f"sweep {grid} --results {results}"), "already running")
        with sweep_lock(results, "1/2"):  # another shard of the same grid may share the file
            pass


@pytest.mark.slow
def test_stale_staging_folders_of_killed_exports_are_cleaned(tmp_path, cli):
    stale = tmp_path / ".eaa-dim8-2x2.onnx.999999999.partial-abc"
    stale.mkdir()
    (stale / "eaa-dim8-2x2.onnx").write_bytes(b"half")
    assert cli(f"export --attention eaa --dim 8 --hw 2x2 --out {tmp_path}").code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eaa-dim8-2x2.onnx"]


@pytest.mark.slow
def test_failed_exports_say_why_on_stderr(tmp_path, cli, monkeypatch):
    from mobattn.exporters import agreement as validate

    monkeypatch.setitem(validate.TOLERANCE, "fp32", -1.0)  # nothing can pass
    result = cli(f"export --attention eaa --dim 8 --hw 2x2 --out {tmp_path}")
    assert result.code == 1 and "failed" in result.err and "nothing written" in result.err


class Payload:
    """Not a tensor: weights_only loading refuses to build it."""


def test_weights_errors_never_suggest_unpickling(tmp_path, cli):
    path = tmp_path / "w.pth"
    torch.save({"model": Payload()}, path)
    result = cli(f"export --model swiftformer_xs --weights {path} --out {tmp_path}")
    assert_one_line_error(result, "never unpickles")
    assert "weights_only=False" not in result.err


def test_calibration_errors_name_calibration(tmp_path, cli):
    pytest.importorskip("executorch")
    result = cli(
        f"export --model swiftformer_xs --to executorch --precision int8 --calibration {tmp_path / 'none'} "
        f"--out {tmp_path}"
    )
    assert_one_line_error(result, "--calibration")
    assert "--data" not in result.err


def test_in_process_runs_restore_torch_threads():
    before = torch.get_num_threads()
    row = run(quick(threads=1 if before != 1 else 2), isolate=False)
    assert row.ok and torch.get_num_threads() == before


def test_results_rows_are_plain_json_objects(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, ok_row())
    assert isinstance(json.loads(path.read_text()), dict)


def test_table_reads_accuracy_before_measuring(tmp_path, cli):
    accuracy = tmp_path / "acc.jsonl"
    accuracy.write_text("not json\n{}\n")
    results = tmp_path / "r.jsonl"
    command = f"table --models swiftformer_xs --results {results} --accuracy {accuracy}"
    assert_one_line_error(cli(command), "acc.jsonl:1")
    assert not results.exists()  # nothing was measured


@pytest.mark.slow
@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_a_worker_dies_with_its_parent(tmp_path, kind):
    """SIGKILL the measuring process: its workers (and the warm template) must not run on."""
    import subprocess
    import sys
    import time

    script = (
        "from mobattn.bench import measure\n"
        "from mobattn.bench.config import BenchConfig\n"
        "config = BenchConfig(kind='attention', attention='mhsa', dim=64, hw=[64, 64], timeout_s=600)\n"
        f"measure([config], workers={kind!r}, cache=False)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    depth = 2 if kind == "warm" else 1  # runner -> template -> worker, or runner -> worker
    family = []
    for _ in range(600):
        time.sleep(0.1)
        family = _descendants(parent.pid)
        if len(family) >= depth:
            break
    assert len(family) >= depth, family
    parent.kill()
    parent.wait()
    for _ in range(50):
        if all(not Path(f"/proc/{pid}").exists() or "Z" in _state(pid) for pid in family):
            break
        time.sleep(0.1)
    assert all(not Path(f"/proc/{pid}").exists() or "Z" in _state(pid) for pid in family)


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        pids = [int(p) for p in children.read_text().split()]
    except OSError:
        return []
    return pids + [d for p in pids for d in _descendants(p)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (OSError, IndexError):
        return "Z"
