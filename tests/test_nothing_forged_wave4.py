"""Nothing forged, nothing hung, wave 4 (issue 34): one regression test per class of the
adversarial pass over the cache, file rows, results rows, images and settings. The fleet's
classes (a stopped node, a dead scheduler, Dask's cached worker list, node names) are in
test_fleet.py, beside the fleet they start."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import assert_one_line_error
from mobattn.bench import attention_configs, measure
from mobattn.bench.cache import ArtifactCache, cache_key
from mobattn.bench.results import read_rows
from mobattn.bench.row import Row
from mobattn.errors import MobattnError

BIN = Path(sys.executable).parent


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> ArtifactCache:
    """A cache of this test's own (the suite's shared one must not be forged)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MOBATTN_CACHE", str(folder))
    return ArtifactCache(folder)


def _onnx_config(attention: str = "eaa", precision: str = "fp32"):
    return attention_configs(
        [attention], [16], [(4, 4)], backends=["onnxruntime"], precisions=[precision], profile="quick"
    )


def _forge(cache: ArtifactCache, key: str, replacement: Path) -> None:
    """What a user who can write the cache does: another file in the entry, and its
    hash rewritten in ``entry.json`` to match."""
    entry = cache.entries / key
    record = json.loads((entry / "entry.json").read_text())
    (entry / record["file"]).write_bytes(replacement.read_bytes())
    record["sha256"] = hashlib.sha256(replacement.read_bytes()).hexdigest()
    (entry / "entry.json").write_text(json.dumps(record))


# 1. a cached artifact is checked against its subject ---------------------------------------


@pytest.mark.slow
def test_a_cached_file_swapped_for_another_models_is_an_error_row_and_leaves_the_cache(
    own_cache, tmp_path, cli
):
    (config,) = _onnx_config()
    (first,) = measure([config])
    assert first.ok and not first.artifact_cached
    (again,) = measure(_onnx_config())
    assert again.ok and again.artifact_cached
    assert "checked in this row" in again.validation["note"] and again.validation["passed"]
    assert again.validation["cached_record"]["passed"]  # the entry's own record, kept beside it
    # MHSA's export put where EAA's was, its hash rewritten: never timed as EAA
    assert cli(f"export --attention mhsa --dim 16 --hw 4x4 --heads 1 --to onnx --out {tmp_path}").code == 0
    key = cache_key(config)
    _forge(own_cache, key, tmp_path / "mhsa-dim16-4x4.onnx")
    (forged,) = measure(_onnx_config())
    assert forged.status == "error" and "does not agree with its subject" in forged.reason
    assert forged.median_ms is None and forged.validation["passed"] is False
    assert not (own_cache.entries / key).exists()  # removed: the next run exports again
    (fresh,) = measure(_onnx_config())
    assert fresh.ok and not fresh.artifact_cached


@pytest.mark.slow
def test_a_cached_file_of_another_precision_is_an_error_row(own_cache, tmp_path, cli):
    """An fp32 file in an int8 entry agrees within int8's cosine floor: the file's content
    is what gives it away."""
    (config,) = _onnx_config(precision="int8")
    assert measure([config])[0].ok
    assert cli(f"export --attention eaa --dim 16 --hw 4x4 --to onnx --out {tmp_path}").code == 0
    _forge(own_cache, cache_key(config), tmp_path / "eaa-dim16-4x4.onnx")
    (forged,) = measure(_onnx_config(precision="int8"))
    assert forged.status == "error" and "the file holds fp32, not int8" in forged.reason


@pytest.mark.slow
def test_a_torn_entry_is_replaced_and_one_another_user_can_write_is_ignored(own_cache, cli):
    """One cache, one configuration: a torn entry.json is written anew (it used to be
    exported again on every run), an entry anyone may rewrite is never used, and a cache
    folder anyone may write is refused before anything runs."""
    (config,) = _onnx_config()
    assert measure([config])[0].ok
    entry_json = own_cache.entries / cache_key(config) / "entry.json"
    entry_json.write_text(entry_json.read_text()[:40])  # cut short
    (row,) = measure(_onnx_config())
    assert row.ok and not row.artifact_cached
    (row,) = measure(_onnx_config())
    assert row.ok and row.artifact_cached  # the entry was written anew
    entry_json.chmod(0o666)  # anyone may rewrite this entry: it is not used
    (row,) = measure(_onnx_config())
    assert row.ok and not row.artifact_cached
    own_cache.root.chmod(0o777)
    try:
        result = cli("bench --attention eaa --dim 16 --hw 4x4 --backend onnxruntime --profile quick")
        assert_one_line_error(result, "can be written by another user", "--no-cache")
    finally:
        own_cache.root.chmod(0o755)


# 2. a file's row says what the file holds ----------------------------------------------------


