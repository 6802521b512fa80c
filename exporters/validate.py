"""Agreement between an artifact's outputs and the torch module's."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Relative error allowed per float precision (max |a - b| / max |b|).
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
# Quantized outputs are judged by direction: a few logits move by a quantization step,
# which a max-relative bound would flag although the prediction is intact.
COSINE_FLOOR = {"int8": 0.99}


@dataclass
class Agreement:
    max_abs: float
    max_rel: float  # max |a - b| / max |b|
    cosine: float
    tolerance: float
    passed: bool
    inputs: int  # random inputs compared
    criterion: str = "max_rel"  # what ``tolerance`` bounds: max_rel (at most) or cosine (at least)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def compare(outputs: list[np.ndarray], references: list[np.ndarray], precision: str) -> Agreement:
    """Worst case over several (output, reference) pairs, judged for ``precision``."""
    max_abs = max_rel = 0.0
    cosine = 1.0
    for out, ref in zip(outputs, references, strict=True):
        out, ref = np.asarray(out, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
        diff = float(np.abs(out - ref).max())
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(float(np.abs(ref).max()), 1e-12))
        denom = float(np.linalg.norm(out) * np.linalg.norm(ref)) or 1.0
        cosine = min(cosine, float(out @ ref) / denom)
    if precision in COSINE_FLOOR:
        tolerance = COSINE_FLOOR[precision]
        passed = bool(np.isfinite(cosine) and cosine >= tolerance)
    else:
        tolerance = TOLERANCE[precision]
        passed = bool(np.isfinite(max_rel) and max_rel <= tolerance)
    return Agreement(
        max_abs,
        max_rel,
        cosine,
        tolerance,
        passed,
        len(outputs),
        criterion=("cosine" if precision in COSINE_FLOOR else "max_rel"),
    )
