"""Why one runtime is slower, op by op: one subject's per-op profiles from several runtimes
(``bench --op-profile``, or a sweep with ``op_profile``) side by side, by op category.

onnxruntime names its kernels after ONNX ops ("FusedMatMul"), ExecuTorch and LiteRT after
XNNPACK's operators ("Batch Matrix Multiply (NC, F32) GEMM") or their builtins
("BATCH_MATMUL"), so op types are gathered into categories (:data:`CATEGORIES`) that every
runtime's names fall into. A profiler adds its own cost per op (onnxruntime's most: its
ops can sum to more than the unprofiled median), so each runtime's categories are scaled
pro rata to its timed median: a column sums to the timed median, and the difference
between two runtimes' medians is attributed to categories. The unscaled coverage (profiled
ops / timed median) is shown beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .row import Row

REFERENCE = "onnxruntime"
SCALED = (
    "ms per inference from each runtime's own profiler, scaled pro rata so a column sums to its timed "
    "median (profiling adds its own cost per op): a difference between runtimes is attributed to op "
    "categories; 'profiled ops / timed' is the unscaled coverage"
)
# (category, op-type prefixes): an op type, lower-cased and stripped of everything but
# letters and digits up to its first "(", falls in the category of the longest prefix it
# starts with ("convert" is not "conv", "expand" is not "exp", "maxpool" is not "max")
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "matmul",
        ("matmul", "fusedmatmul", "gemm", "fullyconnected", "batchmatrixmultiply", "batchmatmul")
        + ("qlinearmatmul", "dynamicquantizematmul", "qgemm"),
    ),
    (
        "quantize",
        ("convert", "quantizelinear", "dequantizelinear", "dynamicquantizelinear", "quantize", "dequantize"),
    ),
    ("convolution", ("conv", "depthwiseconv", "qlinearconv", "deconvolution", "transposeconv")),
    ("softmax", ("softmax", "logsoftmax")),
    (
        "normalisation",
        ("layernorm", "simplifiedlayernorm", "skiplayernorm", "batchnorm", "groupnorm", "rmsnorm"),
    ),
    ("pooling", ("averagepool", "globalaveragepool", "maxpool", "globalmaxpool", "l2pool")),
    ("reduction", ("reduce", "mean", "sum", "rsum", "rmax")),
    (
        "activation",
        ("gelu", "fastgelu", "biasgelu", "quickgelu", "erf", "relu", "leakyrelu", "sigmoid", "tanh")
        + ("hardswish", "hswish", "hardsigmoid", "elu", "swish", "clamp", "clip"),
    ),
    (
        "elementwise",
        ("add", "sub", "mul", "div", "sqrt", "rsqrt", "reciprocal", "pow", "square", "abs", "neg", "exp")
        + ("log", "max", "min", "where", "select", "greater", "less", "equal", "not", "and", "or", "bias"),
    ),
    (
        "layout",
        ("transpose", "reshape", "staticreshape", "slice", "stridedslice", "copy", "concat", "split")
        + ("evensplit", "squeeze", "unsqueeze", "reorder", "gather", "expand", "flatten", "pad")
        + ("constantpad", "tile", "depthtospace", "spacetodepth", "resize", "shape", "identity", "cast")
        + ("pack", "unpack", "memcpy", "broadcast"),
    ),
)
OTHER = "other"


def category_of(op_type: str) -> str:
    """The category an op type of any runtime falls in (:data:`CATEGORIES`), else "other"."""
    key = re.sub(r"[^a-z0-9]", "", op_type.split("(")[0].lower())
    matches = [(len(p), category) for category, prefixes in CATEGORIES for p in prefixes if key.startswith(p)]
    return max(matches)[1] if matches else OTHER


@dataclass(frozen=True)
class OpComparison:
    """One subject on several runtimes: milliseconds per inference by op category."""

    subject: str
    runtimes: tuple[str, ...]  # the reference (onnxruntime where present) first
    by_category: dict[str, dict[str, float]]  # runtime -> category -> profiled ms
    op_ms: dict[str, float]  # runtime -> the profiled ops' sum per inference
    timed_ms: dict[str, float]  # runtime -> timed median
    noisy: bool  # a row of it was flagged noisy

    @property
    def reference(self) -> str:
        return self.runtimes[0]

    def ratio(self, runtime: str) -> float:
        return self.timed_ms[runtime] / self.timed_ms[self.reference]

    def categories(self) -> list[str]:
        """Every category any runtime spent time in, the most expensive first."""
        spent: dict[str, float] = {}
        for column in self.by_category.values():
            for category, ms in column.items():
                spent[category] = max(spent.get(category, 0.0), ms)
        return sorted(spent, key=lambda c: -spent[c])

    def cell(self, runtime: str, category: str) -> float:
        """A category's profiled ms, scaled pro rata so the runtime's column sums to its
        timed median."""
        scale = self.timed_ms[runtime] / self.op_ms[runtime] if self.op_ms[runtime] > 0 else 0.0
        return self.by_category[runtime].get(category, 0.0) * scale

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows: ms per runtime, then each runtime's difference from the
        reference per category; then each profile's coverage, and the timed medians and
        their ratios."""
        others = self.runtimes[1:]
        columns = ["op category", *(f"{r} ms" for r in self.runtimes)]
        columns += [f"{r} - {self.reference}" for r in others]
        body = []
        for category in self.categories():
            cells = [self.cell(r, category) for r in self.runtimes]
            diffs = [self.cell(r, category) - cells[0] for r in others]
            body.append([category, *(f"{c:.3f}" for c in cells), *(f"{d:+.3f}" for d in diffs)])
        coverage = [f"{self.op_ms[r] / self.timed_ms[r]:.0%}" for r in self.runtimes]
        body.append(["profiled ops / timed", *coverage, *("" for _ in others)])
        flag = " ~" if self.noisy else ""
        timed = [f"{self.timed_ms[r]:.3f}{flag}" for r in self.runtimes]
        body.append(["timed median", *timed, *(f"{self.ratio(r):.2f}x" for r in others)])
        return columns, body


