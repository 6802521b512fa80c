"""Single-stream timing: a first run (the cold-start figure), warm-up, then one run at a
time until both a minimum count and a minimum time are reached (or, for the adaptive
profile, until the median is known to +-1%)."""

from __future__ import annotations

import math
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
    # adaptive: stop once the median's 95% confidence interval is within +-ci_fraction
    ci_fraction: float | None = None

    @classmethod
    def named(cls, profile: str) -> TimingPolicy:
        """``default``: a few seconds a configuration. ``mlperf``: MLPerf single-stream's
        query count (90th percentile over at least 1024 queries). ``quick``: smoke runs.
        ``adaptive``: as many runs as the median needs to be known within +-1% (95%
        confidence), at least 10 runs and 0.2 s, as torch.utils.benchmark's
        ``adaptive_autorange`` stops when its estimate is tight."""
        profiles = {
            "default": cls(),
            "mlperf": cls(warmup_runs=50, min_runs=1024, min_seconds=10.0, max_seconds=600.0),
            "quick": cls(warmup_runs=2, warmup_seconds=0.0, min_runs=5, min_seconds=0.1, max_seconds=10.0),
            "adaptive": cls(min_runs=10, min_seconds=0.2, ci_fraction=0.01),
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
    start = time.perf_counter_ns()
    run()  # the first inference, timed on its own: the cold-start figure, and a warm-up run
    sync()
    first_run_ns = time.perf_counter_ns() - start
    warm, start = 1, time.perf_counter()
    while warm < policy.warmup_runs or time.perf_counter() - start < policy.warmup_seconds:
        run()
        warm += 1
        if time.perf_counter() - start >= policy.max_warmup_seconds:
            break
    sync()
    warmup_s = time.perf_counter() - start
    samples: list[int] = []
    begin = time.perf_counter_ns()
    while True:
        t0 = time.perf_counter_ns()
        run()
        sync()
        samples.append(time.perf_counter_ns() - t0)
        elapsed = (time.perf_counter_ns() - begin) / 1e9
        if _enough(samples, elapsed, policy):
            break
    return Measurement(
        tuple(samples), threads=threads, warmup_runs=warm, first_run_ns=first_run_ns, warmup_s=warmup_s
    )


def _enough(samples: list[int], elapsed: float, policy: TimingPolicy) -> bool:
    if elapsed >= policy.max_seconds or (policy.max_runs is not None and len(samples) >= policy.max_runs):
        return True
    if len(samples) < policy.min_runs or elapsed < policy.min_seconds:
        return False
    if policy.ci_fraction is None:
        return True
    # checking costs a sort: every 10th run is often enough
    return len(samples) % 10 == 0 and median_ci_fraction(samples) <= policy.ci_fraction


def median_ci_fraction(samples: list[int], z: float = 1.96) -> float:
    """Half the width of the median's 95% confidence interval, as a fraction of the
    median: distribution-free, from the order statistics ranked n/2 -+ z*sqrt(n)/2."""
    ordered = sorted(samples)
    n = len(ordered)
    low = max(0, math.floor(n / 2 - z * math.sqrt(n) / 2))
    high = min(n - 1, math.ceil(n / 2 + z * math.sqrt(n) / 2))
    median = ordered[n // 2]
    return (ordered[high] - ordered[low]) / 2 / median if median else math.inf
