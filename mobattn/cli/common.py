"""What several commands share: the subject options, size checks, progress bars and
small renderers. Commands stay thin: parse, call one library function, render."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from mobattn.errors import MobattnError
from mobattn.parsing import LIMITS_HELP, MAX_BATCH, MAX_DIM, check_int, listed, parse_hw

from .console import err_console

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

json_option = click.option("--json", "json_out", is_flag=True, help="Print a JSON list of records.")
no_cache_option = click.option(
    "--no-cache",
    is_flag=True,
    help="Export every artifact anew and keep none (default: reuse the artifact cache, "
    "$MOBATTN_CACHE or ~/.cache/mobattn; see `mobattn cache info`).",
)


def subject_options(func: Callable) -> Callable:
    """The options that name what to export or measure: a model or a bare attention."""
    options = [
        click.option("--model", help="Model name (see `mobattn list models`)."),
        click.option("--attention", help="Attention name; with --model, the swapped-in token mixer."),
        click.option("--dim", type=int, help=f"Channels of a bare attention (no --model); <= {MAX_DIM}."),
        click.option("--hw", help="Token grid HxW of a bare attention."),
        click.option("--heads", type=int, help="Heads of a bare attention (default: the swap rule)."),
        click.option("--batch", type=int, default=1, show_default=True, help=f"Batch size; <= {MAX_BATCH}."),
        click.option("--weights", type=click.Path(dir_okay=False), help="Local checkpoint for --model."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def file_kinds(runnable: bool = False) -> str:
    """The artifact suffixes help texts name, read from the tables: every target's, or
    (``runnable``) those a benchmark backend runs here."""
    from mobattn.bench.config import BACKENDS
    from mobattn.exporters.formats import TARGETS

    timed = {b.target for b in BACKENDS.values()}
    return listed(t.suffix for t in TARGETS.values() if not runnable or t.name in timed)


def with_limits(text: str) -> str:
    """A command's help with the size bounds appended."""
    return f"{text}\n\n{LIMITS_HELP}"


def check_bare_attention(attention, dim, hw, heads) -> tuple[int, int | None]:
    """A bare attention's dim and heads (its --hw is parsed by the caller: one grid or
    several), or the one-line error saying what is missing."""
    if attention is None or dim is None or hw is None:
        raise MobattnError("give --model NAME, or --attention NAME --dim D --hw HxW")
    dim = check_int(dim, "--dim", 1, MAX_DIM)
    if heads is not None:
        check_int(heads, "--heads", 1, dim)
        if dim % heads:
            raise MobattnError(
                f"--dim {dim} is not divisible by --heads {heads} (each head takes dim/heads channels)"
            )
    return dim, heads


def reject_attention_sizes(dim, hw, heads) -> None:
    if dim is not None or hw is not None or heads is not None:
        raise MobattnError("--dim/--hw/--heads describe a bare attention; drop them with --model")


def build_subject(model, attention, dim, hw, heads, batch, weights, resolution: tuple[int, int]):
    """The exporters' Subject for a model or a bare attention, every size checked."""
    from mobattn.exporters import attention_subject, model_subject

    batch = check_int(batch, "--batch", 1, MAX_BATCH)
    if model is not None:
        reject_attention_sizes(dim, hw, heads)
        return model_subject(model, attention, resolution, batch, weights)
    dim, heads = check_bare_attention(attention, dim, hw, heads)
    if weights is not None:
        raise MobattnError("--weights applies to --model only")
    return attention_subject(attention, dim, parse_hw(hw), heads, batch)


def own_resolution(model: str | None) -> str:
    """A model's own input size as ``--resolution`` text (224 for a bare attention's
    callers, which never use it)."""
    if model is None:
        return "224"
    from mobattn.catalogue import model_entry

    _, h, w = model_entry(model).input_size
    return f"{h}x{w}"


def settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def optional(value, fmt: str, missing: str = "n/a") -> str:
    return missing if value is None else fmt.format(value)


