"""Accuracy after conversion (``mobattn fidelity``): what each artifact a deployer would
ship does to a trained network's predictions on real images.

For each (target, precision) asked, the artifact is written by its target's exporter
exactly as ``mobattn export`` would write it (int8 calibrated on the calibration images
and judged on held-out ones), its export-time verdict kept (``kept`` or why not), and then
it is run on the evaluation images whatever the verdict, since a refused artifact is what
such a table must show. Each row compares it with torch fp32 on the same images: top-1
agreement with its interval, the change in top-1 with its interval (labelled images), the
logits' cosine, and the size against the float weights'.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mobattn.errors import MobattnError
from mobattn.exporters.agreement import wilson_interval
from mobattn.exporters.files import size_bytes
from mobattn.exporters.formats import TARGETS

Z95 = 1.96


@dataclass(frozen=True)
class Variant:
    """One artifact to measure: a target and a precision."""

    target: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.target} {self.precision}"


@dataclass
class FidelityRow:
    """One artifact's predictions against torch fp32 on the same images."""

    model: str
    attention: str | None
    weights: str
    target: str
    precision: str
    images: int
    agreement: float  # share of images whose top-1 class is torch fp32's
    agreement_interval: tuple[float, float]
    cosine_mean: float
    cosine_p1: float  # the 1st percentile over images
    size_bytes: int
    size_ratio: float  # against the float32 weights
    kept: bool | None  # what `mobattn export` decided (None: nothing here can execute it)
    verdict: str  # "kept", "kept, unvalidated", or the refusal's reason
    calibration: str  # what int8 calibrated on
    top1: float | None = None  # on these labelled images (never a dataset's top-1)
    top1_torch: float | None = None
    top1_delta: float | None = None  # top1 - top1_torch
    top1_delta_interval: tuple[float, float] | None = None
    float_layers: int | None = None  # int8 layers --int8-target kept in float
    export_s: float = 0.0
    run_s: float = 0.0
    source: str = ""  # the images measured on
    environment: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": "fidelity", **asdict(self)}


def variants(targets: list[str], precisions: list[str] | None) -> tuple[list[Variant], list[str]]:
    """The (target, precision) pairs to measure, and a line for each pair a target does not
    take (measured nowhere, said once). No precision given: each target's default."""
    chosen, skipped = [], []
    for target in targets:
        spec = TARGETS[target]
        for precision in precisions or [spec.default_precision]:
            if precision in spec.precisions:
                chosen.append(Variant(target, precision))
            else:
                skipped.append(f"{target} {precision}: {target} takes {', '.join(spec.precisions)}")
    return chosen, skipped


def taking_int8_options(subject, chosen: list[Variant], **int8_options) -> tuple[list[Variant], list[str]]:
    """The variants whose target takes the int8 options asked (a recipe, a target: each
    target's own ``check_options``), and a line for each int8 variant whose target does not
    (``--int8-recipe dynamic`` is ExecuTorch's and LiteRT's): refused before any image is read."""
    kept, refused = [], []
    for variant in chosen:
        try:
            if variant.precision == "int8":
                TARGETS[variant.target].implementation().check_options(subject, "int8", **int8_options)
            kept.append(variant)
        except MobattnError as exc:
            refused.append(f"{variant.name}: {exc}")
    return kept, refused


def runner_for(path: Path, target: str, subject) -> Callable[[np.ndarray], np.ndarray]:
    """One image batch to its logits, in the target's runtime (Core ML off macOS: mobattn's
    ML Program reference executor)."""
    if target == "coreml":
        import sys

        if sys.platform != "darwin":
            from mobattn.exporters.coreml_reference import ReferenceExecutor

            executor = ReferenceExecutor(path)
            return lambda x: executor.predict({subject.input_name: x})[subject.output_name]
    return TARGETS[target].implementation().load_runner(path, threads=1).run


