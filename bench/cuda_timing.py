"""What a CUDA row adds to its wall latency: the GPU's own time per call, and the
CUDA-graph backend (the eager module captured as written, no compiler: the deployable
form of code that cannot be compiled).

A CUDA row's ``median_ms`` is the wall single-stream latency (one call, then a device
synchronize, timed with ``perf_counter``: what a caller waits); ``gpu_median_ms`` is the
GPU's time for the same call, measured by CUDA events recorded on the stream before and
after each call (``gpu_time_method`` says around what). On launch-bound work the two
differ by the host's launch cost, which is what a captured graph removes.
"""

from __future__ import annotations

import statistics
import time

import torch

GPU_TIMED_CALLS = 100  # calls timed by CUDA events after the wall timing


def gpu_time_ms(run, calls: int = GPU_TIMED_CALLS) -> float:
    """The median GPU time of ``run`` (CUDA events recorded before and after each call on
    the current stream; the host waits for each pair, so calls do not overlap)."""
    times = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def capture(module: torch.nn.Module, x: torch.Tensor, warmup: int = 3):
    """``module(x)`` captured in a CUDA graph: warm-up calls on a side stream (as
    ``torch.cuda.graphs`` requires), then one capture; the replay and the capture's
    seconds. ``x`` is the static input the graph reads."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(warmup):
            module(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    start = time.perf_counter()
    with torch.inference_mode(), torch.cuda.graph(graph):
        module(x)
    torch.cuda.synchronize()
    return graph.replay, time.perf_counter() - start
