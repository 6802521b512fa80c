"""The cross-runtime view of per-op profiles: op types of every runtime fall in one set of
categories, and a difference between timed medians is attributed to them."""

from __future__ import annotations

import pytest

from mobattn.bench.op_compare import category_of, compare, comparisons, worst
from mobattn.bench.row import Row


def _row(backend: str, median: float, ops: dict[str, float], hw=(28, 28), attention="hilo") -> Row:
    total = sum(ops.values())
    profile = {
        "runtime": backend,
        "inferences": 20,
        "op_ms": total,
        "by_op_type": [{"op_type": t, "ms": ms, "share": ms / total} for t, ms in ops.items()],
        "by_node": [],
    }
    return Row(
        kind="attention",
        attention=attention,
        dim=64,
        hw=list(hw),
        backend=backend,
        status="ok",
        median_ms=median,
        details={"op_profile": profile},
    )


@pytest.mark.parametrize(
    ("op_type", "category"),
    [
        ("FusedMatMul", "matmul"),
        ("Batch Matrix Multiply (NC, F32) GEMM", "matmul"),
        ("BATCH_MATMUL", "matmul"),
        ("Multiply (ND)", "elementwise"),
        ("Convert (NC)", "quantize"),
        ("Conv", "convolution"),
        ("Expand", "layout"),
        ("Exp", "elementwise"),
        ("Max Pooling (NHWC, F32)", "pooling"),
        ("Static Reshape (NC)", "layout"),
        ("GELU", "activation"),
        ("LayerNormalization", "normalisation"),
        ("NoSuchKernel", "other"),
    ],
)
def test_every_runtimes_op_names_fall_in_one_category(op_type, category):
    assert category_of(op_type) == category


def test_a_difference_between_runtimes_is_attributed_to_categories():
    ort = _row("onnxruntime", 2.0, {"MatMul": 1.0, "Softmax": 0.5, "Transpose": 0.5})
    # LiteRT's profile covers half its median more than it ran: scaled pro rata to 3.0
    litert = _row("litert", 3.0, {"Batch Matrix Multiply (NC, F32) GEMM": 1.0, "Slice (ND, X32)": 1.0})
    comparison = compare([litert, ort])
    assert comparison.runtimes == ("onnxruntime", "litert")  # the reference first
    assert comparison.ratio("litert") == pytest.approx(1.5)
    for runtime in comparison.runtimes:  # every column sums to its timed median
        total = sum(comparison.cell(runtime, c) for c in comparison.categories())
        assert total == pytest.approx(comparison.timed_ms[runtime])
    assert comparison.cell("litert", "layout") == pytest.approx(1.5)
    assert comparison.cell("litert", "softmax") == 0.0
    columns, body = comparison.table()
    assert columns[-1] == "litert - onnxruntime"
    layout = next(line for line in body if line[0] == "layout")
    assert layout[-1] == "+1.000"  # 1.5 against onnxruntime's 0.5
    assert body[-1] == ["timed median", "2.000", "3.000", "1.50x"]


def test_comparisons_group_by_subject_and_rank_the_worst():
    rows = [
        _row("onnxruntime", 1.0, {"MatMul": 1.0}),
        _row("litert", 1.2, {"Fully Connected (NC, F32) GEMM": 1.0}),
        _row("onnxruntime", 1.0, {"MatMul": 1.0}, hw=(56, 56)),
        _row("executorch", 2.0, {"Fully Connected (NC, F32) GEMM": 1.0}, hw=(56, 56)),
        _row("onnxruntime", 1.0, {"MatMul": 1.0}, attention="mhsa"),  # one runtime only: no comparison
    ]
    found = comparisons(rows)
    assert [c.runtimes for c in found] == [("onnxruntime", "litert"), ("onnxruntime", "executorch")]
    assert worst(rows, 1)[0].ratio("executorch") == pytest.approx(2.0)
    unprofiled = Row(kind="attention", attention="eaa", dim=64, hw=[7, 7], backend="litert", status="ok")
    assert compare([unprofiled, rows[0]]) is None