@pytest.mark.slow
def test_bench_file_records_the_precision_the_file_holds(tmp_path, cli):
    assert (
        cli(f"export --attention eaa --dim 16 --hw 4x4 --to onnx --precision int8 --out {tmp_path}").code == 0
    )
    int8 = tmp_path / "eaa-dim16-4x4-int8.onnx"
    (row,) = cli(f"bench {int8} --profile quick --json").json()
    assert row["status"] == "ok" and row["precision"] == "int8"
    assert_one_line_error(cli(f"bench {int8} --precision fp32"), "holds int8", "--precision fp32 contradicts")
    assert cli(f"bench {int8} --precision int8 --profile quick --json").code == 0


@pytest.mark.slow
@pytest.mark.parametrize("target", ["executorch", "litert"])
def test_bench_file_reads_int8_from_pte_and_tflite(tmp_path, cli, target):
    pytest.importorskip({"executorch": "executorch", "litert": "ai_edge_litert"}[target])
    suffix = {"executorch": "pte", "litert": "tflite"}[target]
    export = f"export --attention eaa --dim 16 --hw 4x4 --to {target} --precision int8 --out {tmp_path}"
    assert cli(export).code == 0
    int8 = tmp_path / f"eaa-dim16-4x4-int8.{suffix}"
    (row,) = cli(f"bench {int8} --profile quick --json").json()
    assert row["precision"] == "int8"
    assert_one_line_error(cli(f"bench {int8} --precision fp32"), "holds int8", "contradicts")


# 3 and 4. a row's numbers, checked and derived when read ---------------------------------------


def _row(**changes) -> dict:
    base = {
        "kind": "attention",
        "attention": "eaa",
        "dim": 16,
        "hw": [4, 4],
        "status": "ok",
        "timestamp": "2026-12-04T00:00:00",
        "median_ms": 1.0,
        "iqr_ms": 0.01,
        "other_cpu_cores": 0.0,
        "noisy": False,
        "environment": {"cpu": "x", "cores": 2},
    }
    return {**base, **changes}


def test_noisy_is_derived_from_the_numbers_never_the_rows_word():
    assert Row.from_dict(_row()).noisy is False
    assert Row.from_dict(_row(other_cpu_cores=1000.0)).noisy is True  # a busy machine
    assert Row.from_dict(_row(iqr_ms=0.5)).noisy is True  # a wide spread
    assert Row.from_dict(_row(noisy=True)).noisy is False  # nothing in its numbers says so
    spread = [1.0, 1.0, 1.5, 2.0, 2.0]  # the samples' own IQR, whatever iqr_ms says
    assert Row.from_dict(_row(samples_ms=spread)).noisy is True
    assert Row.from_dict(_row(status="error", median_ms=None, noisy=True)).noisy is None


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"phases_s": {"total": "x"}}, "phases_s"),
        ({"phases_s": {"export": -1.0}}, "phases_s"),
        ({"other_cpu_cores": -0.5}, "other_cpu_cores"),
        ({"environment": {"cpu": "x", "cores": -2}}, "environment.cores"),
        ({"environment": {"cpu": "x", "cores": True}}, "environment.cores"),
        ({"environment": {"cpu": 7, "cores": 2}}, "environment.cpu"),
        ({"environment": {"cpu": "x", "cores": 2, "node_label": "a\nb"}}, "node_label"),
        ({"environment": {"cpu": "x", "cores": 2, "node_label": "n" * 2000}}, "node_label"),
        ({"load_ms": -3.0}, "load_ms"),
    ],
)
def test_impossible_values_are_refused_by_merge_and_report(tmp_path, cli, changes, says):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_row()) + "\n" + json.dumps(_row(**changes)) + "\n")
    with pytest.raises(MobattnError, match=says):
        read_rows(path)
    assert_one_line_error(cli(f"merge {path} --out {tmp_path / 'all.jsonl'}"), "rows.jsonl:2", says)
    assert_one_line_error(cli(f"report {path} --out {tmp_path / 'report'}"), "rows.jsonl:2")
    assert not (tmp_path / "all.jsonl").exists() and not (tmp_path / "report").exists()


# 5. images of every depth ---------------------------------------------------------------------


