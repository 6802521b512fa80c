"""The measuring harness: statistics, timing policy, isolation, limits, sweeps, schema.
(These test that the harness measures correctly, never that anything is fast.)"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mobattn
from helpers import assert_one_line_error, join
from mobattn.bench.config import BenchConfig
from mobattn.bench.fit import fit_exponents, fit_power_law
from mobattn.bench.measurement import Measurement
from mobattn.bench.memory import live_tensor_peak_mib
from mobattn.bench.row import Row
from mobattn.bench.runner import run
from mobattn.bench.sweep import PRESETS, load_grid, parse_shard, shard
from mobattn.bench.timer import TimingPolicy, measure

ROW_KEYS = {
    "median_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "p90_ms",
    "p99_ms",
    "iterations",
    "cv",
    "peak_rss_mib",
    "params",
    "macs",
    "backend",
    "device",
    "threads",
    "status",
    "environment",
    "batch",
    "tokens",
    "gflops_per_s",
    "fraction_of_peak",
    "param_bytes",
    "artifact_bytes",
    "live_tensor_peak_mib",
}


def quick(**kwargs) -> BenchConfig:
    base = dict(kind="attention", attention="eaa", dim=16, hw=[4, 4], profile="quick", timeout_s=120)
    return BenchConfig(**{**base, **kwargs})


# --- statistics --------------------------------------------------------------------


def test_statistics_from_raw_samples():
    samples = tuple(int(ms * 1e6) for ms in range(1, 101))  # 1..100 ms
    m = Measurement(samples, threads=1)
    assert m.iterations == 100
    assert m.median_ms == pytest.approx(50.5)
    assert m.mean_ms == pytest.approx(50.5)
    assert m.std_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert m.min_ms == 1 and m.max_ms == 100
    assert m.p90_ms == 90 and m.p99_ms == 99  # nearest rank: a latency some run took
    assert m.cv == pytest.approx(m.std_ms / 50.5)


def test_single_sample_and_empty():
    m = Measurement((2_000_000,), threads=1)
    assert m.std_ms == 0 and m.p99_ms == 2.0 and m.cv == 0
    with pytest.raises(ValueError):
        Measurement((), threads=1)


def test_timer_meets_both_minimums():
    import time

    calls = []
    policy = TimingPolicy(warmup_runs=3, warmup_seconds=0, min_runs=7, min_seconds=0.05, max_seconds=5)
    start = time.perf_counter()
    m = measure(lambda: calls.append(1), threads=1, policy=policy)
    wall = time.perf_counter() - start
    assert m.warmup_runs == 3
    assert m.iterations > 7  # an empty call: the time minimum is what ends the loop
    assert 0.05 <= wall < 1.0
    assert len(calls) == m.iterations + m.warmup_runs


def test_timer_stops_at_max_seconds():
    import time

    policy = TimingPolicy(warmup_runs=0, warmup_seconds=0, min_runs=10_000, min_seconds=0, max_seconds=0.1)
    m = measure(lambda: time.sleep(0.02), threads=1, policy=policy)
    assert 2 <= m.iterations < 20
    assert m.median_ms >= 20


def test_mlperf_profile_is_single_stream_1024():
    assert TimingPolicy.named("mlperf").min_runs >= 1024


def test_live_tensor_peak_counts_activations_not_weights():
    layer = torch.nn.Linear(256, 256).eval()
    x = torch.randn(64, 256)
    assert live_tensor_peak_mib(layer, x) == pytest.approx(64 * 256 * 4 / 2**20)


def test_power_law_fit_recovers_exponent():
    tokens = [196, 784, 3136, 12544]
    k, a, r2 = fit_power_law(tokens, [0.003 * n**1.7 for n in tokens])
    assert k == pytest.approx(1.7) and a == pytest.approx(0.003) and r2 == pytest.approx(1)
    rows = [
        Row(
            kind="attention",
            status="ok",
            attention="mhsa",
            dim=64,
            backend="torch",
            device="cpu",
            threads=1,
            precision="fp32",
            tokens=n,
            median_ms=0.001 * n**2,
        )
        for n in tokens
    ]
    (fit,) = fit_exponents(rows)
    assert fit.k == pytest.approx(2) and fit.points == 4


# --- isolation, limits, schema ---------------------------------------------------------


@pytest.mark.slow
def test_isolated_rows_come_from_fresh_processes_and_carry_the_schema():
    rows = [run(quick(backend=b)) for b in ("torch", "onnxruntime")]
    for row in rows:
        assert row.ok, row.reason
        assert ROW_KEYS <= set(row.to_dict())
        assert row.pid != os.getpid()
        assert row.environment["cores"] == os.cpu_count() and row.environment["torch"]
        assert row.min_ms <= row.median_ms <= row.p90_ms <= row.p99_ms
        assert row.macs > 0 and row.params > 0 and row.peak_rss_mib >= 0
    assert rows[0].pid != rows[1].pid
    assert rows[0].live_tensor_peak_mib > 0 and rows[1].artifact_bytes > 0
    assert rows[0].validation is None and rows[1].validation["passed"]  # the timed export was checked
    json.dumps([r.to_dict() for r in rows])  # rows are plain JSON


def test_in_process_run_has_the_same_schema():
    row = run(quick(), isolate=False)
    assert row.status == "ok" and row.pid == os.getpid() and ROW_KEYS <= set(row.to_dict())


@pytest.mark.slow
def test_time_limit_records_a_timeout_row():
    row = run(quick(attention="mhsa", dim=64, hw=[64, 64], profile="default", timeout_s=1.5))
    assert row.status == "timeout" and "1.5 s" in row.reason


@pytest.mark.slow
def test_out_of_memory_is_recorded_not_raised():
    """A child with a small address-space limit: MHSA's N x N scores do not fit."""
    row = run(quick(attention="mhsa", dim=256, hw=[96, 96], backend="torch", memory_limit_mb=64))
    assert row.status == "oom", row
    assert row.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rows_are_synchronised_and_report_device_memory():
    row = run(quick(device="cuda", attention="mhsa", dim=64, hw=[32, 32]))
    assert row.status == "ok" and row.cuda_max_allocated_mib > 0


