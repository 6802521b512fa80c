"""An independent harness for mobattn's CUDA rows (issue 40): the same subjects timed
without mobattn's timer, workers or backends, so a row's figures can be checked against
it on the same machine minutes apart.

Per subject and precision it records
- ``eager_wall_ms``: the median of CALLS calls, each ``module(x)`` then
  ``torch.cuda.synchronize()``, timed with ``perf_counter`` -- under ``torch.inference_mode``
  (as mobattn calls it) and, as ``eager_wall_grad_ms``, without it (autograd's bookkeeping is
  host work, so on launch-bound sizes the two differ: a candidate for the 0.55-0.75x gap);
- ``graph_gpu_ms``: the eager module captured in a CUDA graph, each replay timed by CUDA
  events (the GPU's own time), and ``graph_wall_ms``, replay then synchronize by the clock.

    python bench/scripts/gpu_harness.py --out results/gpu/harness.jsonl     # on the GPU machine
    python bench/scripts/gpu_harness.py --dry-run                           # here: the plan
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

# (kind, name, dim or resolution, grid side): the table of subjects
SUBJECTS = [
    ("attention", "eaa", 64, 56),
    ("attention", "hilo", 64, 56),
    ("attention", "mhsa", 64, 56),
    ("attention", "ufo", 64, 56),
    ("attention", "separable", 64, 56),
    ("attention", "external", 64, 128),
    ("model", "deit_tiny", 224, None),
    ("model", "mobilevit_xs", 256, None),
    ("model", "swiftformer_s", 224, None),
]
PRECISIONS = ("fp16", "fp32")
CALLS = 200


def build(kind: str, name: str, size: int, side: int | None, dtype):
    import torch

    import mobattn

    if kind == "attention":
        module = mobattn.create_attention(name, size, **_heads(name, size))
        hw = (side, side)
        x = torch.randn(1, side * side, size)

        class Bound(torch.nn.Module):  # forward(x) with the grid bound, as mobattn's subject does
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, tokens):
                return self.inner(tokens, hw)

        module = Bound()
    else:
        module = mobattn.create_model(name)
        x = torch.randn(1, 3, size, size)
    return module.eval().to("cuda", dtype), x.to("cuda", dtype)


def _heads(name: str, dim: int) -> dict:
    from mobattn.describe import default_attention_kwargs

    return default_attention_kwargs(name, dim, None)


def wall_ms(run, calls: int = CALLS) -> float:
    import torch

    for _ in range(10):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(kind, name, size, side, precision) -> dict:
    import torch

    from mobattn.bench.cuda_timing import capture, gpu_time_ms

    dtype = {"fp16": torch.float16, "fp32": torch.float32}[precision]
    module, x = build(kind, name, size, side, dtype)
    with torch.inference_mode():
        eager = wall_ms(lambda: module(x))
    grad = wall_ms(lambda: module(x))  # autograd on: what a harness without inference_mode times
    replay, capture_s = capture(module, x)
    return {
        "kind": kind,
        "subject": name,
        "size": size,
        "grid": side,
        "precision": precision,
        "eager_wall_ms": eager,
        "eager_wall_grad_ms": grad,
        "graph_wall_ms": wall_ms(replay),
        "graph_gpu_ms": gpu_time_ms(replay, CALLS),
        "capture_s": capture_s,
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSONL file the records are appended to")
    parser.add_argument("--dry-run", action="store_true", help="list the subjects, measure nothing")
    args = parser.parse_args()
    plan = [(s, p) for s in SUBJECTS for p in PRECISIONS]
    if args.dry_run:
        print(f"harness: {len(plan)} subjects x precisions")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here", file=sys.stderr)
        return 1
    for (kind, name, size, side), precision in plan:
        record = measure(kind, name, size, side, precision)
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
