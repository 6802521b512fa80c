"""Benchmarks: on-device-style latency and memory (batch 1, few threads), across
backends, threads, precisions and sizes; sweeps and their JSONL results.

    from mobattn.bench import measure, model_configs
    rows = measure(model_configs(["swiftformer_xs"], backends=["onnxruntime"]))

The names below are imported on first use (PEP 562), so the command line can read the
tables without importing torch.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mobattn.bench' has no attribute {name!r}")
