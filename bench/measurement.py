"""A Measurement owns its raw samples and derives every statistic from them, in the
manner of ``torch.utils.benchmark.Measurement``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISY_IQR_FRACTION = 0.1


@dataclass(frozen=True)
class Measurement:
    """Per-run wall times of one configuration, in nanoseconds."""

    samples_ns: tuple[int, ...]
    threads: int
    warmup_runs: int = 0  # including the first run
    first_run_ns: int | None = None  # the first inference after loading, before warm-up
    warmup_s: float | None = None  # the warm-up after the first run

    def __post_init__(self):
        if not self.samples_ns:
            raise ValueError("a Measurement needs at least one sample")

    @property
    def _ms(self) -> np.ndarray:
        return np.asarray(self.samples_ns, dtype=np.float64) / 1e6

    @property
    def iterations(self) -> int:
        return len(self.samples_ns)

    @property
    def median_ms(self) -> float:
        return float(np.median(self._ms))

    @property
    def mean_ms(self) -> float:
        return float(self._ms.mean())

    @property
    def std_ms(self) -> float:
        """Sample standard deviation (ddof=1); 0 for a single sample."""
        return float(self._ms.std(ddof=1)) if self.iterations > 1 else 0.0

    @property
    def min_ms(self) -> float:
        return float(self._ms.min())

    @property
    def max_ms(self) -> float:
        return float(self._ms.max())

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile by the nearest-rank rule (numpy's ``inverted_cdf``): a
        latency some run really took."""
        return float(np.percentile(self._ms, q, method="inverted_cdf"))

    @property
    def p90_ms(self) -> float:
        return self.percentile_ms(90)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def cv(self) -> float:
        """Coefficient of variation: std / mean."""
        return self.std_ms / self.mean_ms if self.mean_ms else 0.0

    @property
    def iqr_ms(self) -> float:
        """Interquartile range, the spread torch.utils.benchmark judges noise by."""
        q1, q3 = np.percentile(self._ms, [25, 75])
        return float(q3 - q1)

    @property
    def noisy(self) -> bool:
        """True when the IQR exceeds 10% of the median (torch.utils.benchmark's
        ``Measurement`` warns at the same threshold): the row is flagged, not hidden."""
        return self.iqr_ms > NOISY_IQR_FRACTION * self.median_ms

    def statistics(self) -> dict:
        return {
            "median_ms": self.median_ms,
            "mean_ms": self.mean_ms,
            "std_ms": self.std_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "cv": self.cv,
            "iqr_ms": self.iqr_ms,
            "noisy": self.noisy,
            "iterations": self.iterations,
            "warmup_runs": self.warmup_runs,
        }
