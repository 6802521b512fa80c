"""Benchmarks: on-device-style latency and memory (batch 1, few threads), across
backends, threads and sizes; sweeps and their JSONL results."""

from .config import BenchConfig
from .measurement import Measurement
from .timer import TimingPolicy

__all__ = ["BenchConfig", "Measurement", "TimingPolicy"]
