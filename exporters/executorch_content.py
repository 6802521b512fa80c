"""What an ExecuTorch program holds, read from the file: the precision of the tensors
its XNNPACK delegates compute with (``bench FILE.pte`` records it; the artifact cache's
check compares it with what a row claims). The delegate's graph is a flatbuffer of its
own; ExecuTorch's flatc reads it with the schema ExecuTorch ships."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from mobattn.errors import MobattnError, first_line

from .silence import quiet, quiet_native_stderr

INSTALL_HINT = "ExecuTorch is not installed: pip install 'mobattn[executorch]' (or: pip install executorch)"

# XNNPACK's quantized value types (schema.fbs ``XNNDatatype``): any of them is int8 work
_QUANTIZED = re.compile(rb"xnn_datatype_q[a-z]*int8")
_HALF = b"xnn_datatype_fp16"


def file_precision(path: Path) -> str:
    """``int8`` when a delegate holds 8-bit quantized values, ``fp16`` when it holds
    half-precision ones, else ``fp32`` (never from metadata)."""
    try:
        with quiet(), quiet_native_stderr():
            from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError:
        raise MobattnError(INSTALL_HINT) from None
    try:
        program = deserialize_pte_binary(Path(path).read_bytes())
    except Exception as exc:  # noqa: BLE001 - an unreadable program is a corrupt artifact
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None
    program = getattr(program, "program", program)
    graphs = [_delegate_graph_json(program, d) for d in forward_plan(program).delegates]
    if any(_QUANTIZED.search(g) for g in graphs):
        return "int8"
    return "fp16" if any(_HALF in g for g in graphs) else "fp32"


def forward_plan(program):
    """The ``forward`` method's execution plan (a program also holds mobattn's metadata
    method, and the plans' order is the emitter's)."""
    plans = {plan.name: plan for plan in program.execution_plan}
    return plans.get("forward", program.execution_plan[0])


def _delegate_graph_json(program, delegate) -> bytes:
    """One XNNPACK delegate's graph as flatc's JSON (b"" for another backend's blob)."""
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as xnn
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    if delegate.id != "XnnpackBackend" or delegate.processed.location != 0:  # 0: inline
        return b""
    blob = program.backend_delegate_data[delegate.processed.index].data
    header = xnn.XNNHeader.from_bytes(blob[: xnn.XNNHeader.EXPECTED_LENGTH])
    graph = blob[header.flatbuffer_offset : header.flatbuffer_offset + header.flatbuffer_size]
    schema = Path(xnn.__file__).with_name("schema.fbs")
    with tempfile.TemporaryDirectory(prefix="mobattn-pte-") as folder:
        shutil.copy(schema, Path(folder) / "schema.fbs")
        (Path(folder) / "graph.bin").write_bytes(graph)
        _flatc_decompile(folder, str(Path(folder) / "schema.fbs"), str(Path(folder) / "graph.bin"))
        return (Path(folder) / "graph.json").read_bytes()
