"""``mobattn fidelity``: accuracy after conversion, per artifact, on real images."""

from __future__ import annotations

from pathlib import Path

import click

from mobattn.errors import MobattnError
from mobattn.parsing import parse_csv, plural

from .common import CONTEXT, json_option, progress_bar
from .console import console, err_console, make_table, print_json, print_warning


@click.command("fidelity", context_settings=CONTEXT)
@click.option("--model", required=True, help="Model name (see `mobattn list models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local checkpoint (trained weights).")
@click.option("--attention", help="Swapped-in attention (needs weights trained with it).")
@click.option("--resolution", type=int, help="Input resolution (default: the model's).")
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="Images to measure on: an ImageFolder, a CSV (file,class_index) or a list of files.",
)
@click.option("--files", type=click.Path(dir_okay=False), help="Only the images this list names.")
@click.option("--limit", type=int, help="Only the first N images.")
@click.option("--to", "targets", default="onnx", show_default=True, help="Targets, comma-separated.")
@click.option("--precision", "precisions", help="Precisions, comma-separated (default: each target's own).")
@click.option(
    "--calibration",
    type=click.Path(),
    help="int8: images to calibrate on (as `export`; default: random inputs).",
)
@click.option(
    "--validation-images", type=click.Path(), help="int8: held-out images to judge it on (as `export`)."
)
@click.option("--int8-recipe", help="int8: outlier-aware (default), all-ops or dynamic (as `export`).")
@click.option(
    "--int8-target",
    type=float,
    help="int8: keep harmful layers in float until this share agrees (as `export`).",
)
@click.option(
    "--results",
    default="results/fidelity.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Append a row per artifact here.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "md"]),
    default="table",
    show_default=True,
    help="md: the rows as a Markdown table (the benchmark page's).",
)
@json_option
def command(
    model,
    weights,
    attention,
    resolution,
    data,
    files,
    limit,
    targets,
    precisions,
    calibration,
    validation_images,
    int8_recipe,
    int8_target,
    results,
    fmt,
    json_out,
) -> int:
    """Accuracy after conversion: each artifact run on real images against torch fp32.

    \b
      mobattn fidelity --model vit_tiny_patch16_224 --weights vit.pth \\
          --data real/labels.csv --files real/evaluation.txt \\
          --to onnx,executorch,litert,coreml --precision fp16,int8 --calibration real/calibration.txt

    Every artifact is exported as `mobattn export` would (int8 calibrated on --calibration
    and judged on held-out images) and then run on every image whatever the verdict. Per
    artifact: top-1 agreement with torch fp32 and its 95% interval, the change in top-1
    with its interval (labelled images; a subset's top-1, never a dataset's), the logits'
    cosine (mean and 1st percentile), the size against the float weights, and whether
    `export` keeps it and why not. Rows are appended to --results. Exit 0 when every
    artifact was measured and stored, 1 when one could not be made (or the rows could not
    be stored: they are printed anyway).
    """
    from mobattn.bench.fidelity import measure_all, taking_int8_options, variants
    from mobattn.exporters.formats import get_target

    target_list = parse_csv(targets, "--to")
    for target in target_list:
        get_target(target).require()
    chosen, skipped = variants(target_list, parse_csv(precisions, "--precision") if precisions else None)
    if not chosen:
        raise MobattnError("no target takes the precisions asked: " + "; ".join(skipped))
    if weights is not None and not Path(weights).is_file():
        raise MobattnError(f"weights file not found: {weights}")
    if limit is not None and limit <= 0:
        raise MobattnError(f"--limit must be positive, got {limit}")
    from mobattn.exporters.int8_recipe import check_recipe, check_target

    check_recipe("int8", calibration, int8_recipe)  # before any image is read
    check_target("int8", calibration, int8_target)
    _check_appendable(Path(results))  # before minutes of measuring, not after
    subject = _subject(model, attention, resolution, weights)
    int8_options = dict(calibration=calibration, int8_recipe=int8_recipe, int8_target=int8_target)
    chosen, refused = taking_int8_options(subject, chosen, **int8_options)
    if not chosen:
        raise MobattnError("; ".join(refused))
    skipped += refused
    evaluation, calibration_options = _prepare(
        subject, model, data, files, limit, calibration, validation_images
    )
    calibration_options.update(
        {k: v for k, v in (("int8_recipe", int8_recipe), ("int8_target", int8_target)) if v}
    )
    for line in skipped:
        print_warning(f"not measured: {line}")
    progress, task = progress_bar("fidelity", len(chosen) * len(evaluation.images))
    with progress:
        measured = measure_all(
            subject,
            chosen,
            evaluation,
            calibration_options,
            on_start=lambda v: progress.update(task, description=f"fidelity: exporting and running {v.name}"),
            on_image=lambda: progress.advance(task),
        )
    rows = [row for _, row in measured if not isinstance(row, str)]
    try:
        _append(rows, Path(results))
        appended = True
    except MobattnError as exc:  # the figures are still printed below: minutes of work kept
        print_warning(f"{exc}; the rows are printed but not stored")
        appended = False
    for variant, reason in measured:
        if isinstance(reason, str):
            print_warning(f"{variant.name}: not measured: {reason}")
    if json_out:
        print_json([row.to_dict() for row in rows])
    elif fmt == "md":
        from mobattn.bench.fidelity import markdown

        click.echo(markdown(rows), nl=False)
    else:
        print_table(rows, evaluation)
    return 0 if appended and len(rows) == len(measured) else 1


