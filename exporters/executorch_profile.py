"""Where the time goes inside ExecuTorch: its event tracer (ETDump), recorded by the
runtime itself and read with its devtools Inspector, summed per op type and per node in
the same table as onnxruntime's (``mobattn bench --op-profile``). XNNPACK's delegate
reports each of its operators as an event ("Fully Connected (NC, F32) GEMM #2": op type
and its number); ops left on ExecuTorch's portable kernels appear under their own names."""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from mobattn.errors import first_line

from .onnx_profile import TOP
from .silence import quiet, quiet_native_stderr

_NUMBERED = re.compile(r"\s+#\d+$")
# events that enclose others (a method's run, a whole call into the delegate): counting
# them too would count the ops inside them twice
_ENCLOSING = ("Method::", "Program::", "DELEGATE_CALL")


def executorch_op_profile(path: Path, x: torch.Tensor, runs: int = 20) -> dict:
    """Per op type and per node (top 20): mean milliseconds per inference and share of the
    traced time, over ``runs`` inferences of a second, traced load of ``path``."""
    try:
        from executorch.devtools import Inspector
        from executorch.extension.pybindings import portable_lib

        with quiet_native_stderr():
            module = portable_lib._load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
            for _ in range(runs):
                module.forward([x])
        with tempfile.TemporaryDirectory(prefix="mobattn-etdump-") as folder:
            etdump = Path(folder) / "run.etdp"
            module.write_etdump_result_to_file(str(etdump))
            with quiet():
                frame = Inspector(etdump_path=str(etdump)).to_dataframe()
    except Exception as exc:  # noqa: BLE001 - a runtime built without its event tracer, say
        return {
            "unavailable": f"ExecuTorch's event tracer (ETDump) could not profile this run: {first_line(exc)}"
        }
    events = [
        (str(name), float(sum(raw)))
        for block, name, raw in zip(frame["event_block_name"], frame["event_name"], frame["raw"], strict=True)
        if block != "Default" and raw is not None and not str(name).startswith(_ENCLOSING)
    ]
    return summarise(events, runs)


def summarise(events: list[tuple[str, float]], runs: int) -> dict:
    """(node, total ms) events summed by node and by op type (the node's name without its
    number)."""
    per_node: dict[str, float] = defaultdict(float)
    for name, ms in events:
        per_node[name] += ms
    total = sum(per_node.values()) or 1.0
    per_type: dict[str, float] = defaultdict(float)
    for name, ms in per_node.items():
        per_type[_NUMBERED.sub("", name)] += ms
    inferences = max(runs, 1)
    return {
        "runtime": "ExecuTorch ETDump (Inspector)",
        "inferences": inferences,
        "op_ms": sum(per_node.values()) / inferences,
        "by_op_type": [
            {"op_type": op, "ms": ms / inferences, "share": ms / total}
            for op, ms in sorted(per_type.items(), key=lambda kv: -kv[1])[:TOP]
        ],
        "by_node": [
            {"node": name, "op_type": _NUMBERED.sub("", name), "ms": ms / inferences, "share": ms / total}
            for name, ms in sorted(per_node.items(), key=lambda kv: -kv[1])[:TOP]
        ],
    }
