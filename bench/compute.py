"""The machine's matrix-multiply peak at a thread count, the yardstick for how close
to the hardware limit a mechanism runs.

The peak is the best fp32 GEMM rate that the runtimes mobattn times reach on this
machine, torch's and onnxruntime's MLAS (which runs about twice torch's on some CPUs):
a yardstick lower than one of the runtimes would report "of peak" above 100%.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np

SIZE, REPEATS = 1024, 20


def _best_gflops(run: Callable[[], object], sync: Callable[[], None], size: int, repeats: int) -> float:
    for _ in range(3):
        run()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def torch_matmul_gflops(threads: int, device: str = "cpu", size: int = SIZE, repeats: int = REPEATS) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of a ``size``-square matmul in torch."""
    import torch  # here, not above: a cached peak (the usual case) imports no torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        return _best_gflops(lambda: a @ b, sync, size, repeats)
    finally:
        torch.set_num_threads(previous)


def onnxruntime_matmul_gflops(threads: int, size: int = SIZE, repeats: int = REPEATS) -> float:
    """The same matmul as a one-node ONNX graph in onnxruntime's CPU provider."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17 needs IR 8; any onnxruntime reads it
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {n: np.random.default_rng(0).standard_normal((size, size)).astype(np.float32) for n in ("a", "b")}
    return _best_gflops(lambda: session.run(None, feed), lambda: None, size, repeats)


@functools.cache
def matmul_peak_gflops(threads: int, device: str = "cpu") -> float:
    """The best of torch's and (on CPU) onnxruntime's fp32 matmul rates at ``threads``."""
    rates = [torch_matmul_gflops(threads, device)]
    if device == "cpu":
        try:
            rates.append(onnxruntime_matmul_gflops(threads))
        except ImportError:  # a torch-only install (the GPU machine's): torch's rate alone
            pass
    return max(rates)


MACHINE_FACTS = "machine-facts.json"  # in the artifact cache's folder


def machine_peak_gflops(threads: int, device: str = "cpu", cached: bool = True) -> float:
    """:func:`matmul_peak_gflops`, measured once per machine: kept in the cache folder
    under the machine and libraries it was measured with (CPU model, cores, GPU, torch and
    onnxruntime versions), so a sweep of one configuration does not spend 1-2 s on it.
    ``cached=False`` (``--no-cache``) measures it again and keeps the new figure."""
    from mobattn.environment import environment

    from .cache import cache_root

    env = environment()
    keys = ("cpu", "cores", "gpu", "torch", "onnxruntime")
    key = "|".join(str(env.get(k)) for k in keys) + f"|{device}|{threads}"
    path = cache_root() / MACHINE_FACTS
    facts = read_facts(path)
    if cached and isinstance(facts.get(key), int | float) and facts[key] > 0:
        return float(facts[key])
    peak = matmul_peak_gflops(threads, device)
    write_facts(path, {**facts, key: peak})
    return peak


def read_facts(path) -> dict:
    import json

    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def write_facts(path, facts: dict) -> None:
    """Replaced in one rename (:func:`mobattn.exporters.files.staged`); a concurrent writer
    may drop the other's figure (it is measured again next time), never leave a torn file.
    A cache folder that cannot be written only costs the next run a measurement."""
    import contextlib
    import json

    from mobattn.errors import MobattnError
    from mobattn.exporters.files import staged

    with contextlib.suppress(OSError, MobattnError), staged(path, force=True) as tmp:
        tmp.write_text(json.dumps(facts, indent=1))
