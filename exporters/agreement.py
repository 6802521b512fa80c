"""Agreement between an artifact's outputs and the torch module's."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

# Relative error allowed per float precision (max |a - b| / max |b|).
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
# Quantized outputs are judged by direction: a few logits move by a quantization step,
# which a max-relative bound would flag although the prediction is intact.
COSINE_FLOOR = {
    "int8": 0.99,
    # Core ML, run by the reference executor (or Core ML on macOS): fp16 rounds after every
    # op, compression moves weights; both judged by direction. Floors from measurements
    # (bench/scripts/coreml_agreement.py, 1 - cosine on SwiftFormer and the mechanisms):
    # fp16 <= 3e-7, int8 2.5e-5, palettize8 1.9e-5, palettize6 3.6e-4, palettize4 4.9e-3;
    # each floor leaves 10x to 300x room for trained weights' wider ranges.
    "coreml-fp16": 0.9999,
    "coreml-int8": 0.999,
    "coreml-palettize8": 0.999,
    "coreml-palettize6": 0.99,
    "coreml-palettize4": 0.95,
}


# int8 calibrated on images is judged on held-out images by what a classifier is for: the
# share whose top-1 class is the float model's. It is refused when the images show it below
# the floor: the upper end of the share's 95% interval under it. A point estimate would
# refuse working artifacts on the noise of a few dozen images: ExecuTorch's int8 of the
# trained ViT-Ti agrees on 94.3% of 1,200 images, yet on 22 of the 25 the calibration list
# holds out (88%, interval 70-96%). The floor separates a network that still classifies
# from one that collapsed. Measured on the trained ViT-Ti and 1,200 real images
# (BENCHMARKS.md, "Accuracy after conversion"): int8 keeps 94.3-94.8% on every runtime (top-1
# within 0.6 points); calibrated on random inputs ExecuTorch and LiteRT keep 17%, the
# all-ops recipe 0%. The cosine floor of 0.99, set on random weights, refused all three
# working ones (cosine 0.969-0.976).
# Published PTQ of DeiT-T W8A8 stays within about 0.6 points of top-1 (FQ-ViT, PTQ4ViT),
# so a well-quantized network sits well above 0.90; --min-agreement moves the floor.
AGREEMENT_FLOOR = {"int8-images": 0.90}


def judged_as(precision: str, on_images: bool) -> str:
    """The criterion an artifact of ``precision`` is judged by: int8 on images by its
    predictions (:data:`AGREEMENT_FLOOR`), anything else by its precision's rule."""
    return "int8-images" if precision == "int8" and on_images else precision


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``hits / n`` (sound near 0 and 1,
    where the normal approximation is not)."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


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
    executor: str = ""  # what ran the artifact: onnxruntime, executorch, coreml, reference
    top1_agreement: float | None = None  # models: share of inputs whose top-1 class agrees
    top1_interval: tuple[float, float] | None = None  # its 95% Wilson interval
    images: int = 0  # images compared (a batch holds several)
    # passed only because the user's --rtol/--atol replaced a criterion that refuses it
    kept_under_user_tolerance: bool = False

    def to_dict(self) -> dict:
        """Plain JSON: a non-finite figure (a failed comparison) becomes null."""
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()
        }

    def add_note(self, text: str) -> None:
        self.note = "; ".join(n for n in (self.note, text) if n)


_OVERRIDE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "tolerance", default=None
)


_MIN_AGREEMENT: contextvars.ContextVar[float | None] = contextvars.ContextVar("min_agreement", default=None)