def _subject(model, attention, resolution, weights):
    """The model as the exporters take it, at the resolution asked (else its own)."""
    from mobattn.exporters import model_subject
    from mobattn.parsing import parse_resolution

    from .common import own_resolution

    size = parse_resolution(str(resolution) if resolution else own_resolution(model))
    return model_subject(model, attention, size, weights=weights)


def _prepare(subject, model, data, files, limit, calibration, validation_images):
    """The evaluation images with torch fp32's answers, and int8's options."""
    from mobattn.bench.fidelity import evaluation_of
    from mobattn.evaluate import load_image, preprocess
    from mobattn.exporters.calibration import split_images
    from mobattn.image_sources import read_source
    from mobattn.models import get_model_config

    size = tuple(subject.input_shape[-2:])  # (height, width)
    source = read_source(data, files, labels=False)
    samples = source.samples[:limit] if limit else source.samples
    if not samples:
        raise MobattnError(f"--data {data}: no images")
    config = get_model_config(model)
    with err_console.status(
        f"preprocessing {plural(len(samples), 'image')} and running torch fp32 on them..."
    ):
        images = [
            preprocess(load_image(p), size, config.crop_pct, config.mean, config.std, config.interpolation)
            for p, _ in samples
        ]
        labels = [label for _, label in samples]
        evaluation = evaluation_of(subject, images, labels, f"{data}" + (f" ({files})" if files else ""))
    options = {}
    if calibration:
        options["calibration"], held_out = split_images(subject, calibration, validation_images)
        options["validation_images"] = held_out or None
    elif validation_images:
        raise MobattnError("--validation-images judges an int8 calibrated on images: give --calibration too")
    return evaluation, options


def _check_appendable(results: Path) -> None:
    import os

    folder = next((p for p in (results.parent, *results.parent.parents) if p.exists()), Path("."))
    if results.exists() and not results.is_file():
        raise MobattnError(f"--results {results} is not a file")
    if not os.access(results if results.exists() else folder, os.W_OK):
        raise MobattnError(f"--results {results}: cannot write there")


def _append(rows, results: Path) -> None:
    from mobattn.bench.results import append_row_dict

    results.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:
        append_row_dict(results, row.to_dict())
    if rows:
        err_console.print(f"appended {plural(len(rows), 'row')} to {results}", highlight=False)


def print_table(rows, evaluation) -> None:
    """One line per artifact; the intervals are 95%."""
    labelled = evaluation.labels is not None
    table_rows = []
    for r in rows:
        low, high = r.agreement_interval
        cells = [f"{r.target} {r.precision}", f"{r.agreement:.2%} [{low:.1%}, {high:.1%}]"]
        if labelled:
            d_low, d_high = r.top1_delta_interval
            cells.append(
                f"{r.top1:.2%} ({r.top1_delta * 100:+.2f} [{d_low * 100:+.2f}, {d_high * 100:+.2f}])"
            )
        cells += [f"{r.cosine_mean:.4f} ({r.cosine_p1:.4f})", f"{r.size_ratio:.2f}x", r.verdict]
        table_rows.append(cells)
    columns = ["artifact", "top-1 agreement"]
    if labelled:
        columns.append("top-1 here (Δ points)")
    columns += ["cosine mean (p1)", "size / fp32 weights", "mobattn export"]
    title = f"accuracy after conversion on {plural(len(evaluation.images), 'image')}"
    console.print(make_table(title, columns, table_rows, set(), fold={"mobattn export"}))
    if labelled and rows:
        said = f"torch fp32 top-1 on these images: {rows[0].top1_torch:.2%}"
        err_console.print(f"{said} (a subset's, not the dataset's top-1)", highlight=False)
