"""``mobattn eval``: top-1/top-5 on an ImageFolder, or an export's agreement with torch."""

from __future__ import annotations

from pathlib import Path

import click

from mobattn.errors import MobattnError
from mobattn.parsing import MAX_BATCH, check_int, check_resolution

from .common import CONTEXT, file_kinds, json_option, progress_bar, subject_from_file
from .console import console, err_console, make_table, print_json, print_warning


@click.command("eval", context_settings=CONTEXT)
@click.option("--model", help="Model name (with --artifact, default: the one its metadata names).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local checkpoint (trained weights).")
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="Images: an ImageFolder root (<class>/<image>), a CSV (file,class_index) or 'file label' lines.",
)
@click.option(
    "--files", type=click.Path(dir_okay=False), help="Only the images this list names (one path a line)."
)
@click.option("--attention", help="Swapped-in attention (needs weights trained with it).")
@click.option("--resolution", type=int, help="Input resolution (default: the model's).")
@click.option(
    "--artifact",
    type=click.Path(dir_okay=False),
    help=f"Evaluate this export ({file_kinds(runnable=True)}) instead, vs torch.",
)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--limit", type=int, help="Only N images, spread evenly over the classes (a seeded sample).")
@click.option("--num-classes", type=int, default=1000, show_default=True)
@click.option("--dataset", help="Name of the data, e.g. imagenet-1k-val (needed for a trusted top-1).")
@click.option(
    "--results",
    default="results/accuracy.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Append the result here; `mobattn table` reads it.",
)
@json_option
def command(
    model,
    weights,
    data,
    files,
    attention,
    resolution,
    artifact,
    batch,
    limit,
    num_classes,
    dataset,
    results,
    json_out,
):
    """Top-1 and top-5 on labelled images, with the model's own preprocessing; with
    --artifact, the export's accuracy and its agreement with torch.

    \b
      mobattn eval --model swiftformer_xs --weights xs.pth --data imagenet/val --dataset imagenet-1k-val
      mobattn eval --model vit_tiny_patch16_224 --weights vit.pth \\
        --data real/labels.csv --files real/evaluation.txt
    """
    from mobattn.evaluate import check_artifact, check_images, evaluate, labelled_source, select_samples

    if weights is not None and not Path(weights).is_file():
        raise MobattnError(f"weights file not found: {weights}")
    if model is None:
        if not artifact:
            raise MobattnError("give --model NAME (or --artifact FILE, whose metadata names its model)")
        model, attention, resolution = _model_of(artifact, weights, attention, resolution)
    if resolution is not None:
        check_resolution([resolution, resolution])
    if limit is not None:
        check_int(limit, "--limit", 1)
    source = labelled_source(data, files, num_classes)
    check_images([path for path, _ in select_samples(source.samples, limit)])
    if artifact:
        check_artifact(artifact, model, attention, resolution)
    total = min(len(source.samples), limit) if limit else len(source.samples)
    progress, task = progress_bar("evaluating", total)
    with progress:
        result = evaluate(
            model,
            data,
            weights,
            attention,
            resolution,
            artifact,
            check_int(batch, "--batch", 1, MAX_BATCH),
            limit,
            check_int(num_classes, "--num-classes", 1),
            on_batch=lambda n: progress.advance(task, n),
            dataset=dataset,
            files=files,
        )
    # the result is shown before it is appended: a full disk must not lose what was computed
    if json_out:
        print_json([result.to_dict()])
        return _append(result, results)
    rows = [
        ["images", result.images],
        ["classes present", f"{sum(1 for n in result.class_counts if n)} of {result.classes}"],
        # an untrusted run (a subset, an unknown dataset ...) is no "top-1": say what it is
        ["top-1" if result.trusted else "top-1 on these images", f"{result.top1:.2f} %"],
        ["top-5" if result.trusted else "top-5 on these images", f"{result.top5:.2f} %"],
    ]
    if artifact:
        rows += [
            ["top-1 agreement with torch", f"{result.agreement_top1:.2f} %"],
            ["max |logit difference|", f"{result.max_abs_diff:.2e}"],
        ]
    title = f"{model} ({result.attention}) at {result.resolution}" + (
        f", artifact {artifact}" if artifact else ""
    )
    console.print(make_table(title, ["", "value"], rows))
    return _append(result, results)


def _append(result, results: str) -> None:
    """Append the result to the results file and say how tables will use it."""
    from mobattn.bench.results import append_row_dict

    append_row_dict(Path(results), result.to_dict())
    if result.trusted:
        err_console.print(f"appended to {results}: a trusted top-1, used by `mobattn table` and `report`")
    else:
        print_warning(
            f"appended to {results} as an untrusted top-1 ({'; '.join(result.caveats)}); "
            "tables show it in its own column and keep the published figure"
        )


def _model_of(artifact: str, weights, attention, resolution) -> tuple:
    """The model, mechanism and square resolution a mobattn export's metadata names (said
    on stderr); a bare mechanism's export is refused: it classifies nothing."""
    model, said_attention, _, _, _, size = subject_from_file(artifact, weights, None, "evaluate", ("model",))
    h, w = (int(v) for v in size.split("x"))
    if h != w and resolution is None:
        raise MobattnError(
            f"{Path(artifact).name} takes {h}x{w} images; eval takes square ones (--resolution)"
        )
    return model, attention or said_attention, resolution or h