def compare(rows: list[Row]) -> OpComparison | None:
    """The rows of one subject and setting, one per runtime, each with a per-op profile;
    None when fewer than two have one."""
    profiled = [r for r in rows if r.ok and _profile(r)]
    if len({r.backend for r in profiled}) < 2:
        return None
    profiled.sort(key=lambda r: (r.backend != REFERENCE, r.backend))
    by_category, op_ms = {}, {}
    for row in profiled:
        profile = _profile(row)
        column: dict[str, float] = {}
        for entry in profile["by_op_type"]:
            category = category_of(entry["op_type"])
            column[category] = column.get(category, 0.0) + entry["ms"]
        beyond = profile["op_ms"] - sum(column.values())  # types beyond the top 20
        if beyond > 1e-9:
            column[OTHER] = column.get(OTHER, 0.0) + beyond
        by_category[row.backend] = column
        op_ms[row.backend] = profile["op_ms"]
    return OpComparison(
        subject=_describe(profiled[0]),
        runtimes=tuple(r.backend for r in profiled),
        by_category=by_category,
        op_ms=op_ms,
        timed_ms={r.backend: r.median_ms for r in profiled},
        noisy=any(r.noisy for r in profiled),
    )


def comparisons(rows: list[Row]) -> list[OpComparison]:
    """Every subject and setting measured on two runtimes or more with per-op profiles,
    in the order of first appearance."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.ok and _profile(row):
            groups.setdefault(_setting(row), []).append(row)
    found = [compare(group) for group in groups.values()]
    return [c for c in found if c is not None]


def worst(rows: list[Row], count: int = 3) -> list[OpComparison]:
    """The ``count`` comparisons whose slowest runtime is furthest behind the reference."""
    return sorted(comparisons(rows), key=lambda c: -max(c.ratio(r) for r in c.runtimes[1:]))[:count]


def _profile(row: Row) -> dict | None:
    profile = row.details.get("op_profile")
    return profile if isinstance(profile, dict) and "op_ms" in profile and profile.get("by_op_type") else None


def _setting(row: Row) -> tuple:
    size = row.hw or row.resolution or row.details.get("input_shape")
    return (row.kind, row.subject_label, str(size), row.threads, row.precision, row.device, row.machine)


def _describe(row: Row) -> str:
    if row.kind == "attention":
        size = f"{row.hw[0]}x{row.hw[1]} tokens"
    else:
        size = "x".join(map(str, row.resolution or row.details.get("input_shape") or [])) or "?"
    return f"{row.subject_label}, {size}, {row.precision}, {row.threads} thread(s), {row.machine}"
