"""Benchmark (not a test): what each format, precision and compression does to a trained
network's predictions on real images.

    python bench/scripts/real_fidelity.py ../shared/real \\
        --results results/benchmarks/real_fidelity.jsonl > results/benchmarks/real_fidelity.md

A script beside the package, not installed. DATA is the folder of ``../shared/real``
(its README says what the weights and images are); nothing of it is copied.

For the trained ViT-Ti/16 (``vit_tiny_patch16_224`` with AugReg's weights) and every
artifact mobattn produces of it (ONNX fp32/fp16/int8 and the mobile form, Core ML
fp32/fp16/int8/palettize 8/6/4 and the Neural Engine layout where it applies,
ExecuTorch fp32/int8, LiteRT fp32/int8), on
the evaluation images (1,200; ``--images N`` for fewer): top-1 agreement with torch fp32,
each artifact's top-1 against torch fp32's on the same images, and the logits' cosine.
int8 is calibrated on the 100 calibration images, and once on random inputs to show what
that costs; the previous all-ops recipe is shown beside the default one.

Every artifact is written by its target's exporter and its export-time verdict recorded
(``validated``: what ``mobattn export`` would keep), but it is measured here whatever the
verdict, since a refused artifact is exactly what this page must show. Core ML runs in
mobattn's ML Program reference executor (no macOS here). Rows are appended to
``--results`` as they finish; a rerun skips the variants already there.

These images are 1,200 squashed photographs of 725 classes: their top-1 is not an
ImageNet top-1 (the data's README), only a yardstick for what an artifact moves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mobattn.environment import environment
from mobattn.errors import MobattnError
from mobattn.evaluate import load_image, preprocess
from mobattn.exporters import model_subject
from mobattn.exporters.files import size_bytes
from mobattn.exporters.formats import TARGETS
from mobattn.image_sources import read_source
from mobattn.models import get_model_config

MODEL = "vit_tiny_patch16_224"
WEIGHTS = "vit_tiny_augreg/vit_tiny_patch16_224.augreg_in21k_ft_in1k.pth"
IMAGES = "ilsvrc2012-val-1300"


@dataclass(frozen=True)
class Variant:
    """One artifact: a target, a precision and the options that make it."""

    name: str
    target: str
    precision: str
    options: dict = field(default_factory=dict)
    calibration: str | None = None  # int8: "images" (the calibration split) or "random"


VARIANTS = [
    Variant("onnx fp32", "onnx", "fp32"),
    Variant("onnx fp16", "onnx", "fp16"),
    Variant("onnx int8", "onnx", "int8", calibration="images"),
    Variant("onnx int8, random calibration", "onnx", "int8", calibration="random"),
    Variant("onnx int8 all-ops", "onnx", "int8", {"int8_recipe": "all-ops"}, calibration="images"),
    Variant("onnx fp32 mobile form", "onnx", "fp32", {"form": "mobile"}),
    Variant("executorch fp32", "executorch", "fp32"),
    Variant("executorch int8", "executorch", "int8", calibration="images"),
    Variant("executorch int8, random calibration", "executorch", "int8", calibration="random"),
    Variant(
        "executorch int8 all-ops", "executorch", "int8", {"int8_recipe": "all-ops"}, calibration="images"
    ),
    Variant("litert fp32", "litert", "fp32"),
    Variant("litert int8", "litert", "int8", calibration="images"),
    Variant("litert int8, random calibration", "litert", "int8", calibration="random"),
    Variant("coreml fp32", "coreml", "fp32"),
    Variant("coreml fp16", "coreml", "fp16"),
    Variant("coreml fp16 ane layout", "coreml", "fp16", {"layout": "ane"}),
    Variant("coreml fp16 int8 weights", "coreml", "fp16", {"compress": "int8"}),
    Variant("coreml fp16 palettize8", "coreml", "fp16", {"compress": "palettize8"}),
    Variant("coreml fp16 palettize6", "coreml", "fp16", {"compress": "palettize6"}),
    Variant("coreml fp16 palettize4", "coreml", "fp16", {"compress": "palettize4"}),
]
FP32_OF = {t: f"{t} fp32" for t in ("onnx", "executorch", "litert", "coreml")}


def load_split(data: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The split's images with the model's own preprocessing, and their labels."""
    config = get_model_config(MODEL)
    folder = data / IMAGES
    samples = read_source(folder / "labels.csv", folder / split).samples[:limit]
    images = np.stack(
        [
            preprocess(load_image(p), 224, config.crop_pct, config.mean, config.std, config.interpolation)
            for p, _ in samples
        ]
    )
    return images, np.asarray([label for _, label in samples])


