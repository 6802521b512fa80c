"""Benchmark (not a test): every kind of Core ML export mobattn makes, executed by the ML
Program reference executor and compared with torch, plus the executor's run time.

    python bench/scripts/coreml_agreement.py [--quick] > results/benchmarks/coreml_agreement.md

Rows: the five mechanisms bare (fp32, fp16), the four SwiftFormer models (fp16, fp32),
each swap in swiftformer_xs (fp16), swiftformer_s with --image-input and each
compression, and every --min-target. Inputs: 8 random inputs per export (random RGB images
for image inputs); weights: mobattn's seeded random init. Columns: max relative error,
cosine similarity, top-1 agreement (models), the criterion and whether it passed.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from mobattn.environment import environment
from mobattn.exporters import attention_subject, export, model_subject
from mobattn.exporters.to_coreml import criterion_for, random_images, validate_coreml

MECHANISMS = ("eaa", "external", "hilo", "mhsa", "ufo")
MODELS = ("swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3")
INPUTS = 8


def variants(quick: bool):
    """(label, subject factory, export options)."""
    for name in MECHANISMS:
        for precision in ("fp32", "fp16"):
            yield (
                f"{name} d64 14x14",
                lambda n=name: attention_subject(n, 64, (14, 14)),
                {"precision": precision},
            )
    for model in MODELS[:2] if quick else MODELS:
        for precision in ("fp16", "fp32"):
            yield model, lambda m=model: model_subject(m), {"precision": precision}
    for name in MECHANISMS[1:]:
        yield f"swiftformer_xs+{name}", lambda n=name: model_subject("swiftformer_xs", n), {}
    yield "swiftformer_s image input", lambda: model_subject("swiftformer_s"), {"image": True}
    for compress in ("int8", "palettize8", "palettize6", "palettize4"):
        yield "swiftformer_s", lambda: model_subject("swiftformer_s"), {"compress": compress}
    for target in ("iOS17", "iOS18", "iOS26"):
        yield f"swiftformer_xs {target}", lambda: model_subject("swiftformer_xs"), {"min_target": target}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="XS and S only (a smoke run)")
    args = parser.parse_args()
    env = environment()
    print(
        f"Core ML exports executed by mobattn's reference executor ({platform.system()}, {env['cpu']}, "
        f"coremltools {env['coremltools']}, torch {env['torch']}); {INPUTS} random inputs each, seeded "
        "random weights. Command: `python bench/scripts/coreml_agreement.py`.\n"
    )
    print(
        "| subject | precision | compression | min target | max rel | 1 - cosine | top-1 agree | criterion "
        "| passed | export s | executor s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for label, make, options in variants(args.quick):
            subject = make()
            start = time.perf_counter()
            record = export(subject, "coreml", Path(tmp), force=True, **options)
            seconds = time.perf_counter() - start
            precision = record.precision
            compress = options.get("compress")
            image = bool(options.get("image"))
            if record.status != "ok" and not record.validation:
                print(
                    f"| {label} | {precision} | {compress or '-'} | {options.get('min_target', 'iOS16')} | "
                    f"{record.status}: {record.reason} |||||||"
                )
                continue
            inputs = (
                random_images(subject, INPUTS)
                if image
                else [subject.example_input(seed=200 + i) for i in range(INPUTS)]
            )
            executor_start = time.perf_counter()
            a = validate_coreml(Path(record.path), subject, criterion_for(precision, compress), image, inputs)
            per_input = (time.perf_counter() - executor_start) / INPUTS
            top1 = "-" if a.top1_agreement is None else f"{a.top1_agreement:.0%}"
            bound = f"{a.criterion} {'<=' if a.criterion == 'max_rel' else '>='} {a.tolerance:g}"
            print(
                f"| {label} | {precision} | {compress or '-'} | {options.get('min_target', 'iOS16')} | "
                f"{a.max_rel:.1e} | {1 - a.cosine:.1e} | {top1} | {bound} | {'yes' if a.passed else 'NO'} | "
                f"{seconds:.1f} | {per_input:.2f} |",
                flush=True,
            )
    print(
        "\n`executor s`: the reference executor's time per input (load excluded); `export s`: the whole "
        "export (conversion, save, spec check and its own validation)."
    )


if __name__ == "__main__":
    main()
