"""``mobattn validate``: run an existing artifact against torch and say whether it agrees."""

from __future__ import annotations

from pathlib import Path

import click

from mobattn.errors import MobattnError
from mobattn.exporters.formats import PRECISIONS
from mobattn.parsing import parse_resolution

from .common import CONTEXT, build_subject, file_kinds, json_option, own_resolution, subject_from_file
from .console import console, err_console, make_table, print_json, print_status_line, print_warning


@click.command("validate", context_settings=CONTEXT)
@click.argument("artifact", type=click.Path())
@click.option("--model", help="The model the artifact was exported from.")
@click.option("--attention", help="Its swapped-in attention; or, without --model, the bare attention.")
@click.option("--dim", type=int, help="Channels of a bare attention.")
@click.option("--hw", help="Token grid HxW of a bare attention.")
@click.option("--heads", type=int, help="Heads of a bare attention (default: the swap rule).")
@click.option("--resolution", help="Model input resolution, N or HxW (default: the model's own).")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="The checkpoint exported (default: mobattn's seeded random init).",
)
@click.option(
    "--images",
    type=click.Path(),
    help="Also compare on these images (an ImageFolder root or a list of files; models).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Criterion to judge by (default: the artifact's metadata, else fp32).",
)
@click.option(
    "--divergence",
    is_flag=True,
    help="ONNX: also compare every intermediate tensor with a float twin exported here (on --images "
    "if given) and name the layers that lose the most.",
)
@click.option("--rtol", type=float, help="Judge by allclose with this relative tolerance (Optimum's rule).")
@click.option("--atol", type=float, help="Judge by allclose with this absolute tolerance.")
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    help="An int8 judged on --images: refused when the 95% interval of the share keeping the float "
    "model's top-1 lies under this (default 0.90).",
)
@json_option
def command(
    artifact,
    model,
    attention,
    dim,
    hw,
    heads,
    resolution,
    weights,
    images,
    precision,
    divergence,
    rtol,
    atol,
    min_agreement,
    json_out,
) -> int:
    """Run an artifact ({FILES}) against torch on random inputs (and images) and
    print the validation record. Exit 0 when it agrees, 1 when it does not, 2 on bad input.

    mobattn's own exports name their subject in their metadata (ONNX, Core ML): without
    --model or --attention it is read from there, and said.

    \b
      mobattn validate exports/swiftformer_s-224.onnx
      mobattn validate exports/swiftformer_s-224.mlpackage --model swiftformer_s
      mobattn validate exports/eaa-dim64-14x14.onnx --attention eaa --dim 64 --hw 14x14
      mobattn validate xs.onnx --model swiftformer_xs --weights xs.pth --images val/
      mobattn validate vit-int8.onnx --model vit_tiny_patch16_224 --weights w.pth \
          --images calibration.txt --divergence

    Core ML packages run in Core ML on macOS and in mobattn's ML Program reference
    executor elsewhere.
    """
    from mobattn.exporters.agreement import user_tolerance
    from mobattn.exporters.calibration import MAX_HELD_OUT_IMAGES, calibration_images
    from mobattn.exporters.validate import validate_artifact

    if model is None and attention is None and dim is None and hw is None and heads is None:
        model, attention, dim, hw, heads, resolution = subject_from_file(Path(artifact), weights, resolution)
    size = parse_resolution(resolution or own_resolution(model))
    subject = build_subject(model, attention, dim, hw, heads, 1, weights, size)
    image_arrays = calibration_images(subject, images, "--images", MAX_HELD_OUT_IMAGES) if images else None
    if divergence:
        check_divergence_applies(Path(artifact))
    with user_tolerance(rtol, atol, min_agreement):
        agreement, facts = validate_artifact(artifact, subject, precision, image_arrays)
    record = {"artifact": artifact, **agreement.to_dict(), **facts}
    report = None
    if divergence:
        from mobattn.exporters.divergence_file import divergence_of_file

        with err_console.status("comparing every layer with a float twin..."):
            report = divergence_of_file(Path(artifact), subject, image_arrays)
        record["divergence"] = report.to_dict()
    if "claim_disagrees" in facts:
        print_warning(f"{artifact}: {facts['claim_disagrees']}; judged as {facts['criterion']}")
    if not agreement.passed:
        print_status_line(f"{artifact}: does not agree with torch ({agreement.note or agreement.criterion})")
    if json_out:
        print_json([record])
    else:
        rows = [
            [k, str(record[k])]
            for k in (
                "executor",
                "criterion",
                "max_abs",
                "max_rel",
                "cosine",
                "top1_agreement",
                "top1_interval",
                "images",
                "tolerance",
                "inputs",
                "passed",
                "note",
            )
        ]
        console.print(make_table(f"validation of {artifact}", ["", "value"], rows))
        if report is not None:
            print_divergence(report)
    return 0 if agreement.passed else 1


command.help = command.help.replace("{FILES}", file_kinds())  # the suffixes, from the table


def print_divergence(report) -> None:
    """The layers that lose the most cosine to the float twin, and the first to diverge."""
    rows = [
        [
            g.node,
            g.op_type,
            f"{g.cosine:.4f}",
            f"{g.loss:+.4f}",
            f"{g.input_outlier_ratio:.0f}x",
        ]
        for g in report.largest_losses
    ]
    title = f"layers losing the most (of {report.compared} tensors, {report.inputs} inputs)"
    console.print(make_table(title, ["node", "op", "cosine", "lost", "input max/p99.9"], rows))
    first = report.first_diverged
    where = f"{first.node} ({first.op_type}), cosine {first.cosine:.4f}" if first else "none"
    console.print(f"first tensor below cosine 0.99: {where}; output cosine {report.output_cosine:.4f}")


def check_divergence_applies(artifact: Path) -> None:
    """--divergence says where a quantized (or fp16) ONNX graph leaves its float twin; on
    an fp32 graph every layer would agree, a comparison that says nothing."""
    from mobattn.exporters.probe import probe_file
    from mobattn.exporters.to_onnx import file_precision

    if artifact.suffix.lower() != ".onnx":
        what = "compares ONNX graphs layer by layer"
        raise MobattnError(f"--divergence {what}; {artifact} is not an .onnx file")
    probe_file(artifact, "validate")
    content = file_precision(artifact)
    if content == "fp32":
        raise MobattnError(
            f"--divergence compares a quantized or fp16 graph with its float twin; {artifact.name} holds "
            "fp32 (read from its graph), so every layer would agree"
        )