def runner_for(path: Path, target: str):
    """A function from one (1, 3, 224, 224) image to its logits, in the target's runtime
    (Core ML: the reference executor)."""
    if target == "coreml":
        from mobattn.exporters.coreml_reference import ReferenceExecutor

        executor = ReferenceExecutor(path)
        return lambda x: executor.predict({"image": x})["logits"]
    runner = TARGETS[target].implementation().load_runner(path, threads=1)
    return runner.run


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def measure(variant: Variant, subject, calibration, images, labels, reference, folder: Path) -> dict:
    options = dict(variant.options)
    if variant.calibration == "images":
        options["calibration"] = calibration
    path = folder / f"{variant.name.replace(' ', '_').replace(',', '')}{TARGETS[variant.target].suffix}"
    start = time.perf_counter()
    result = (
        TARGETS[variant.target].implementation().export(subject, path, precision=variant.precision, **options)
    )
    export_s = time.perf_counter() - start
    validation = result.validation
    run = runner_for(path, variant.target)
    start = time.perf_counter()
    logits = np.concatenate([np.asarray(run(images[i : i + 1]), np.float32) for i in range(len(images))])
    run_s = time.perf_counter() - start
    cos = cosines(logits, reference)
    quantization = result.details.get("quantization") or {}
    return {
        "variant": variant.name,
        "target": variant.target,
        "precision": variant.precision,
        "options": variant.options,
        "calibration": quantization.get("calibration"),
        "recipe": quantization.get("recipe"),
        "kept_in_float": quantization.get("kept_in_float_for_outliers"),
        "validated": None if validation is None else bool(validation.passed),
        "validation_cosine": None if validation is None else validation.cosine,
        "validation_note": None if validation is None else validation.note,
        "size_bytes": size_bytes(path),
        "export_s": round(export_s, 1),
        "run_s": round(run_s, 1),
        "images": len(images),
        "agreement": float((logits.argmax(1) == reference.argmax(1)).mean() * 100),
        "top1": float((logits.argmax(1) == labels).mean() * 100),
        "top1_torch": float((reference.argmax(1) == labels).mean() * 100),
        "cosine_mean": float(cos.mean()),
        "cosine_p1": float(np.percentile(cos, 1)),
    }


def done_rows(results: Path | None, images: int) -> dict[str, dict]:
    if results is None or not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {r["variant"]: r for r in rows if r.get("images") == images}


def markdown(rows: list[dict], facts: dict) -> str:
    by_name = {r["variant"]: r for r in rows}
    lines = [
        f"Measured by `python bench/scripts/real_fidelity.py DATA` on {facts['machine']} "
        f"(torch {facts['torch']}, onnxruntime {facts['onnxruntime']}, executorch "
        f"{facts['executorch']}, ai-edge-litert {facts['litert']}, litert-torch {facts['litert_torch']}, "
        f"coremltools {facts['coremltools']}): ViT-Ti/16 with AugReg's "
        f"trained weights, {facts['images']} real ImageNet validation images (the evaluation "
        "split of `../shared/real`; int8 calibrated on its 100 calibration images). torch fp32's "
        f"top-1 on these images: {facts['top1_torch']:.2f}% — not an ImageNet top-1 (1,200 "
        "squashed images of 725 classes); the columns say how far each artifact moves it.",
        "",
        "| artifact | agreement with torch fp32 | top-1 (Δ vs torch fp32) | logits cosine, mean "
        "(1st pct) | size MB (× its fp32) | kept by `mobattn export`? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        fp32 = by_name.get(FP32_OF[r["target"]])
        ratio = f" ({r['size_bytes'] / fp32['size_bytes']:.2f}×)" if fp32 else ""
        kept = {True: "yes", False: f"no: cosine {r['validation_cosine']:.3f} < floor", None: "n/a"}[
            r["validated"]
        ]
        lines.append(
            f"| {r['variant']} | {r['agreement']:.2f}% | {r['top1']:.2f}% "
            f"({r['top1'] - r['top1_torch']:+.2f}) | {r['cosine_mean']:.4f} ({r['cosine_p1']:.4f}) | "
            f"{r['size_bytes'] / 1e6:.2f}{ratio} | {kept} |"
        )
    kept_float = {
        r["variant"]: r["kept_in_float"] for r in rows if r.get("kept_in_float") and r["calibration"]
    }
    if kept_float:
        lines += ["", "Layers the outlier-aware recipe kept in float (input max / 99.9th percentile):"]
        lines += [
            f"- {name}: {', '.join(f'{k} ({v}x)' for k, v in kf.items())}" for name, kf in kept_float.items()
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the folder of ../shared/real")
    parser.add_argument("--images", type=int, help="evaluate on the first N evaluation images (default all)")
    parser.add_argument("--results", type=Path, help="JSONL of rows: appended to, and resumed from")
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    args = parser.parse_args()
    weights = args.data / WEIGHTS
    if not weights.is_file() or not (args.data / IMAGES / "labels.csv").is_file():
        print(f"{args.data} is not ../shared/real (no {WEIGHTS} or {IMAGES}/labels.csv)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    subject = model_subject(MODEL, weights=str(weights))
    images, labels = load_split(args.data, "evaluation.txt", args.images)
    calibration = list(load_split(args.data, "calibration.txt", None)[0])
    with torch.inference_mode():
        reference = np.concatenate(
            [subject.module(torch.from_numpy(images[i : i + 50])).numpy() for i in range(0, len(images), 50)]
        )
    wanted = set(args.only.split(",")) if args.only else None
    done = done_rows(args.results, len(images))
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="real-fidelity-") as tmp:
        for variant in VARIANTS:
            if wanted is not None and variant.name not in wanted:
                continue
            if variant.name in done:
                rows.append(done[variant.name])
                continue
            print(f"{variant.name}...", file=sys.stderr, flush=True)
            try:
                row = measure(variant, subject, calibration, images, labels, reference, Path(tmp))
            except MobattnError as exc:  # an option that does not apply to this network
                skipped.append(f"{variant.name}: {exc}")
                continue
            rows.append(row)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
    env = environment()
    facts = {
        "machine": f"{env.get('cpu')}, {env.get('cores')} cores",
        "torch": env.get("torch"),
        "onnxruntime": env.get("onnxruntime"),
        "executorch": env.get("executorch"),
        "coremltools": env.get("coremltools"),
        "litert": env.get("ai-edge-litert"),
        "litert_torch": env.get("litert-torch"),
        "images": len(images),
        "top1_torch": float((reference.argmax(1) == labels).mean() * 100),
    }
    sys.stdout.write(markdown(rows, facts))
    if skipped:
        sys.stdout.write("\nNot measured (does not apply):\n" + "".join(f"\n- {s}" for s in skipped) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