def test_sixteen_bit_grey_images_are_scaled_not_clipped_white(tmp_path):
    from mobattn.evaluate import load_image, preprocess

    grey8 = np.random.default_rng(0).integers(0, 256, (40, 40)).astype(np.uint8)
    Image.fromarray(grey8).save(tmp_path / "eight.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "sixteen.tif")
    plain = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    reference = preprocess(load_image(tmp_path / "eight.png"), 32, 1.0, *plain)
    for name in ("sixteen.png", "sixteen.tif"):
        image = load_image(tmp_path / name)
        assert image.mode.startswith("I;16")
        assert np.abs(preprocess(image, 32, 1.0, *plain) - reference).max() < 1e-6
    Image.fromarray(np.ones((8, 8), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(MobattnError, match="floating-point pixels"):
        load_image(tmp_path / "float.tif", decode=False)


def test_image_lists_count_each_image_once_and_say_what_is_missing(tmp_path):
    from mobattn.image_sources import read_source

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    (tmp_path / "labels.csv").write_text("file,class_index\na.png,1\nb.png,2\na.png,1\n")
    with pytest.warns(Warning, match="1 repeated lines ignored"):
        assert len(read_source(tmp_path / "labels.csv").samples) == 2
    (tmp_path / "clash.csv").write_text("file,class_index\na.png,1\na.png,3\n")
    with pytest.raises(MobattnError, match="listed with labels 1 and 3"):
        read_source(tmp_path / "clash.csv")
    (tmp_path / "empty.csv").write_text("file,class_index\n")
    with pytest.raises(MobattnError, match="has a header and no rows"):
        read_source(tmp_path / "empty.csv")
    # calibration needs no labels: a folder of images without class folders is taken
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "c.png")
    assert [label for _, label in read_source(flat, labels=False).samples] == [None]


# 10. inspect renders what every target records --------------------------------------------------


@pytest.mark.slow
def test_inspect_prints_every_targets_file_for_people(tmp_path, cli):
    targets = ["onnx", "coreml", "executorch", "litert"]
    assert (
        cli(f"export --attention eaa --dim 16 --hw 4x4 --to {','.join(targets)} --out {tmp_path}").code == 0
    )
    files = [p for p in tmp_path.iterdir() if p.suffix in (".onnx", ".mlpackage", ".pte", ".tflite")]
    assert len(files) == 4
    for path in files:
        result = cli(f"inspect {path}")
        assert result.code == 0 and "Traceback" not in result.err, (path, result.err)
    assert "delegates: XNNPACK, 1 partition(s)" in cli(f"inspect {tmp_path / 'eaa-dim16-4x4.tflite'}").out


# 11. settings are checked before anything runs ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MOBATTN_CACHE_MAX_MB", "²", "whole number"),
        ("MOBATTN_CACHE_MAX_MB", "-1", "whole number"),
        ("MOBATTN_WORKERS", "lukewarm", "warm or fresh"),
        ("MOBATTN_PRESTART", "yes", "0 or 1"),
        ("MOBATTN_NODE_LABEL", "a\nb", "one line"),
        ("MOBATTN_NODE_ID", "x" * 2000, "at most 64 characters"),
    ],
)
def test_a_bad_setting_is_one_line_before_anything_runs(tmp_path, cli, monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    results = tmp_path / "rows.jsonl"
    command = f"bench --attention eaa --dim 8 --hw 2x2 --backend onnxruntime --results {results}"
    assert_one_line_error(cli(command), name, says)
    assert not results.exists()
    assert_one_line_error(cli("cache info"), name)


# 12. a full cache costs the next run an export, never this configuration ----------------------------


def _tiny_filesystem(folder: Path) -> bool:
    folder.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=755", "tmpfs", str(folder)], capture_output=True
    )
    return made.returncode == 0


@pytest.mark.slow
def test_a_full_cache_measures_without_caching_and_says_so_once(tmp_path, monkeypatch):
    cache = tmp_path / "full"
    if os.geteuid() != 0 or not _tiny_filesystem(cache):
        pytest.skip("needs a 64 KiB filesystem (mounting a tmpfs needs root)")
    try:
        monkeypatch.setenv("MOBATTN_CACHE", str(cache))
        argv = [str(BIN / "mobattn"), "bench", "--attention", "eaa", "--dim", "128", "--hw", "4x4,8x8"]
        argv += ["--backend", "onnxruntime", "--profile", "quick", "--json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert [(r["status"], r["artifact_cached"]) for r in json.loads(done.stdout)] == [("ok", False)] * 2
        said = [line for line in done.stderr.splitlines() if "cannot keep exports" in line]
        assert len(said) == 1 and str(cache) in said[0]
    finally:
        subprocess.run(["umount", str(cache)], capture_output=True)


# lesser: options that do nothing, comparisons that say nothing ------------------------------------


def test_fleet_options_without_a_fleet_are_refused(tmp_path, cli):
    results = tmp_path / "r.jsonl"
    for extra in ("--machines kind-one", "--mix", "--fleet spread"):
        result = cli(f"sweep --preset quick --results {results} {extra}")
        assert_one_line_error(result, "add --cluster")
    assert not results.exists()


def test_divergence_of_a_float_graph_is_refused(tmp_path, cli):
    assert cli(f"export --attention eaa --dim 16 --hw 4x4 --to onnx --out {tmp_path}").code == 0
    result = cli(f"validate {tmp_path / 'eaa-dim16-4x4.onnx'} --attention eaa --dim 16 --hw 4x4 --divergence")
    assert_one_line_error(result, "holds fp32", "every layer would agree")
