"""Benchmarks: on-device-style latency and memory (batch 1, few threads), across
backends, threads, precisions and sizes; sweeps and their JSONL results.

    from mobattn.bench import measure, model_configs
    rows = measure(model_configs(["swiftformer_xs"], backends=["onnxruntime"]))
"""

from .api import attention_configs, file_configs, measure, measure_missing, model_configs
from .config import BACKENDS, BenchConfig
from .measurement import Measurement
from .row import Row
from .timer import TimingPolicy

__all__ = [
    "BACKENDS",
    "BenchConfig",
    "Measurement",
    "Row",
    "TimingPolicy",
    "attention_configs",
    "file_configs",
    "measure",
    "measure_missing",
    "model_configs",
]
