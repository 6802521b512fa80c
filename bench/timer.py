"""Single-stream timing: warm-up, then one run at a time until both a minimum count
and a minimum time are reached."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mobattn.errors import MobattnError

from .measurement import Measurement


@dataclass(frozen=True)
class TimingPolicy:
    warmup_runs: int = 10
    warmup_seconds: float = 0.5
    min_runs: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 30.0  # stop here even if min_runs is not reached (slow configurations)
    max_warmup_seconds: float = 10.0  # a multi-second run needs no ten warm-up runs
    max_runs: int | None = None  # --runs N: exactly N timed runs

    @classmethod
    def named(cls, profile: str) -> TimingPolicy:
        """``default``: a few seconds a configuration. ``mlperf``: MLPerf single-stream's
        query count (90th percentile over at least 1024 queries). ``quick``: smoke runs."""
        profiles = {
            "default": cls(),
            "mlperf": cls(warmup_runs=50, min_runs=1024, min_seconds=10.0, max_seconds=600.0),
            "quick": cls(warmup_runs=2, warmup_seconds=0.0, min_runs=5, min_seconds=0.1, max_seconds=10.0),
        }
        name, *overrides = profile.split(",")
        policy = profiles[name]
        for override in overrides:
            key, _, value = override.partition("=")
            if key not in ("runs", "warmup") or not value.isdigit() or int(value) < (key == "runs"):
                raise MobattnError(f"profile override must be runs=N (N >= 1) or warmup=N, got '{override}'")
            if key == "runs":
                policy = replace(
                    policy, min_runs=int(value), max_runs=int(value), min_seconds=0.0, max_seconds=3600.0
                )
            else:
                policy = replace(
                    policy, warmup_runs=int(value), warmup_seconds=0.0, max_warmup_seconds=3600.0
                )
        return policy


def measure(
    run: Callable[[], object], threads: int, policy: TimingPolicy, sync: Callable[[], None] | None = None
):
    """Time ``run`` one call at a time with ``perf_counter_ns``; ``sync`` (CUDA) is
    called before reading the clock so asynchronous work is counted."""
    sync = sync or (lambda: None)
    warm, start = 0, time.perf_counter()
    while warm < policy.warmup_runs or time.perf_counter() - start < policy.warmup_seconds:
        run()
        warm += 1
        if time.perf_counter() - start >= policy.max_warmup_seconds:
            break
    sync()
    samples: list[int] = []
    begin = time.perf_counter_ns()
    while True:
        t0 = time.perf_counter_ns()
        run()
        sync()
        samples.append(time.perf_counter_ns() - t0)
        elapsed = (time.perf_counter_ns() - begin) / 1e9
        if (
            (len(samples) >= policy.min_runs and elapsed >= policy.min_seconds)
            or elapsed >= policy.max_seconds
            or (policy.max_runs is not None and len(samples) >= policy.max_runs)
        ):
            break
    return Measurement(tuple(samples), threads=threads, warmup_runs=warm)
