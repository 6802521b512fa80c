"""Benchmarks: on-device-style latency and memory (batch 1, few threads), across
backends, threads, precisions and sizes; sweeps and their JSONL results.

    from mobattn.bench import measure, model_configs
    rows = measure(model_configs(["swiftformer_xs"], backends=["onnxruntime"]))

The names below are imported on first use (PEP 562), so the command line can read the
tables without importing torch.
"""

from mobattn.lazy import lazy_getattr

# public name -> the module that defines it
_EXPORTS = {
    "attention_configs": "mobattn.bench.api",
    "file_configs": "mobattn.bench.api",
    "measure": "mobattn.bench.api",
    "measure_missing": "mobattn.bench.api",
    "model_configs": "mobattn.bench.api",
    "BACKENDS": "mobattn.bench.config",
    "BenchConfig": "mobattn.bench.config",
    "Measurement": "mobattn.bench.measurement",
    "Row": "mobattn.bench.row",
    "TimingPolicy": "mobattn.bench.timer",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
