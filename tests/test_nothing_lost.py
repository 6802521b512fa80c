"""Nothing lost, wave 3 (issue 28): one regression test per item of the adversarial pass,
written against the behaviour it reported. The concurrent-sweep test starts real
processes."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import assert_one_line_error
from mobattn import MobattnError
from mobattn.bench.report import log_ticks
from mobattn.bench.results import append_row, read_rows
from mobattn.bench.row import Row
from mobattn.bench.runner import MARKER, clean_stale_folders
from mobattn.environment import environment
from mobattn.exporters.files import write_folder


def row_dict(**kwargs) -> dict:
    base = dict(kind="attention", attention="eaa", dim=16, hw=[4, 4], heads=1, status="ok", median_ms=1.0)
    return {**base, "environment": environment(), "timestamp": "2026-01-01T00:00:00", **kwargs}


def write_lines(path: Path, lines: list[str], end: str = "\n") -> None:
    path.write_text("\n".join(lines) + end)


# 1. the sweep lock: only its holder removes it, and it is keyed by the file ------------


def _sweep(grid: Path, results: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mobattn", "sweep", str(grid), "--results", str(results)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_refused_sweep_leaves_the_lock_and_a_symlink_is_the_same_file(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('attentions = ["mhsa"]\ndims = [64]\nhws = [40, 48, 56, 64]\nbackends = ["torch"]\n')
    results = tmp_path / "c.jsonl"
    lock = tmp_path / ".c.jsonl.1of1.lock"
    first = _sweep(grid, results, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert lock.exists(), first.communicate()
        for attempt in ("second", "third"):  # the second used to unlink the first one's lock
            refused = subprocess.run(
                [sys.executable, "-m", "mobattn", "sweep", str(grid), "--results", str(results)],
                cwd=tmp_path,
                capture_output=True,
                text=True,
            )
            assert refused.returncode == 2, (attempt, refused.stderr)
            assert "already running" in refused.stderr
            assert lock.exists()
        alias = tmp_path / "dl.jsonl"
        alias.symlink_to(results)
        through_link = subprocess.run(
            [sys.executable, "-m", "mobattn", "sweep", str(grid), "--results", str(alias)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert through_link.returncode == 2 and "already running" in through_link.stderr
        assert first.poll() is None  # the first sweep ran alone all along
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=60)
    assert not lock.exists()  # its holder removed it on the way out


# 2. a complete row is never quarantined, whatever the torn tail's size ----------------


def test_a_complete_last_row_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    write_lines(path, [json.dumps(row_dict(dim=16)), json.dumps(row_dict(dim=32))], end="")
    append_row(path, Row.from_dict(row_dict(dim=64)))
    assert [r.dim for r in read_rows(path)] == [16, 32, 64]
    assert not Path(f"{path}.torn").exists()


def test_a_long_torn_tail_moves_alone(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [json.dumps(row_dict(dim=8 * (i + 1))) for i in range(15)]
    junk = '{"kind": "attention", "reason": "' + "x" * (3 << 19)  # 1.5 MiB, cut mid-write
    path.write_text("\n".join(rows) + "\n" + junk)
    with pytest.warns(UserWarning, match="torn"):
        append_row(path, Row.from_dict(row_dict(dim=4096)))
    assert len(read_rows(path)) == 16
    assert Path(f"{path}.torn").read_text() == junk + "\n"


# 3. rows say what was measured --------------------------------------------------------


@pytest.mark.slow
def test_options_that_cannot_apply_to_a_file_are_refused(tmp_path, cli):
    assert cli(f"export --model swiftformer_xs --to onnx --out {tmp_path}").code == 0
    model = tmp_path / "swiftformer_xs-224.onnx"
    assert_one_line_error(cli(f"bench {model} --resolution 320"), "takes 224x224 inputs", "cannot apply")
    assert_one_line_error(cli(f"bench {model} --backend executorch"), "runs in onnxruntime")
    assert cli(f"export --attention eaa --dim 8 --hw 2x2 --to onnx --out {tmp_path}").code == 0
    bare = tmp_path / "eaa-dim8-2x2.onnx"
    assert_one_line_error(cli(f"bench {bare} --resolution 64"), "takes tokens")


# 4. writes that tear or overwrite -----------------------------------------------------


@pytest.mark.slow
def test_an_output_that_appears_during_export_is_not_overwritten(tmp_path, cli, monkeypatch):
    """Another process writes the output path while the export runs."""
    from mobattn.exporters import to_onnx

    real_export = to_onnx.export
    target = tmp_path / "eaa-dim8-2x2.onnx"

    def export_while_another_writes(subject, path, **kwargs):
        result = real_export(subject, path, **kwargs)
        target.write_text("someone else's file")
        return result

    monkeypatch.setattr(to_onnx, "export", export_while_another_writes)
    assert_one_line_error(
        cli(f"export --attention eaa --dim 8 --hw 2x2 --out {tmp_path}"), "appeared while this ran"
    )
    assert target.read_text() == "someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_report_folder_is_published_all_at_once(tmp_path, monkeypatch):
    folder = tmp_path / "report"
    write_folder(folder, {"a.png": b"old a", "report.md": b"old report"}, force=False)
    (folder / "notes.txt").write_text("the user's own file")
    real_write = Path.write_bytes
    written = []

    def dies_on_the_second_file(self, data):
        written.append(self.name)
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", dies_on_the_second_file)
    with pytest.raises(MobattnError, match="No space left"):
        write_folder(folder, {"a.png": b"new a", "report.md": b"new report"}, force=True)
    monkeypatch.undo()
    # nothing of the new set is visible: the old report is whole, the user's file kept
    assert (folder / "a.png").read_bytes() == b"old a"
    assert (folder / "report.md").read_bytes() == b"old report"
    write_folder(folder, {"a.png": b"new a", "report.md": b"new report"}, force=True)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "notes.txt", "report.md"]
    assert (folder / "report.md").read_bytes() == b"new report"
    assert (folder / "notes.txt").read_text() == "the user's own file"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging left behind
    with pytest.raises(MobattnError, match="exists"):
        write_folder(folder, {"a.png": b"x"}, force=False)


# 5. clean-up removes only folders mobattn made, of this user --------------------------


def test_stale_clean_up_removes_only_our_marked_folders():
    tmp = Path(tempfile.gettempdir())
    dead = 999_999_999
    ours = tmp / f"mobattn-bench-{dead}-ours"
    unmarked = tmp / f"mobattn-bench-{dead}-unmarked"
    foreign = tmp / f"mobattn-bench-{dead}-foreign"
    for folder in (ours, unmarked, foreign):
        folder.mkdir(exist_ok=True)
        (folder / "data").write_text("keep me unless mobattn made me")
    (ours / MARKER).write_text("1\n")
    (foreign / MARKER).write_text("1\n")
    chowned = os.getuid() == 0
    if chowned:  # as root, make one belong to another user
        os.chown(foreign, 12345, 12345)
        os.chown(foreign / MARKER, 12345, 12345)
    try:
        clean_stale_folders()
        assert not ours.exists()
        assert unmarked.exists()
        assert foreign.exists() or not chowned
    finally:
        for folder in (ours, unmarked, foreign):
            subprocess.run(["rm", "-rf", str(folder)], check=False)


# 6. exit codes and reasons ------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_that_only_timed_out_exits_1_and_retries_them(tmp_path, cli):
    grid = tmp_path / "g.toml"
    grid.write_text('attentions = ["mhsa"]\ndims = [64]\nhws = [64]\nbackends = ["torch"]\ntimeout_s = 0.3\n')
    results = tmp_path / "r.jsonl"
    result = cli(f"sweep {grid} --results {results}")
    assert result.code == 1, result.err
    assert "timeout" in result.err  # the reason, on stderr
    assert [r.status for r in read_rows(results)] == ["timeout"]
    rerun = cli(f"sweep {grid} --results {results} --dry-run --json")
    assert rerun.code == 0 and len(rerun.json()) == 1  # a timeout is tried again


def test_bench_failure_says_why_on_stderr(cli):
    result = cli("bench --attention mhsa --dim 64 --hw 64x64 --timeout 0.2")
    assert result.code == 1
    assert "timeout" in result.err and "no result within" in result.err


def test_a_memory_limit_too_small_to_start_is_refused(cli):
    """Limits of 16-64 MiB once ended in a SystemError after a successful timing."""
    assert_one_line_error(cli("bench --attention eaa --dim 16 --hw 4x4 --memory-limit 64"), "at least 128")


def test_heads_that_do_not_divide_dim_are_bad_input(cli):
    assert_one_line_error(
        cli("bench --attention mhsa --dim 64 --heads 7 --hw 4x4"), "--dim 64 is not divisible by --heads 7"
    )
    assert_one_line_error(cli("export --attention mhsa --dim 64 --heads 7 --hw 4x4"), "not divisible")


@pytest.mark.slow
def test_eval_shows_its_result_before_a_full_disk(tmp_path, cli):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / "val" / name / "0.png"
        )
    result = cli(
        f"eval --model swiftformer_xs --data {tmp_path / 'val'} --num-classes 1000 --results /dev/full"
    )
    assert result.code == 2
    assert "top-1" in result.out  # computed and shown
    assert "cannot append to /dev/full" in result.err


# 7. the row check refuses numbers that were not measured ------------------------------


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"median_ms": 0.0}, "'median_ms' must be positive"),
        ({"median_ms": -3.0}, "'median_ms' must be positive"),
        ({"threads": 0}, "'threads' must be positive"),
        ({"samples_ms": [1.0, -1.0]}, "samples_ms"),
        ({"macs": 10**30}, "out of range"),
    ],
)
def test_rows_with_impossible_numbers_are_refused(tmp_path, change, fragment):
    path = tmp_path / "r.jsonl"
    write_lines(path, [json.dumps(row_dict()), json.dumps(row_dict(**change))])
    with pytest.raises(MobattnError, match=f"r.jsonl:2: .*{fragment}"):
        read_rows(path)


@pytest.mark.parametrize(
    "line",
    [
        '"samples_ms": [1.0, NaN]',
        '"details": {"x": Infinity}',
        '"params": ' + "9" * 5000,
    ],
)
def test_nan_and_huge_integers_are_one_line(tmp_path, cli, line):
    good = json.dumps(row_dict())
    path = tmp_path / "r.jsonl"
    path.write_text(good + "\n" + good[:-1] + ", " + line + "}\n")
    with pytest.raises(MobattnError, match="r.jsonl:2"):
        read_rows(path)
    assert_one_line_error(cli(f"merge {path} --out {tmp_path / 'm.jsonl'}"), "r.jsonl:2")
    assert not (tmp_path / "m.jsonl").exists()


# 8. images that would exhaust memory --------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims a size (its pixels never need to exist to be refused)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size, fragment", [((40000, 40000), "limited to"), ((1, 30000), "as long as")])
def test_oversized_images_are_refused_before_decoding(tmp_path, cli, size, fragment):
    (tmp_path / "val" / "a").mkdir(parents=True)
    _png_header_only(tmp_path / "val" / "a" / "big.png", *size)
    result = cli(f"eval --model swiftformer_xs --data {tmp_path / 'val'} --results {tmp_path / 'r.jsonl'}")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r.jsonl").exists()
    result = cli(
        f"export --model swiftformer_xs --to onnx --precision int8 --calibration {tmp_path / 'val'} "
        f"--out {tmp_path / 'out'}"
    )
    assert_one_line_error(result, fragment)


# 9. what a reader sees ----------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high",
    [(0.15, 941.0), (3.1, 3.9), (0.2, 0.9), (12.0, 480.0), (0.004, 0.006), (0.15, 47.0), (2.0, 2.0)],
)
def test_log_axes_always_carry_labelled_ticks(low, high):
    """At least two labelled ticks, enclosing the values: the largest value sits under a
    labelled tick (issue 38: a 47 ms point above the last tick, 20, could not be read)."""
    ticks = log_ticks(low, high)
    assert len(ticks) >= 2 and ticks == sorted(ticks)
    assert ticks[0] <= low and ticks[-1] >= high
    assert ticks[0] > low / 10 and ticks[-1] < high * 10  # the axis does not run far past the values


def test_a_47_ms_point_has_a_labelled_tick_above_it():
    assert log_ticks(0.15, 47.0)[-1] in (50.0, 100.0)
