"""Empirical complexity: fit latency ~ a * N^k over a token range."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .row import Row


@dataclass
class Fit:
    group: dict  # attention, dim, backend, threads...
    k: float  # exponent
    a: float  # ms at N = 1
    r2: float
    points: int
    tokens: tuple[int, int]  # range fitted


def fit_power_law(tokens, latency_ms) -> tuple[float, float, float]:
    """Least squares on log-log axes; returns (k, a, r^2)."""
    x, y = np.log(np.asarray(tokens, float)), np.log(np.asarray(latency_ms, float))
    k, log_a = np.polyfit(x, y, 1)
    predicted = k * x + log_a
    ss_res = float(((y - predicted) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1.0
    return float(k), float(np.exp(log_a)), 1.0 - ss_res / ss_tot


GROUP_KEYS = ("attention", "dim", "backend", "device", "threads", "precision", "machine")


def fit_exponents(rows: list[Row], min_points: int = 3) -> list[Fit]:
    """One fit per mechanism and setting, over its ``ok`` bare-attention rows."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        if row.status == "ok" and row.kind == "attention" and row.tokens:
            groups[tuple(getattr(row, k) for k in GROUP_KEYS)].append(row)
    fits = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        by_tokens = {r.tokens: r.median_ms for r in members}
        if len(by_tokens) < min_points:
            continue
        tokens = sorted(by_tokens)
        k, a, r2 = fit_power_law(tokens, [by_tokens[t] for t in tokens])
        fits.append(
            Fit(dict(zip(GROUP_KEYS, key, strict=True)), k, a, r2, len(tokens), (tokens[0], tokens[-1]))
        )
    return fits


FIT_COLUMNS = ["attention", "dim", "backend", "threads", "machine", "k", "r²", "tokens", "points"]


def fit_cells(fit: Fit) -> list[str]:
    """One table row for a fit, in FIT_COLUMNS order."""
    g = fit.group
    return [
        g["attention"],
        str(g["dim"]),
        f"{g['backend']}/{g['device']}",
        str(g["threads"]),
        g["machine"],
        f"{fit.k:.2f}",
        f"{fit.r2:.3f}",
        f"{fit.tokens[0]}–{fit.tokens[1]}",
        str(fit.points),
    ]
