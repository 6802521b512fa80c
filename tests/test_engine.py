"""The sweep engine: the artifact cache, warm workers, cold-start figures and the time
accounting of every row (issue 26). Real exports, real runtimes, real processes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mobattn.bench import attention_configs, measure
from mobattn.bench.api import time_accounting
from mobattn.bench.cache import ArtifactCache, cache_key, source_digest
from mobattn.bench.timer import TimingPolicy, median_ci_fraction
from mobattn.bench.timer import measure as time_runs

ROW_PHASES = {"start", "load", "first_run", "warmup", "timed", "figures", "total"}
EXPORT_PHASES = {"cache", "build", "export", "validation"}


def tiny(backend: str, threads=(1,), **common):
    return attention_configs(
        ["eaa"], [16], [(4, 4)], backends=[backend], threads=threads, profile="quick", **common
    )


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MOBATTN_CACHE", str(folder))
    return folder


@pytest.mark.slow
def test_a_sweep_differing_only_in_threads_exports_nothing(cache_dir):
    first = measure(tiny("onnxruntime", threads=(1,)))
    second = measure(tiny("onnxruntime", threads=(2,)))
    assert first[0].ok and second[0].ok, (first[0].reason, second[0].reason)
    assert first[0].artifact_cached is False and "export" in first[0].phases_s
    assert second[0].artifact_cached is True and "export" not in second[0].phases_s
    # the same file, validated as before: the row names it by hash and keeps its validation
    assert second[0].details["artifact_sha256"] == first[0].details["artifact_sha256"]
    assert second[0].validation["cached_record"] == first[0].validation  # the export's own record
    assert second[0].validation["passed"] and "checked in this row" in second[0].validation["note"]
    assert ArtifactCache().info().entries == 1


@pytest.mark.slow
def test_every_row_says_where_its_time_went(cache_dir):
    (row,) = measure(tiny("onnxruntime", samples=True), cache=False)
    assert row.ok, row.reason
    assert ROW_PHASES | {"build", "export", "validation"} <= set(row.phases_s)
    assert "cache" not in row.phases_s  # --no-cache: no lookup
    parts = sum(v for k, v in row.phases_s.items() if k != "total")
    assert 0 < parts <= row.phases_s["total"] * 1.01
    assert row.load_ms > 0 and row.first_run_ms > 0
    # the timed phase is the timed runs themselves: their sum, not a median times a count
    # (on a busy machine a mean runs well above the median, so only the sum is exact)
    assert len(row.samples_ms) == row.iterations
    assert row.phases_s["timed"] == pytest.approx(sum(row.samples_ms) / 1e3, rel=1e-3)
    assert min(row.samples_ms) <= row.median_ms <= max(row.samples_ms)
    account = time_accounting([row], row.phases_s["total"])
    assert account.exported == 1 and account.cached == 0 and 0 < account.efficiency < 1


@pytest.mark.slow
def test_a_damaged_entry_is_exported_again(cache_dir):
    (config,) = tiny("onnxruntime")
    (first,) = measure([config])
    entry = cache_dir / "artifacts" / cache_key(config)
    (artifact,) = [p for p in entry.iterdir() if p.suffix == ".onnx"]
    artifact.write_bytes(artifact.read_bytes()[:-8] + b"\0" * 8)  # a flipped tail, same size
    (again,) = measure([config])
    assert again.ok and again.artifact_cached is False, again.reason
    assert again.details["artifact_sha256"] == first.details["artifact_sha256"]
    (third,) = measure([config])
    assert third.artifact_cached is True


def test_the_least_recently_used_entry_goes_first(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MOBATTN_CACHE_MAX_MB", "1")
    cache = ArtifactCache()
    made = tmp_path / "made"
    made.mkdir()

    def store(key: str) -> None:
        path = made / f"{key}.onnx"
        path.write_bytes(os.urandom(400 * 1024))
        cache.store(key, {"path": str(path), "validation": None, "export": {}}, {"key": key})

    store("a")
    store("b")
    time.sleep(0.05)
    (tmp_path / "use").mkdir()
    assert cache.lookup("a", tmp_path / "use") is not None  # a is now the most recently used
    time.sleep(0.05)
    store("c")  # 1.2 MiB > 1 MiB: b goes
    kept = sorted(p.name for p in (cache_dir / "artifacts").iterdir())
    assert kept == ["a", "c"]
    assert not list((cache_dir / "artifacts").glob(".staging-*"))
    assert cache.clear() == 2 and cache.info().entries == 0


def test_a_bad_cache_bound_is_one_line(cli, cache_dir, monkeypatch):
    from helpers import assert_one_line_error

    monkeypatch.setenv("MOBATTN_CACHE_MAX_MB", "lots")
    assert_one_line_error(cli("cache info"), "MOBATTN_CACHE_MAX_MB")


def test_cache_info_and_clear(cli, cache_dir, tmp_path):
    path = tmp_path / "f.onnx"
    path.write_bytes(b"x" * 100)
    ArtifactCache().store("k", {"path": str(path), "validation": None, "export": {}}, {})
    info = cli("cache info --json").json()[0]
    assert info["entries"] == 1 and info["bytes"] > 100 and info["location"] == str(cache_dir)
    assert cli("cache clear --json").json()[0]["removed"] == 1
    assert cli("cache info --json").json()[0]["entries"] == 0


def test_the_cache_key_follows_what_changes_the_file():
    (base,) = tiny("onnxruntime")
    (threads,) = tiny("onnxruntime", threads=(2,))
    (quick_profile,) = attention_configs(["eaa"], [16], [(4, 4)], backends=["onnxruntime"], profile="default")
    (fp16,) = attention_configs(["eaa"], [16], [(4, 4)], backends=["onnxruntime"], precisions=["fp16"])
    (other,) = tiny("executorch")
    (wider,) = attention_configs(["eaa"], [32], [(4, 4)], backends=["onnxruntime"])
    assert cache_key(base) == cache_key(threads) == cache_key(quick_profile)
    assert len({cache_key(base), cache_key(fp16), cache_key(other), cache_key(wider)}) == 4
    assert len(source_digest()) == 64


def test_the_adaptive_profile_stops_when_the_median_is_tight():
    assert median_ci_fraction([100] * 50) == 0
    spread = [100 + (i % 7) for i in range(200)]
    assert 0 < median_ci_fraction(spread) < 0.05
    policy = TimingPolicy.named("adaptive")
    result = time_runs(lambda: sum(range(2000)), 1, policy)
    assert result.iterations >= policy.min_runs
    tight = median_ci_fraction(list(result.samples_ns)) <= policy.ci_fraction
    assert tight or sum(result.samples_ns) / 1e9 >= 0.9 * policy.max_seconds  # or it ran out of time
    assert result.first_run_ns > 0 and result.warmup_runs >= policy.warmup_runs


@pytest.mark.slow
def test_warm_and_fresh_workers_give_rows_of_the_same_shape(cache_dir):
    warm = measure(tiny("torch"), workers="warm")[0]
    fresh = measure(tiny("torch"), workers="fresh")[0]
    assert warm.ok and fresh.ok, (warm.reason, fresh.reason)
    assert warm.details["workers"] == "warm" and fresh.details["workers"] == "fresh"
    assert warm.identity() == fresh.identity()
    assert set(warm.phases_s) == set(fresh.phases_s)


def test_an_unknown_workers_kind_is_refused(monkeypatch):
    from mobattn.bench.workers import workers_kind
    from mobattn.errors import MobattnError

    monkeypatch.setenv("MOBATTN_WORKERS", "lukewarm")
    with pytest.raises(MobattnError, match="MOBATTN_WORKERS"):
        workers_kind()


def test_a_cache_entry_is_a_complete_folder(cache_dir, tmp_path):
    path = tmp_path / "f.pte"
    path.write_bytes(b"y" * 10)
    cache = ArtifactCache()
    stored = cache.store("k", {"path": str(path), "validation": {"status": "ok"}, "export": {}}, {"a": 1})
    record = json.loads((cache_dir / "artifacts" / "k" / "entry.json").read_text())
    assert record["sha256"] == stored["sha256"] and record["key"] == {"a": 1}
    (tmp_path / "run").mkdir()
    found = cache.lookup("k", tmp_path / "run")
    assert found["cached"] and found["validation"] == {"status": "ok"}
    assert Path(found["path"]).read_bytes() == b"y" * 10


def test_the_matmul_peak_is_measured_once_per_machine(cache_dir):
    from mobattn.bench.compute import MACHINE_FACTS, machine_peak_gflops

    first = machine_peak_gflops(1)
    facts = json.loads((cache_dir / MACHINE_FACTS).read_text())
    ((key, value),) = facts.items()
    assert value == first > 0 and key.endswith("|cpu|1")
    (cache_dir / MACHINE_FACTS).write_text(json.dumps({key: 12345.0}))
    assert machine_peak_gflops(1) == 12345.0  # read back, not measured again
    assert machine_peak_gflops(1, cached=False) == first  # --no-cache: this process's measurement
    (cache_dir / MACHINE_FACTS).write_text("{torn")
    assert machine_peak_gflops(1) == first  # a damaged file is measured over


@pytest.mark.slow
def test_cold_start_columns_on_request(cli, cache_dir):
    plain = cli("bench --attention eaa --dim 16 --hw 4x4 --backend onnxruntime --profile quick")
    cold = cli("bench --attention eaa --dim 16 --hw 4x4 --backend onnxruntime --profile quick --cold-start")
    assert plain.code == 0 and cold.code == 0, cold.err
    header = next(line for line in plain.out.splitlines() if "subject" in line)
    cold_header = next(line for line in cold.out.splitlines() if "subject" in line)
    assert cold_header.count("┃") == header.count("┃") + 2  # load and first run
    assert "from the cache" in cold.err  # the time-accounting line; the second run reused the file
    rows = cli("bench --attention eaa --dim 16 --hw 4x4 --backend onnxruntime --profile quick --json").json()
    assert rows[0]["artifact_cached"] and rows[0]["load_ms"] > 0 and rows[0]["first_run_ms"] > 0


def test_table_shows_cold_start_on_request():
    from mobattn.bench.table import TableRow, render

    latency = {"onnxruntime": {"median_ms": 1.0, "p90_ms": 1.1, "load_ms": 42.0, "first_run_ms": 3.5}}
    row = TableRow("m", "eaa", 224, "fp32", "cpu", 1.0, 0.1, latency=latency)
    assert "onnxruntime load (ms)" in render([row], ["onnxruntime"], "md", cold_start=True)
    assert "| 42.0 | 3.50 |" in render([row], ["onnxruntime"], "md", cold_start=True)
    assert "load" not in render([row], ["onnxruntime"], "md")


def test_the_source_digest_covers_the_packages_and_not_the_scripts():
    """Editing bench/scripts/*.py (not installed) once invalidated every cached export."""
    from mobattn.bench.cache import source_files

    files = source_files()
    names = {f.name for f in files}
    assert {"cache.py", "to_onnx.py", "eaa.py", "worker.py"} <= names
    assert all((f.parent / "__init__.py").is_file() for f in files)
    assert not any(f.parent.name == "scripts" for f in files)


def test_an_unusable_cache_is_one_line_before_measuring(cli, tmp_path, monkeypatch):
    from helpers import assert_one_line_error

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MOBATTN_CACHE", str(blocker / "cache"))
    results = tmp_path / "r.jsonl"
    command = f"bench --attention eaa --dim 16 --hw 4x4 --profile quick --results {results}"
    assert_one_line_error(cli(command), "--no-cache")
    assert not results.exists()  # nothing measured, nothing written


def test_a_template_started_ahead_is_the_one_the_pool_uses_and_none_outlives_the_command():
    """``prestart`` (issue 38): the command's first pool adopts the template started before
    planning; one never adopted is stopped when the command ends."""
    from mobattn.bench import workers

    workers.stop_prestarted()  # none left by an earlier test's command
    workers.prestart([None, "onnx"])
    early = workers._PRESTARTED[("onnx",)]
    with workers.worker_pool(None, {"onnx"}) as pool:
        assert pool.get() is early and early.proc.poll() is None
    assert early.proc.poll() is not None and workers._PRESTARTED == {}  # closed with its pool
    workers.prestart(["executorch"])
    unused = workers._PRESTARTED[("executorch",)]
    workers.stop_prestarted()  # what a command's end (and the process's exit) runs
    assert unused.proc.poll() is not None and not unused.folder.exists()