# --- sweeps ------------------------------------------------------------------------


def write_grid(tmp_path: Path) -> Path:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'attentions = ["eaa", "ufo"]\ndims = [16]\nhws = [4, 6]\nbackends = ["torch"]\n'
        'threads = [1]\nprofile = "quick"\n'
    )
    return grid


@pytest.mark.slow
def test_sweep_appends_resumes_and_fits(tmp_path, cli):
    grid, results = write_grid(tmp_path), tmp_path / "r.jsonl"
    first = cli(f"sweep {grid} --results {results} --no-isolate --json")
    assert first.code == 0, first.err
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    second = cli(f"sweep {grid} --results {results} --no-isolate")
    assert second.code == 0 and "4 already in" in second.err and "0 to run" in second.err
    assert len(results.read_text().splitlines()) == 4


def test_sweep_resumes_after_interruption(tmp_path, cli):
    grid, results = write_grid(tmp_path), tmp_path / "r.jsonl"
    assert cli(f"sweep {grid} --results {results} --no-isolate --shard 1/2").code == 0
    with results.open("a") as f:
        f.write('{"kind": "attention", "attent')  # a row cut by a kill
    result = cli(f"sweep {grid} --results {results} --no-isolate")
    assert "2 already in" in result.err and "2 to run" in result.err


