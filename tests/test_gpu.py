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


def test_gpu_presets_span_the_issue_and_stay_small():
    cuda = PRESETS["cuda"]
    assert set(cuda.attentions) == {"eaa", "external", "hilo", "mhsa", "separable", "ufo"}
    assert max(h * w for h, w in cuda.hws) == 256 * 256 and cuda.precisions == ["fp32", "fp16", "bf16"]
    assert {c.resolution[0] for c in cuda.configs() if c.kind == "model"} == {224, 512, 1024}
    compiled = {c.backend for c in PRESETS["cuda-compiled"].configs()}
    assert compiled == {"torch", "torch-compile", "torch-cudagraphs"}
    assert {c.batch for c in PRESETS["cuda-throughput"].configs()} == {1, 8, 32, 128}


@pytest.mark.slow
def test_the_device_script_plans_without_a_gpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "DRY_RUN": "1", "OUT": str(tmp_path)}
    out = subprocess.run(
        ["bash", str(ROOT / "bench/scripts/gpu_sweep.sh")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "cuda: 240 configurations",
        "cuda-compiled: 21 configurations",
        "cuda-throughput: 8 configurations",
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
