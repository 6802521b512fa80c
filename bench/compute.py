"""The machine's matrix-multiply peak at a thread count, the yardstick for how close
to the hardware limit a mechanism runs."""

from __future__ import annotations

import functools
import time

import torch


@functools.cache
def matmul_peak_gflops(threads: int, device: str = "cpu", size: int = 1024, repeats: int = 20) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of a ``size``-square matmul at ``threads``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for _ in range(3):
            a @ b
        sync()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - t0)
        return 2 * size**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)
