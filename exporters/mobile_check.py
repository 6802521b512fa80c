"""onnxruntime's own verdict on an ONNX file for its mobile execution providers.

This is what ``python -m onnxruntime.tools.check_onnx_model_mobile_usability`` prints,
as a record: for NNAPI (Android) and Core ML's ML Program provider (iOS), how many
nodes the provider takes, in how many partitions, which op types it does not, and the
checker's suitability (YES / MAYBE / NO). Like the tool, it first optimizes the graph at
onnxruntime's basic level, which is what a mobile build runs.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .silence import quiet

MLPROGRAM_OPS = "coreml_supported_mlprogram_ops.md"  # the checker's table for Core ML's ML Program EP


def _verdict(info) -> dict:
    return {
        "nodes": info.num_nodes,
        "supported_nodes": info.num_supported_nodes,
        "partitions": info.num_partitions,
        "unsupported_ops": sorted(info.unsupported_ops),
        "unsupported_for_dynamic_shape": info.nodes_unsupported_due_to_dynamic_input,
        "unsupported_for_rank": sorted(info.ops_with_unsupported_rank),
        "suitability": info.suitability().name,
    }


def mobile_usability(path: Path) -> dict:
    """``{provider: verdict}`` for ``path`` (see module docstring); the verdict of a
    file the checker cannot read is ``{"error": "..."}``."""
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    logging.getLogger("usability_checker").setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet():
            optimized = Path(tmp) / path.name
            optimize_model(path, optimized, use_external_initializers=True)
            model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
            nnapi = checker.check_nnapi_partitions(model, require_fixed_input_sizes=True)
            coreml = checker.check_coreml_partitions(model, True, MLPROGRAM_OPS)
    except Exception as exc:  # the verdict is information about the file, never a failed export
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    return {"nnapi": _verdict(nnapi), "coreml_mlprogram": _verdict(coreml)}


def one_partition(verdict: dict) -> bool:
    """Every node on the provider, in a single partition."""
    return verdict.get("partitions") == 1 and verdict.get("supported_nodes") == verdict.get("nodes")
