"""``mobattn validate``: run an existing artifact against torch and say whether it agrees."""

from __future__ import annotations

import click

from mobattn.exporters.formats import PRECISIONS
from mobattn.parsing import parse_resolution

from .common import CONTEXT, build_subject, json_option, own_resolution
from .console import console, make_table, print_json, print_status_line, print_warning


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
@click.option("--rtol", type=float, help="Judge by allclose with this relative tolerance (Optimum's rule).")
@click.option("--atol", type=float, help="Judge by allclose with this absolute tolerance.")
@json_option
def command(
    artifact, model, attention, dim, hw, heads, resolution, weights, images, precision, rtol, atol, json_out
) -> int:
    """Run an .onnx, .mlpackage or .pte against torch on random inputs (and images) and
    print the validation record. Exit 0 when it agrees, 1 when it does not, 2 on bad input.

    \b
      mobattn validate exports/swiftformer_s-224.mlpackage --model swiftformer_s
      mobattn validate exports/eaa-dim64-14x14.onnx --attention eaa --dim 64 --hw 14x14
      mobattn validate xs.onnx --model swiftformer_xs --weights xs.pth --images val/

    Core ML packages run in Core ML on macOS and in mobattn's ML Program reference
    executor elsewhere.
    """
    from mobattn.exporters.agreement import user_tolerance
    from mobattn.exporters.calibration import calibration_images
    from mobattn.exporters.validate import validate_artifact

    size = parse_resolution(resolution or own_resolution(model))
    subject = build_subject(model, attention, dim, hw, heads, 1, weights, size)
    image_arrays = calibration_images(subject, images, option="--images") if images else None
    with user_tolerance(rtol, atol):
        agreement, facts = validate_artifact(artifact, subject, precision, image_arrays)
    record = {"artifact": artifact, **agreement.to_dict(), **facts}
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
                "tolerance",
                "inputs",
                "passed",
                "note",
            )
        ]
        console.print(make_table(f"validation of {artifact}", ["", "value"], rows))
    return 0 if agreement.passed else 1