def test_shards_partition_the_grid_and_merge(tmp_path, cli):
    configs = PRESETS["attention-scaling"].configs()
    parts = [shard(configs, i, 3) for i in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(configs)
    assert set().union(*[{c.identity({}) for c in p} for p in parts]) == {c.identity({}) for c in configs}
    grid = write_grid(tmp_path)
    for i in (1, 2):
        assert (
            cli(f"sweep {grid} --results {tmp_path / f's{i}.jsonl'} --no-isolate --shard {f'{i}/2'}").code
            == 0
        )
    merged = tmp_path / "all.jsonl"
    assert cli(f"merge {tmp_path / 's1.jsonl'} {tmp_path / 's2.jsonl'} --out {merged}").code == 0
    assert len(merged.read_text().splitlines()) == 4


def test_presets_cover_what_they_promise():
    scaling = PRESETS["attention-scaling"]
    assert set(scaling.attentions) == {"eaa", "external", "hilo", "mhsa", "ufo"} and scaling.dims == [64, 128]
    assert scaling.hws[0] == [14, 14] and scaling.hws[-1] == [128, 128]
    models = PRESETS["models"]
    assert min(models.resolutions) == 224 and max(models.resolutions) == 1024
    # every family that joins presets (the AugReg ViT-Ti is deit_tiny's module, measured there)
    zoo = {m for m in mobattn.list_models() if mobattn.models.get_model_config(m).family.in_presets}
    assert set(models.models) == zoo and "vit_tiny_patch16_224" not in zoo
    assert {"swiftformer", "efficientformer", "deit", "mobilevit", "mobilevitv2"} <= {
        m.split("_")[0] for m in zoo
    }
    families = PRESETS["families"].configs()  # each model once per backend, at its own input size
    assert PRESETS["families"].backends == ["onnxruntime", "executorch", "litert"]
    assert len(families) == 3 * len(zoo)
    litert = PRESETS["litert-parity"]  # the 1.15x goal's grid, every row with its op profile
    assert litert.op_profile and litert.dims == [64, 128] and litert.hws[-1] == [128, 128]
    assert {tuple(c.resolution) for c in families if c.model.startswith("mobilevit")} == {(256, 256)}
    parity = PRESETS["runtime-parity"]
    assert parity.backends == ["onnxruntime", "executorch"] and parity.threads == [1]
    swaps = {c.attention for c in PRESETS["swap-experiment"].configs()}
    assert swaps == {None} | (set(mobattn.list_attentions()))


def test_parse_shard_and_bad_grid(tmp_path):
    from mobattn import MobattnError

    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(MobattnError):
            parse_shard(bad)
    path = tmp_path / "g.toml"
    path.write_text('attentions = ["eaa"]\nhws = [4]\nbogus = 1\n')
    with pytest.raises(MobattnError, match="unknown keys bogus"):
        load_grid(path=path)


def test_grid_file_eaa_is_the_eaa_swap_and_own_is_the_native_model(tmp_path):
    """ "eaa" in a grid file's model_attentions once meant "the model's own", so
    EfficientFormer measured its native attention under EAA's name."""
    from mobattn import MobattnError

    path = tmp_path / "g.toml"
    path.write_text('models = ["efficientformer_l1", "swiftformer_xs"]\nmodel_attentions = ["own", "eaa"]\n')
    subjects = {(c.model, c.attention) for c in load_grid(path=path).configs()}
    # EfficientFormer: its own and the EAA swap; SwiftFormer's own is EAA: measured once
    assert subjects == {("efficientformer_l1", None), ("efficientformer_l1", "eaa"), ("swiftformer_xs", None)}
    path.write_text('models = ["deit_tiny"]\nmodel_attentions = ["eaa"]\n')
    with pytest.raises(MobattnError, match="deit_tiny takes none of model_attentions.*does not apply"):
        load_grid(path=path)
    path.write_text('models = ["deit_tiny"]\nmodel_attentions = ["own", "eaa"]\n')
    assert {(c.model, c.attention) for c in load_grid(path=path).configs()} == {("deit_tiny", None)}


# --- the bench command ---------------------------------------------------------------


@pytest.mark.slow
def test_bench_command_json_rows(tmp_path, cli):
    results = tmp_path / "rows.jsonl"
    result = cli(
        "bench --attention ufo --dim 32 --hw 4x4,8x8 --backend torch,onnxruntime --profile quick "
        f"--results {results} --json"
    )
    assert result.code == 0, result.err
    rows = result.json()
    assert [(r["tokens"], r["backend"]) for r in rows] == [
        (16, "torch"),
        (16, "onnxruntime"),
        (64, "torch"),
        (64, "onnxruntime"),
    ]
    assert all(r["status"] == "ok" for r in rows)
    assert len(results.read_text().splitlines()) == 4


@pytest.mark.slow
def test_bench_an_onnx_file(tmp_path, cli):
    assert cli(f"export --attention eaa --dim 32 --hw 4x4 --out {tmp_path}").code == 0
    result = cli(f"bench {tmp_path / 'eaa-dim32-4x4.onnx'} --profile quick --json")
    (row,) = result.json()
    assert row["status"] == "ok" and row["kind"] == "file" and row["artifact_bytes"] > 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--attention", "eaa", "--dim", "32", "--hw", "4by4"], ["--hw"]),
        (["--model", "swiftformer_xs", "--resolution", "abc"], ["--resolution"]),
        (["--attention", "eaa", "--dim", "32", "--hw", "4x4", "--backend", "tflite"], ["unknown backend"]),
        (["--attention", "eaa", "--dim", "32", "--hw", "4x4", "--device", "tpu"], ["unknown device"]),
        (["--attention", "eaa", "--dim", "32", "--hw", "4x4", "--threads", "0"], ["--threads"]),
        (["missing.onnx"], ["not found"]),
    ],
)
def test_bad_bench_input(tmp_path, cli, args, fragments):
    results = tmp_path / "rows.jsonl"
    assert_one_line_error(cli(f"bench {join(args)} --results {results}"), *fragments)
    assert not results.exists()