def paired_delta(artifact_right: np.ndarray, torch_right: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The change in top-1 (artifact minus torch, on the same images) and its 95% interval,
    from the discordant pairs (a paired difference of proportions, as McNemar's)."""
    n = len(artifact_right)
    gained = float(np.sum(artifact_right & ~torch_right))
    lost = float(np.sum(~artifact_right & torch_right))
    delta = (gained - lost) / n
    half = Z95 * np.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n
    return delta, (delta - half, delta + half)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


@dataclass
class Evaluation:
    """The images an artifact is run on, and torch fp32's answers on them."""

    images: np.ndarray  # (N, 3, H, W), the model's preprocessing
    labels: np.ndarray | None
    reference: np.ndarray  # torch fp32 logits
    source: str
    weight_bytes: int  # the float32 weights' size, the size ratio's denominator


def measure(
    subject,
    variant: Variant,
    evaluation: Evaluation,
    calibration: dict,  # int8's options: calibration, validation_images, int8_recipe, int8_target
    folder: Path,
    on_image: Callable[[], None] = lambda: None,
) -> FidelityRow:
    """Export ``variant`` into ``folder``, keep its verdict, run it on every image."""
    from mobattn.exporters.export import refusal_reason

    spec = TARGETS[variant.target]
    wanted = dict(calibration) if variant.precision == "int8" else {}
    options = {k: v for k, v in wanted.items() if k in spec.options}  # what this target takes
    path = folder / f"{variant.target}-{variant.precision}{spec.suffix}"
    start = time.perf_counter()
    result = spec.implementation().export(subject, path, precision=variant.precision, **options)
    export_s = time.perf_counter() - start
    validation = result.validation
    if validation is None:
        kept, verdict = None, "kept, unvalidated"
    elif validation.passed:
        kept = True
        verdict = "kept under a user tolerance" if validation.kept_under_user_tolerance else "kept"
    else:
        kept, verdict = False, refusal_reason(validation).removesuffix("; nothing written")
    run = runner_for(path, variant.target, subject)
    start = time.perf_counter()
    logits = []
    for image in evaluation.images:
        logits.append(np.asarray(run(image[None]), np.float32).reshape(1, -1))
        on_image()
    run_s = time.perf_counter() - start
    logits = np.concatenate(logits)
    row = _row(subject, variant, evaluation, logits, path, kept, verdict, options, export_s, run_s)
    search = (result.details.get("quantization") or {}).get("mixed_precision")
    row.float_layers = len(search["float_layers"]) if search else None
    return row


def _row(subject, variant, evaluation, logits, path, kept, verdict, options, export_s, run_s) -> FidelityRow:
    from mobattn.environment import environment

    reference, labels = evaluation.reference, evaluation.labels
    same = logits.argmax(1) == reference.argmax(1)
    cos = cosines(logits, reference)
    if variant.precision != "int8":
        calibrated = "n/a"
    elif options.get("calibration"):
        held = len(options.get("validation_images") or [])
        calibrated = f"{len(options['calibration'])} images ({held} held out to judge it)"
    else:
        calibrated = "random inputs"
    size = size_bytes(path)
    row = FidelityRow(
        model=subject.model,
        attention=subject.attention,
        weights=subject.metadata.get("weights", ""),
        target=variant.target,
        precision=variant.precision,
        images=len(logits),
        agreement=float(same.mean()),
        agreement_interval=wilson_interval(int(same.sum()), len(same)),
        cosine_mean=float(cos.mean()),
        cosine_p1=float(np.percentile(cos, 1)),
        size_bytes=size,
        size_ratio=size / evaluation.weight_bytes,
        kept=kept,
        verdict=verdict,
        calibration=calibrated,
        export_s=round(export_s, 1),
        run_s=round(run_s, 1),
        source=evaluation.source,
        environment=environment(),
    )
    if labels is not None:
        right, torch_right = logits.argmax(1) == labels, reference.argmax(1) == labels
        row.top1, row.top1_torch = float(right.mean()), float(torch_right.mean())
        row.top1_delta, row.top1_delta_interval = paired_delta(right, torch_right)
    return row


def evaluation_of(subject, images: list[np.ndarray], labels: list | None, source: str) -> Evaluation:
    """torch fp32's logits on ``images`` (the reference every artifact is compared with)."""
    import torch

    stacked = np.stack(images)
    with torch.inference_mode():
        reference = np.concatenate(
            [
                subject.module(torch.from_numpy(stacked[i : i + 32])).numpy()
                for i in range(0, len(stacked), 32)
            ]
        )
    weight_bytes = sum(p.numel() * 4 for p in subject.module.parameters())
    known = labels is not None and all(label is not None for label in labels)
    return Evaluation(stacked, np.asarray(labels) if known else None, reference, source, weight_bytes)


def measure_all(subject, chosen: list[Variant], evaluation: Evaluation, calibration: dict, **hooks) -> list:
    """Every variant in turn, in a private folder removed afterwards (the artifacts are a
    means here: ``mobattn export`` writes the ones to ship). A variant whose export cannot
    be made is a row-less line in the returned list of (variant, row or reason)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="mobattn-fidelity-") as folder:
        for variant in chosen:
            hooks.get("on_start", lambda v: None)(variant)
            try:
                row = measure(
                    subject,
                    variant,
                    evaluation,
                    calibration,
                    Path(folder),
                    hooks.get("on_image", lambda: None),
                )
            except MobattnError as exc:
                out.append((variant, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a converter failure is a reason, not a crash
                from mobattn.errors import first_line

                out.append((variant, f"export failed: {type(exc).__name__}: {first_line(exc)}"))
                continue
            out.append((variant, row))
    return out


def markdown(rows: list[FidelityRow]) -> str:
    """The rows as the benchmark page's table (``mobattn fidelity --format md``), after a
    line saying what measured them."""
    lines = [_provenance(rows), ""] if rows else []
    lines += [
        "| artifact | top-1 agreement [95%] | top-1 here (Δ points [95%]) | cosine mean (p1) "
        "| size / fp32 weights | `mobattn export` |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        low, high = r.agreement_interval
        top1 = "n/a (unlabelled)"
        if r.top1 is not None:
            d_low, d_high = r.top1_delta_interval
            top1 = f"{r.top1:.2%} ({r.top1_delta * 100:+.2f} [{d_low * 100:+.2f}, {d_high * 100:+.2f}])"
        mixed = f", {r.float_layers} layers float" if r.float_layers else ""
        lines.append(
            f"| {r.target} {r.precision}{mixed} | {r.agreement:.2%} [{low:.1%}, {high:.1%}] | {top1} | "
            f"{r.cosine_mean:.4f} ({r.cosine_p1:.4f}) | {r.size_ratio:.2f}x | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"


def rows_of(records: list[dict]) -> list[FidelityRow]:
    """The fidelity rows among a results file's records (``mobattn report`` shows them)."""
    from dataclasses import fields

    names = {f.name for f in fields(FidelityRow)}
    return [
        FidelityRow(**{k: v for k, v in record.items() if k in names})
        for record in records
        if record.get("kind") == "fidelity"
    ]


def _provenance(rows: list[FidelityRow]) -> str:
    first, env = rows[0], rows[0].environment or {}
    keys = ("torch", "onnxruntime", "executorch", "ai-edge-litert", "coremltools")
    versions = ", ".join(f"{k} {env[k]}" for k in keys if k in env)
    machine = f"{env.get('cpu', 'an unnamed CPU')}, {env.get('cores', '?')} cores"
    line = (
        f"Measured by `mobattn fidelity` on {machine} ({versions}): {first.model} "
        f"({first.weights}), {first.images} images of {first.source}."
    )
    int8 = next((r for r in rows if r.precision == "int8"), None)
    if int8 is not None:
        line += f" int8 calibrated on {int8.calibration}."
    if first.top1_torch is not None:
        line += (
            f" torch fp32's top-1 on these images: {first.top1_torch:.2%} (a subset's, not the dataset's)."
        )
    return line
