"""Agreement between an artifact's outputs and the torch module's."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Relative error allowed per precision (max |a - b| / max |b|).
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 1e-1}


@dataclass
class Agreement:
    max_abs: float
    max_rel: float  # max |a - b| / max |b|
    cosine: float
    tolerance: float
    passed: bool
    inputs: int  # random inputs compared
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def compare(outputs: list[np.ndarray], references: list[np.ndarray], tolerance: float) -> Agreement:
    """Worst case over several (output, reference) pairs."""
    max_abs = max_rel = 0.0
    cosine = 1.0
    for out, ref in zip(outputs, references, strict=True):
        out, ref = np.asarray(out, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
        diff = float(np.abs(out - ref).max())
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(float(np.abs(ref).max()), 1e-12))
        denom = float(np.linalg.norm(out) * np.linalg.norm(ref)) or 1.0
        cosine = min(cosine, float(out @ ref) / denom)
    passed = bool(np.isfinite(max_rel) and max_rel <= tolerance)
    return Agreement(max_abs, max_rel, cosine, tolerance, passed, len(outputs))