def test_corrupt_artifact_and_cuda_without_gpu(tmp_path, cli):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    assert_one_line_error(cli(f"bench {bad}"), "not a valid ONNX model")
    if not torch.cuda.is_available():
        assert_one_line_error(cli("bench --attention eaa --dim 8 --hw 2x2 --device cuda"), "no CUDA GPU")


def test_warm_up_is_capped_for_slow_runs():
    import time

    policy = TimingPolicy(
        warmup_runs=50, warmup_seconds=0, min_runs=1, min_seconds=0, max_warmup_seconds=0.05
    )
    m = measure(lambda: time.sleep(0.02), threads=1, policy=policy)
    assert 1 <= m.warmup_runs <= 4 and m.iterations == 1


def test_rows_written_by_earlier_versions_keep_their_identity():
    """Committed results predate recorded heads and the MiB names: they still resume."""
    old = {
        "kind": "attention",
        "attention": "mhsa",
        "dim": 64,
        "hw": [14, 14],
        "status": "ok",
        "peak_rss_mb": 12.5,
        "environment": {"cpu": "x", "executorch": "1.5.1"},
    }
    row = Row.from_dict(old)
    assert row.peak_rss_mib == 12.5 and row.heads == 2
    config = BenchConfig(kind="attention", attention="mhsa", dim=64, hw=[14, 14])
    assert config.identity({"cpu": "x"}) == row.identity()  # ExecuTorch's version is not a torch row's


@pytest.mark.slow
def test_op_profile_sums_onnxruntime_kernel_time(cli):
    result = cli(
        "bench --attention mhsa --dim 16 --hw 4x4 --backend onnxruntime --runs 3 --op-profile --json"
    )
    assert result.code == 0, result.err
    (row,) = result.json()
    profile = row["details"]["op_profile"]
    assert profile["inferences"] == 20 and profile["by_op_type"] and profile["by_node"]
    assert sum(e["share"] for e in profile["by_op_type"]) == pytest.approx(1.0, abs=0.02)
    assert "Softmax" in {e["op_type"] for e in profile["by_op_type"]}  # MHSA's scores


@pytest.mark.slow
def test_op_profile_reads_executorch_own_event_trace(cli):
    pytest.importorskip("executorch")
    result = cli("bench --attention mhsa --dim 16 --hw 4x4 --backend executorch --runs 3 --op-profile --json")
    assert result.code == 0, result.err
    (row,) = result.json()
    profile = row["details"]["op_profile"]
    assert profile["runtime"].startswith("ExecuTorch ETDump") and profile["inferences"] == 20
    assert sum(e["share"] for e in profile["by_op_type"]) == pytest.approx(1.0, abs=0.02)
    types = {e["op_type"] for e in profile["by_op_type"]}
    assert "Softmax (NC, F32)" in types and "DELEGATE_CALL" not in types  # XNNPACK's own ops
    assert all(not e["node"].startswith("Method::") for e in profile["by_node"])