@contextlib.contextmanager
def user_tolerance(
    rtol: float | None, atol: float | None, min_agreement: float | None = None
) -> Iterator[None]:
    """``--rtol`` / ``--atol``: judge by ``allclose`` (|a - b| <= atol + rtol * |b| for
    every element, as Optimum's validation does) instead of the precision's criterion;
    ``--min-agreement``: the top-1 agreement floor of an int8 judged on images."""
    tokens = []
    if rtol is not None or atol is not None:
        tokens.append((_OVERRIDE, _OVERRIDE.set((rtol or 0.0, atol or 0.0))))
    if min_agreement is not None:
        tokens.append((_MIN_AGREEMENT, _MIN_AGREEMENT.set(min_agreement)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def user_tolerance_in_force() -> str | None:
    """The user's tolerance in force, in words (an export writes it into the file's
    metadata, so the file itself says it may have been kept under it); None: defaults."""
    said = []
    override, floor = _OVERRIDE.get(), _MIN_AGREEMENT.get()
    if override is not None:
        said.append(f"--rtol {override[0]:g} --atol {override[1]:g}")
    if floor is not None:
        said.append(f"--min-agreement {floor:g}")
    return " ".join(said) or None


def compare(outputs: list[np.ndarray], references: list[np.ndarray], precision: str) -> Agreement:
    """Worst case over several (output, reference) pairs, judged for ``precision``.

    Non-finite values never pass: an output with NaN or inf where the reference is
    finite fails (its error is inf), and a reference that is itself non-finite is
    reported as such, since nothing can be validated against it.
    """
    errors, cosines, notes, agree = [], [], [], []
    for out, ref in zip(outputs, references, strict=True):
        if np.ndim(out) == 2 and np.shape(out) == np.shape(ref) and np.shape(ref)[1] > 1:  # logits
            agree += list(np.argmax(out, 1) == np.argmax(ref, 1))
        out, ref = np.asarray(out, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
        if not np.isfinite(ref).all():
            notes.append("the torch reference itself is not finite (NaN or inf in the weights or input)")
            errors.append((np.inf, np.inf))
            cosines.append(np.nan)
            continue
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            notes.append(f"{bad} of {out.size} outputs are NaN or inf where torch's are finite")
            errors.append((np.inf, np.inf))
            cosines.append(np.nan)
            continue
        diff = float(np.abs(out - ref).max()) if out.size else 0.0
        errors.append((diff, diff / max(float(np.abs(ref).max(initial=0.0)), 1e-12)))
        denom = float(np.linalg.norm(out) * np.linalg.norm(ref)) or 1.0
        cosines.append(float(out @ ref) / denom)
    max_abs = max((e[0] for e in errors), default=0.0)
    max_rel = max((e[1] for e in errors), default=0.0)
    cosine = float(np.nan) if any(np.isnan(c) for c in cosines) else min(cosines, default=1.0)
    top1 = float(np.mean(agree)) if agree else None
    if precision in AGREEMENT_FLOOR and top1 is None:
        precision = "int8"  # no logits to compare (a bare mechanism): judged by direction
    floor = _MIN_AGREEMENT.get()
    upper = wilson_interval(int(np.sum(agree)), len(agree))[1] if agree else None
    if precision in AGREEMENT_FLOOR:
        tolerance, criterion = AGREEMENT_FLOOR[precision], "top1_agreement"
        passed = upper >= tolerance and bool(np.isfinite(cosine))
    elif precision in COSINE_FLOOR:
        tolerance, criterion = COSINE_FLOOR[precision], "cosine"
        passed = bool(np.isfinite(cosine) and cosine >= tolerance)
    else:
        tolerance, criterion = TOLERANCE[precision], "max_rel"
        passed = bool(np.isfinite(max_rel) and max_rel <= tolerance)
    default = (passed, criterion, tolerance)
    override = _OVERRIDE.get()
    if criterion == "top1_agreement" and floor is not None:
        override, tolerance = (floor,), floor
        passed = upper >= floor and bool(np.isfinite(cosine))
    elif override is not None:
        rtol, atol = override
        tolerance, criterion = rtol, f"allclose(rtol={rtol:g}, atol={atol:g})"
        passed = all(
            np.allclose(o, r, rtol=rtol, atol=atol, equal_nan=False)
            for o, r in zip(outputs, references, strict=True)
        )
    ok = passed and not notes  # a non-finite output never passes, whatever the tolerance
    kept = override is not None and ok and not default[0]
    if kept:
        bound = "at most" if default[1] == "max_rel" else "at least"
        refusing = f"{default[1]} {bound} {default[2]:g}"
        notes.append(f"kept under a user tolerance: the default criterion ({refusing}) refuses it")
    return Agreement(
        max_abs,
        max_rel,
        cosine,
        tolerance,
        ok,
        len(outputs),
        criterion=criterion,
        note="; ".join(dict.fromkeys(notes)),
        top1_agreement=top1,
        top1_interval=wilson_interval(int(np.sum(agree)), len(agree)) if agree else None,
        images=len(agree),
        kept_under_user_tolerance=kept,
    )


def agreement_on(
    run: Callable[[torch.Tensor], np.ndarray],
    module: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    criterion: str,
    executor: str,
) -> Agreement:
    """Run the artifact (``run``) and torch (``module``) on the same inputs and judge
    the outputs by ``criterion`` (a key of TOLERANCE or COSINE_FLOOR)."""
    outputs, references = [], []
    for x in inputs:
        with torch.no_grad():
            references.append(module(x).numpy())
        outputs.append(np.asarray(run(x), np.float32))
    agreement = compare(outputs, references, criterion)
    agreement.executor = executor
    return agreement