def progress_bar(title: str, total: int):
    """A rich progress bar on stderr with elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
    )
    return progress, progress.add_task(title, total=total)


def report_failures(rows: list) -> int:
    """One line on stderr per configuration that hit oom, timeout or error (its reason),
    and the exit code the README promises: 1 when any did, else 0."""
    from .console import print_error

    failed = [r for r in rows if r.failed]
    for row in failed:
        print_error(
            f"{row.subject_label} {row.backend} t{row.threads} {row.precision}: {row.status}: {row.reason}"
        )
    return 1 if failed else 0


repeat_option = click.option(
    "--repeat",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Measure each configuration N times, each in workers of its own: the row keeps every "
    "repeat's median and their run-to-run spread (the figure that says whether a 5% difference is real).",
)


def fleet_event_printer():
    """What a fleet run says as it goes, one line a configuration event on stderr (a
    fleet's configurations run side by side on several machines: a bar would hide which)."""
    from .console import err_console

    def said(event, config, machine, row) -> None:
        verb = {"start": "started", "row": "done", "lost": "lost its machine", "stalled": "timed out"}[event]
        line = f"{verb}: {config.label()} on {machine.node} ({machine.kind_name})"
        err_console.print(line, highlight=False)

    return said


def fleet_summary_line(rows, wall_s: float) -> str:
    """The one summary line every measuring command ends with, for a fleet run."""
    from mobattn.bench.api import time_accounting

    return time_accounting(rows, wall_s).line() + " (on the fleet: timed runs summed over its machines)"


def measure_with_progress(
    configs,
    isolate: bool = True,
    results=None,
    title: str = "measuring",
    cache: bool = True,
    repeat: int = 1,
) -> list:
    """:func:`mobattn.bench.measure` under a progress bar naming the configuration; then
    one line on stderr: where the wall time went (timed runs against everything else)."""
    import time

    from mobattn.bench import measure
    from mobattn.bench.api import time_accounting

    if cache:
        from mobattn.bench.cache import ArtifactCache

        ArtifactCache().check_usable()  # before the progress bar: one line, nothing measured
    start = time.monotonic()
    progress, task = progress_bar(title, len(configs))
    with progress:
        rows = measure(
            configs,
            isolate=isolate,
            results=results,
            on_start=lambda c: progress.update(task, description=f"{title}: {c.label()}"),
            on_row=lambda _: progress.advance(task),
            cache=cache,
            repeat=repeat,
        )
        progress.update(task, description=title)
    if rows:
        err_console.print(time_accounting(rows, time.monotonic() - start).line())
    return rows


PLAIN = {"highlight": False, "soft_wrap": True}  # one line of plain text on stderr


def subject_from_file(
    artifact, weights, resolution, action: str = "validate", kinds=("model", "attention")
) -> tuple:
    """The subject a mobattn export names in its metadata, said on stderr; a file that
    names none, or one exported from a checkpoint not given again, is one line."""
    from mobattn.exporters.formats import target_for_file
    from mobattn.exporters.probe import probe_file
    from mobattn.exporters.subject import described_by, in_words

    from .console import err_console

    artifact = Path(artifact)
    target = target_for_file(artifact, action)
    probe_file(artifact, action)  # what the file is, and that reading it cannot crash this process
    metadata = target.implementation().file_metadata(artifact)
    said = described_by(metadata)
    if metadata.get("user_tolerance"):
        from .console import print_warning

        print_warning(f"{artifact.name} was exported under a user tolerance ({metadata['user_tolerance']})")
    if said is None:
        raise MobattnError(
            f"{artifact.name} does not name its subject (no mobattn metadata in it): "
            "describe it with --model, or --attention --dim --hw"
        )
    if "attention" not in kinds and not said.get("model"):
        raise MobattnError(f"{artifact.name} is a bare attention's export: {action} takes a model's")
    if said["weights"] == "local checkpoint" and weights is None:
        raise MobattnError(
            f"{artifact.name} was exported from a local checkpoint: give it again with --weights"
        )
    err_console.print(f"subject from {artifact.name}'s metadata: {in_words(said)}", **PLAIN)
    if said.get("model"):
        h, w = said["resolution"]
        return said["model"], said["attention"], None, None, None, resolution or f"{h}x{w}"
    return None, said["attention"], said["dim"], said["hw"], said["heads"], resolution
