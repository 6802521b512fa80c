"""``mobattn export``: a model or a bare attention to any target of the table of formats,
each artifact validated against torch before it is kept."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from mobattn.errors import MobattnError
from mobattn.exporters.formats import PRECISIONS, TARGETS, check_options_apply, get_target
from mobattn.parsing import MAX_RESOLUTION, listed, parse_csv, parse_ints, parse_resolution, plural

from .common import CONTEXT, build_subject, json_option, own_resolution, subject_options, with_limits
from .console import console, err_console, make_table, print_json, print_status_line, print_warning


@click.command("export", context_settings=CONTEXT)
@subject_options
@click.option("--resolution", help="Model input resolution, N or HxW (default: the model's own, e.g. 224).")
@click.option(
    "--to",
    "targets",
    default="onnx",
    show_default=True,
    help=f"{', '.join(TARGETS)}, or several: onnx,coreml.",
)
@click.option("--out", "out_dir", default="exports", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Default per target (see `mobattn list targets`): fp32 ONNX and ExecuTorch, fp16 Core ML.",
)
@click.option("--force", is_flag=True, help="Replace an existing artifact.")
@click.option("--dynamic", is_flag=True, default=None, help="ONNX: dynamic batch (and H, W for models).")
@click.option(
    "--sizes",
    help="Models: one artifact for these input sizes, e.g. 224,256,320, validated at each (ONNX, "
    "ExecuTorch: H and W dynamic between the smallest and largest; LiteRT: a signature per size; "
    "Core ML: enumerated shapes).",
)
@click.option("--no-simplify", "simplify", flag_value=False, default=None, help="ONNX: skip onnxsim.")
@click.option("--opset", type=int, help="ONNX opset, 17..23 (default 20).")
@click.option(
    "--form",
    help="ONNX: reference (default: the modules as written) or mobile (ops onnxruntime's NNAPI and "
    "Core ML providers take).",
)
@click.option(
    "--layout",
    help="Core ML: default (the modules' channels-last tokens) or ane (the Neural Engine's 4-D "
    "channels-first layout; models only).",
)
@click.option("--min-target", help="Core ML: iOS16 (default), iOS17, iOS18 or iOS26.")
@click.option(
    "--image-input", "image", is_flag=True, default=None, help="Core ML: RGB image input, mean/std folded in."
)
@click.option("--compress", help="Core ML weights: int8, palettize4, palettize6 or palettize8.")
@click.option(
    "--calibration",
    type=click.Path(),
    help="int8 (ONNX, ExecuTorch, LiteRT): images to calibrate on, an ImageFolder or a list of files "
    "(default: random inputs).",
)
@click.option(
    "--validation-images",
    type=click.Path(),
    help="int8 with --calibration: held-out images to judge its predictions on (default: the "
    "calibration source minus the images it calibrates on).",
)
@click.option(
    "--int8-recipe",
    help="int8 (ONNX, ExecuTorch, LiteRT): outlier-aware (default: matmul-like layers only, "
    "outlier-dominated inputs kept in float), all-ops (every op the quantizer knows) or dynamic "
    "(ExecuTorch, LiteRT: outlier-aware's layers, inputs quantized per token at run time).",
)
@click.option(
    "--int8-target",
    type=float,
    help="int8 with --calibration: keep the most harmful layers in float until this share of "
    "held-out images keeps the float model's top-1 (e.g. 0.985); the record lists them.",
)
@click.option("--rtol", type=float, help="Judge by allclose with this relative tolerance (Optimum's rule).")
@click.option("--atol", type=float, help="Judge by allclose with this absolute tolerance.")
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    help="int8 judged on images: refused when the 95% interval of the share of held-out images "
    "keeping the float model's top-1 lies under this (default 0.90).",
)
@json_option
def command(
    model,
    attention,
    dim,
    hw,
    heads,
    batch,
    weights,
    resolution,
    targets,
    out_dir,
    precision,
    force,
    rtol,
    atol,
    min_agreement,
    json_out,
    **options,
) -> int:
    """Export a model or a bare attention to TARGETS, then validate it.

    \b
      mobattn export --model swiftformer_s --to coreml
      mobattn export --model swiftformer_xs --attention hilo --to onnx --dynamic
      mobattn export --attention ufo --dim 64 --hw 14x14 --to onnx,coreml
      mobattn export --model swiftformer_s --to executorch --precision int8
      mobattn export --model swiftformer_xs --to onnx,executorch,litert --sizes 224,256,320

    Every artifact is executed and compared with torch before it is kept (Core ML: by
    Core ML on macOS, by mobattn's ML Program reference executor elsewhere). An int8
    calibrated on images is judged by its predictions on held-out images: refused when
    the 95% interval of its top-1 agreement with the float model lies under 0.90
    (--min-agreement); cosine reported. Exit code 0 if
    every artifact validates, 1 if one fails (nothing is kept for it); an artifact nothing
    here can execute is kept with status `unvalidated` and a warning.
    An option that none of the targets takes is an error.
    """
    target_list = parse_csv(targets, "--to")
    for target in target_list:
        get_target(target)
    check_options_apply(target_list, options)  # the options, from the table alone: no torch yet
    from mobattn.exporters import export
    from mobattn.exporters.agreement import user_tolerance
    from mobattn.exporters.calibration import split_images
    from mobattn.exporters.export import ExportRequest

    if options.get("sizes") is not None:
        options["sizes"] = tuple(sorted(set(parse_ints(options["sizes"], "--sizes", MAX_RESOLUTION))))
    size = parse_resolution(resolution or _example_resolution(model, options.get("sizes")))
    subject = build_subject(
        model,
        attention,
        dim,
        hw,
        heads,
        batch,
        weights,
        size,
    )
    if options.get("calibration"):
        options["calibration"], held_out = split_images(
            subject, options["calibration"], options.get("validation_images")
        )
        options["validation_images"] = held_out or None
    elif options.get("validation_images"):
        raise MobattnError("--validation-images judges an int8 calibrated on images: give --calibration too")
    if min_agreement is not None and not (precision == "int8" and options.get("calibration")):
        raise MobattnError(
            "--min-agreement judges an int8 calibrated on images: --precision int8 --calibration"
        )
    # every target's request checked, once, before the first file is written
    requests = [ExportRequest.checked(subject, target, precision, **options) for target in target_list]
    records = []
    for number, request in enumerate(requests, 1):
        with err_console.status(export_status(subject, request, number, len(requests))):
            with user_tolerance(rtol, atol, min_agreement):
                records.append(export(subject, request, Path(out_dir), force=force))
    for record in records:
        if record.status == "unvalidated":
            print_warning(f"{record.target}: {record.path} was written but not validated: {record.reason}")
        elif record.status != "ok":
            print_status_line(f"{record.target}: {record.status}: {record.reason}")
        elif (record.validation or {}).get("kept_under_user_tolerance"):
            print_warning(f"{record.target}: {record.path} {record.validation['note']}")
        left = (record.details or {}).get("not_delegated") if record.status in ("ok", "unvalidated") else None
        if left:  # kept, but not every op on the fast path: said, not only recorded
            ops = ", ".join(f"{count} {op}" for op, count in left.items())
            print_warning(f"{record.target}: {ops} run outside XNNPACK, on the runtime's own kernels")
    if json_out:
        print_json([r.to_dict() for r in records])
    else:
        print_export_table(records)
    return 0 if all(r.status in ("ok", "unvalidated") for r in records) else 1


def _example_resolution(model: str | None, sizes: tuple[int, ...] | None) -> str:
    """What the artifact is traced at: the model's own size, or with --sizes that do not
    include it, the smallest of them."""
    own = own_resolution(model)
    return str(sizes[0]) if sizes and all(own != f"{s}x{s}" for s in sizes) else own


def export_status(subject, request, number: int, count: int) -> str:
    """The spinner's line: which export of how many, and, for int8, that calibrating and
    validating take minutes (an int8 ViT on ExecuTorch or LiteRT: several)."""
    line = f"exporting {subject.stem()} to {request.target}"
    line += f" ({number} of {count})" if count > 1 else ""
    if request.precision == "int8":
        images = request.kwargs.get("calibration")
        source = plural(len(images), "image") if images is not None else "random inputs"
        line += f": int8, calibrating on {source}, then validating; this can take minutes"
        if request.kwargs.get("int8_target"):
            line = line.replace(", then validating", ", searching for the layers to keep in float")
    return line + "..."


def _targets_named() -> str:
    """The targets as the help says them, from the table of formats (never a hand list)."""
    from mobattn.exporters.formats import TARGETS

    return listed(f"{t.name} ({t.suffix})" for t in TARGETS.values())


command.help = with_limits(command.help.replace("TARGETS", _targets_named()))


def print_export_table(records) -> None:
    rows = []
    for r in records:
        v = r.validation
        check = _validation_text(v) if v else r.reason
        status = Text(r.status, style={"ok": "green", "unvalidated": "yellow"}.get(r.status, "red"))
        where = r.path if r.status in ("ok", "unvalidated") else r.reason
        rows.append(
            [r.target, status, where, f"{r.size_bytes / 1e6:.2f} MB", r.op_count, f"{r.seconds:.1f}", check]
        )
    cols = ["target", "status", "path", "size", "ops", "seconds", "validation"]
    console.print(make_table("export", cols, rows, {"size", "ops", "seconds"}, fold={"path", "validation"}))


def _validation_text(v: dict) -> str:
    """The agreement in one cell (a non-finite figure is null in the record)."""

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    kept = "; kept under a user tolerance" if v.get("kept_under_user_tolerance") else ""
    if v.get("criterion") == "top1_agreement":
        low, high = v["top1_interval"]
        agree = f"top-1 agrees {v['top1_agreement']:.1%} [{low:.1%}, {high:.1%}] of {v['images']} held-out"
        return f"{v['executor']}: {agree}, cos {fmt(v['cosine'], '.4f')}{kept}"
    return f"{v['executor']}: max rel {fmt(v['max_rel'], '.1e')}, cos {fmt(v['cosine'], '.6f')}{kept}"
