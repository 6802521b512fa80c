"""A measured figure beside the machine's fingerprint: the fp32 matmul rate of one thread
(torch, 512x512), with its spread. Two hosts behind one CPU label differ here when their
fingerprints cannot tell them apart (two clones of one image, a noisy neighbour, another
power state), so its band is part of every row's identity (:data:`.row.ENV_KEYS`).

Bands are CALIBRATION_BAND_RATIO wide on a log scale: two calibrations more than that
ratio apart are never one machine; two closer may still fall into neighbouring bands and
be kept apart (a split is safe, a merge of two machines is not). The figure is measured
once per machine and kept in the cache folder's machine facts, so every run on one machine
carries the same band (``mobattn machines`` shows it; delete the machine facts file to
measure it again).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import statistics
import time
from collections.abc import Iterator

from mobattn.environment import environment, use_environment

SIZE, ROUNDS, PER_ROUND = 512, 7, 5
CALIBRATION_BAND_RATIO = 1.25
FACTS_KEY = "calibration"


def measure_calibration() -> dict:
    """The median of ROUNDS best-of-PER_ROUND rates of a SIZE-square fp32 matmul on one
    thread, and the rounds' spread ((max - min) / median)."""
    import torch  # here: a cached calibration (the usual case) imports no torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
        for _ in range(3):
            a @ b
        rates = []
        for _ in range(ROUNDS):
            best = float("inf")
            for _ in range(PER_ROUND):
                start = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - start)
            rates.append(2 * SIZE**3 / best / 1e9)
    finally:
        torch.set_num_threads(previous)
    median = statistics.median(rates)
    return {
        "calibration_gflops": round(median, 2),
        "calibration_spread": round((max(rates) - min(rates)) / median, 4),
        "calibration_band": band_of(median),
    }


def band_of(gflops: float) -> int:
    return round(math.log(gflops) / math.log(CALIBRATION_BAND_RATIO))


def calibration() -> dict:
    """This machine's calibration: measured once per fingerprint and torch version and
    kept in the cache folder's machine facts, under a lock, so that every process on one
    machine (two fleet nodes starting together) carries the same figure and band."""
    from .cache import cache_root
    from .compute import MACHINE_FACTS, read_facts, write_facts

    env = environment()
    key = f"{FACTS_KEY}|{env.get('fingerprint')}|{env.get('torch')}"
    path = cache_root() / MACHINE_FACTS
    with _facts_lock(path):
        known = read_facts(path).get(key)
        if isinstance(known, dict) and isinstance(known.get("calibration_gflops"), int | float):
            return known
        measured = measure_calibration()
        write_facts(path, {**read_facts(path), key: measured})
    return measured


@contextlib.contextmanager
def _facts_lock(path) -> Iterator[None]:
    """An exclusive lock beside the machine facts (none where the folder cannot be made:
    then each process measures for itself)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(".machine-facts.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def calibrated_environment() -> dict:
    """The environment rows of this run carry: the machine facts with its calibration
    (read or measured once per process, then handed to every worker)."""
    env = environment()
    if "calibration_band" not in env:
        use_environment({**env, **calibration()})
    return environment()
