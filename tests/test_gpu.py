"""GPU rows (issue 25): what can be checked without a GPU runs here — the GPU in a CUDA
row's identity, the compiled backends and bf16 as configurations, the GPU presets and
the device script's plan; what needs one skips cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mobattn.bench.api import attention_configs, measure
from mobattn.bench.row import Row
from mobattn.bench.sweep import PRESETS
from mobattn.environment import environment

ROOT = Path(__file__).resolve().parent.parent
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_row(**environment_changes) -> Row:
    env = {
        **environment(),
        "gpu": "NVIDIA H200",
        "cuda": "13.0",
        "gpu_driver": "580.1",
        **environment_changes,
    }
    return Row(kind="attention", attention="eaa", dim=64, hw=[14, 14], device="cuda", environment=env)


def test_two_gpus_behind_one_cpu_never_share_an_identity():
    assert cuda_row().identity() != cuda_row(gpu="NVIDIA A100").identity()
    assert cuda_row().identity() != cuda_row(gpu_driver="590.2").identity()
    cpu = dict(kind="attention", attention="eaa", dim=64, hw=[14, 14], environment=environment())
    with_gpu = dict(cpu, environment={**environment(), "gpu": "NVIDIA H200"})
    assert Row.from_dict(cpu).identity() == Row.from_dict(with_gpu).identity()  # CPU rows: unchanged


def test_compiled_backends_and_bf16_are_gpu_only_and_skipped_elsewhere():
    configs = attention_configs(
        ["eaa"], [16], [[4, 4]], backends=["torch-compile", "torch"], precisions=["bf16"]
    )
    rows = measure(configs, isolate=False)
    assert [r.status for r in rows] == ["skipped", "skipped"]
    assert "runs on cuda, not cpu" in rows[0].reason and "measures fp32, not bf16" in rows[1].reason


def test_gpu_presets_span_the_issue_and_put_the_deployed_form_first():
    from mobattn.attention import list_attentions
    from mobattn.models import get_model_config, list_models

    cuda = PRESETS["cuda"]
    assert set(cuda.attentions) == set(list_attentions())  # every mechanism, a new one too
    assert max(h * w for h, w in cuda.hws) == 256 * 256 and cuda.precisions == ["fp16", "fp32"]
    configs = cuda.configs()
    assert {c.backend for c in configs} == {"torch-cudagraph", "torch"}  # the graph, eager beside it
    families = {c.model.split("_")[0] for c in configs if c.kind == "model"}
    assert {m.split("_")[0] for m in list_models() if get_model_config(m).family.in_presets} <= families
    # breadth first: every mechanism and both backends at the first size before the second
    first_pass = [c for c in configs if c.kind == "attention"][: len(cuda.attentions) * 2]
    assert {(c.attention, c.backend) for c in first_pass} == {
        (a, b) for a in cuda.attentions for b in ("torch-cudagraph", "torch")
    }
    compiled = {c.backend for c in PRESETS["cuda-compiled"].configs()}
    assert compiled == {"torch-compile", "torch-cudagraphs"}
    assert {c.batch for c in PRESETS["cuda-throughput"].configs()} == {1, 8, 32, 128}


def test_the_cuda_graph_backend_is_gpu_only_and_rows_name_their_gpu_time():
    (row,) = measure(attention_configs(["eaa"], [16], [[4, 4]], backends=["torch-cudagraph"]), isolate=False)
    assert row.status == "skipped" and "runs on cuda, not cpu" in row.reason
    base = cuda_row().to_dict()
    assert Row.from_dict({**base, "gpu_median_ms": 0.05, "gpu_time_method": "CUDA events"}).gpu_median_ms
    with pytest.raises(Exception, match="gpu_median_ms"):
        Row.from_dict({**base, "gpu_median_ms": -1.0})


@pytest.mark.slow
def test_the_device_script_plans_without_a_gpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "DRY_RUN": "1", "OUT": str(tmp_path)}
    out = subprocess.run(
        ["bash", str(ROOT / "bench/scripts/gpu_sweep.sh")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "harness: 18 subjects x precisions",
        "cuda: 288 configurations",
        "cuda-compiled: 18 configurations",
        "cuda-throughput: 16 configurations",
    ]


@needs_gpu
def test_compiled_rows_report_compile_time_apart():
    (row,) = measure(
        attention_configs(
            ["eaa"],
            [64],
            [[14, 14]],
            backends=["torch-compile"],
            devices=["cuda"],
            precisions=["fp16"],
            profile="quick",
        )
    )
    assert row.ok and row.details["compile_s"] > 0 and row.environment["gpu"]


def test_figures_count_the_same_macs_on_shapes_alone():
    """GPU and artifact rows count their FLOPs on the meta device (a 256x256 MHSA on the
    CPU took seconds per row); the count must be the one the CPU gives."""
    from mobattn.bench.api import model_configs
    from mobattn.bench.backends import subject_for_figures
    from mobattn.flops import count_macs

    configs = attention_configs(
        ["eaa", "external", "hilo", "mhsa", "separable", "ufo"], [32], [(14, 14)], backends=["onnxruntime"]
    ) + model_configs(["swiftformer_xs", "deit_tiny"], backends=["onnxruntime"])
    for config in configs:
        module, example = subject_for_figures(config)
        on_cpu = count_macs(module, example)
        assert on_cpu > 0 and count_macs(module.to("meta"), example.to("meta")) == on_cpu, config.label()


@pytest.mark.slow
def test_the_gpu_section_names_what_the_lease_did_not_measure(tmp_path):
    """The page's GPU section, from the committed rows: every planned mechanism without a
    row is named as not measured, every measured one has its exponents."""
    import json

    out = subprocess.run(
        [sys.executable, "bench/scripts/gpu_report.py", "--plots", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    measured = set()
    for name in ("cuda-run1.jsonl", "cuda-run2.jsonl"):
        for line in (ROOT / "results/benchmarks/gpu" / name).read_text().splitlines():
            row = json.loads(line)
            assert row["environment"]["gpu"] == "NVIDIA H200" and row["device"] == "cuda"
            measured.add(row["attention"] or row["model"])
    (not_measured,) = [line for line in out.stdout.splitlines() if line.startswith("Not measured")]
    for mechanism in PRESETS["cuda"].attentions:
        if mechanism in measured:
            assert f"| {mechanism} | 64 | fp16 |" in out.stdout
        else:
            assert f"{mechanism} (30)" in not_measured  # 2 dims x 5 sizes x 3 precisions
    assert (tmp_path / "gpu_vs_tokens.png").stat().st_size > 0


@needs_gpu
def test_graph_rows_carry_gpu_time_beside_wall_time():
    rows = measure(
        attention_configs(
            ["eaa"],
            [64],
            [[14, 14]],
            backends=["torch-cudagraph", "torch"],
            devices=["cuda"],
            precisions=["fp16"],
            profile="quick",
        )
    )
    graph, eager = rows
    assert graph.ok and eager.ok and graph.details["capture_s"] > 0
    assert graph.gpu_time_method == "CUDA events around each graph replay"
    assert eager.gpu_time_method == "CUDA events around each call"
    assert 0 < graph.gpu_median_ms <= graph.median_ms * 1.05
