"""``mobattn bench``: latency and memory of a model, a bare attention or an artifact."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from mobattn.bench.config import BACKENDS, PROFILES
from mobattn.errors import MobattnError, unknown_name_error
from mobattn.parsing import (
    MAX_THREADS,
    check_int,
    parse_csv,
    parse_hw_list,
    parse_ints,
    parse_names,
    parse_resolutions,
)

from .common import (
    CONTEXT,
    check_bare_attention,
    file_kinds,
    json_option,
    measure_with_progress,
    no_cache_option,
    own_resolution,
    reject_attention_sizes,
    repeat_option,
    report_failures,
    subject_options,
    with_limits,
)
from .console import console, make_table, print_json


@click.command("bench", context_settings=CONTEXT)
@click.argument("artifact", required=False, type=click.Path(dir_okay=False))
@subject_options
@click.option(
    "--resolution", help="Resolutions, e.g. 224,320 (models: default their own; files: fills dynamic H, W)."
)
@click.option(
    "--backend",
    "backends",
    help=f"{', '.join(BACKENDS)} (`mobattn list backends`), or several [default: torch; a file: the runtime "
    "of its format].",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--threads", default="1", show_default=True, help="Intra-op threads, e.g. 1,2 (inter-op is 1).")
@click.option(
    "--precision",
    help="fp32, fp16, int8, or several: fp32,int8 (`mobattn list backends`) [default: fp32; a file: "
    "what its content holds, which --precision may only repeat].",
)
@click.option(
    "--profile",
    type=click.Choice(list(PROFILES)),
    default="default",
    show_default=True,
    help="default: a few seconds each; mlperf: >= 1024 queries (MLPerf single-stream).",
)
@click.option("--runs", type=int, help="Exactly N timed runs (instead of the profile's count and time).")
@click.option("--warmup", type=int, help="Exactly N warm-up runs (instead of the profile's).")
@click.option("--samples", is_flag=True, help="Keep every run's time in the row (samples_ms).")
@click.option(
    "--op-profile",
    is_flag=True,
    help="Time per op type and node (top 20), after timing: onnxruntime's profiler, ExecuTorch's "
    "event tracer (ETDump), LiteRT's profiler (its C API).",
)
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds per configuration, export included.",
)
@click.option(
    "--memory-limit",
    type=int,
    help="MiB of address space a worker may add, at least 128 (an excess is an oom row).",
)
@click.option("--no-isolate", is_flag=True, help="Measure in this process instead of a fresh one each.")
@click.option(
    "--pin",
    metavar="CORES",
    help="Pin the measuring worker to these cores, e.g. 0 or 0,1 or 0-3 (part of the row's setting).",
)
@repeat_option
@click.option("--results", type=click.Path(dir_okay=False), help="Also append each row to this JSONL file.")
@click.option("--cold-start", is_flag=True, help="Also show load and first-run times (ms).")
@no_cache_option
@json_option
def command(
    artifact,
    model,
    attention,
    dim,
    hw,
    heads,
    batch,
    weights,
    resolution,
    backends,
    device,
    threads,
    precision,
    profile,
    runs,
    warmup,
    samples,
    op_profile,
    timeout,
    memory_limit,
    no_isolate,
    pin,
    repeat,
    results,
    cold_start,
    no_cache,
    json_out,
) -> int:
    """Latency and memory, batch 1, few threads: a model, a bare attention, or an artifact file ({FILES}).

    \b
      mobattn bench --model swiftformer_s --resolution 224,384 --backend onnxruntime --threads 1
      mobattn bench --model swiftformer_xs,swiftformer_s,deit_tiny     (several models, each at its size)
      mobattn bench --attention mhsa --dim 64 --hw 14x14,28x28,56x56 --backend torch,onnxruntime
      mobattn bench exports/swiftformer_s-224.onnx --threads 1,2

    Exit code 1 when a configuration failed (oom, timeout, error: its row says why), else 0;
    a precision a backend does not measure is a `skipped` row.
    """
    from mobattn.bench.config import (
        DEVICES,
        MIN_MEMORY_LIMIT_MB,
        check_precision,
        check_timeout,
        get_backend,
        parse_pin,
        profile_with,
    )

    # the options first, from the tables alone: a mistyped option imports no torch
    for name in parse_csv(backends or "torch", "--backend"):
        get_backend(name)
    if device not in DEVICES:
        raise unknown_name_error("device", device, list(DEVICES))
    precisions = [check_precision(p) for p in parse_csv(precision or "fp32", "--precision")]
    common = dict(
        batch=check_int(batch, "--batch", 1, 256),
        profile=profile_with(
            profile,
            None if runs is None else check_int(runs, "--runs", 1, 1_000_000),
            None if warmup is None else check_int(warmup, "--warmup", 0, 1_000_000),
        ),
        samples=samples,
        op_profile=op_profile,
        timeout_s=check_timeout(timeout),
        memory_limit_mb=None
        if memory_limit is None
        else check_int(memory_limit, "--memory-limit", MIN_MEMORY_LIMIT_MB),
        pin=None if pin is None else parse_pin(pin),
    )
    if pin is not None and no_isolate:
        raise MobattnError("--pin pins the measuring worker; --no-isolate has none (it measures here)")
    thread_list = parse_ints(threads, "--threads", MAX_THREADS)
    if not no_isolate:  # the warm template imports torch while this process plans
        _prestart_workers(artifact, parse_csv(backends or "torch", "--backend"))
    from mobattn.bench import api
    from mobattn.bench.backend_checks import artifact_backend, check_backend

    if artifact is not None:
        if model or attention or weights:
            raise MobattnError("give an artifact file or --model/--attention/--weights, not both")
        backend, facts = artifact_backend(artifact)
        if backends is not None:  # another backend timing the same format (other runtime options)
            backend = _file_backend(artifact, backend, parse_csv(backends, "--backend"))
        check_backend(backend, device)
        precision = file_precision(artifact, facts["precision"], precision and precisions)
        promised = promised_sizes(facts)
        sizes = parse_resolutions(resolution) if resolution else ([(s, s) for s in promised] or [None])
        check_file_sizes(artifact, facts["input_shape"], sizes, promised)
        configs = api.file_configs(artifact, backend, sizes, thread_list, precision, device, **common)
    else:
        backend_list = parse_csv(backends or "torch", "--backend")
        for backend in backend_list:
            check_backend(backend, device)
        settings = dict(backends=backend_list, threads=thread_list, precisions=precisions, devices=[device])
        configs = _subject_configs(model, attention, dim, hw, heads, weights, resolution, settings, common)
    rows = measure_with_progress(
        configs,
        isolate=not no_isolate,
        results=Path(results) if results else None,
        cache=not no_cache,
        repeat=repeat,
    )
    if json_out:
        print_json([r.to_dict() for r in rows])
    else:
        print_bench_table(rows, cold_start=cold_start)
        if op_profile:
            from .op_profiles import print_op_profiles

            print_op_profiles(rows)
    return report_failures(rows)


command.help = with_limits(command.help.replace("{FILES}", file_kinds(runnable=True)))


def _file_backend(artifact: str, default: str, asked: list[str]) -> str:
    """The one backend ``--backend`` names for a file: any that times its format."""
    from mobattn.bench.config import BACKENDS

    able = [b.name for b in BACKENDS.values() if b.target == BACKENDS[default].target]
    if len(asked) != 1 or asked[0] not in able:
        raise MobattnError(
            f"{Path(artifact).name} runs in {' or '.join(able)}; --backend {','.join(asked)} cannot time it"
        )
    return asked[0]


def _prestart_workers(artifact: str | None, backends: list[str]) -> None:
    """Start the warm template for what will be timed (an artifact's format, or the
    backends' targets); a file of no known format is left to the checks that say so."""
    from mobattn.bench.config import get_backend
    from mobattn.bench.workers import prestart
    from mobattn.exporters.formats import TARGETS

    if artifact is None:
        prestart([get_backend(b).target for b in backends])
        return
    suffix = Path(artifact).suffix.lower()
    prestart([t.name for t in TARGETS.values() if t.suffix == suffix][:1])


def file_precision(artifact: str, content: str, stated: list[str] | None) -> str:
    """A file's row says what the file holds, read from its content (as ``validate``
    judges it); a --precision that says otherwise is refused, not recorded."""
    if stated and stated != [content]:
        raise MobattnError(
            f"{Path(artifact).name} holds {content} (read from its content); "
            f"--precision {','.join(stated)} contradicts it"
        )
    return content


def promised_sizes(facts: dict) -> list[int]:
    """The sizes a file of several sizes (``export --sizes``) was validated at, from its
    metadata; [] for any other file."""
    from mobattn.exporters.sizes import parse_metadata

    return list(parse_metadata((facts.get("metadata") or {}).get("sizes")) or ())


def check_file_sizes(artifact: str, input_shape: list, sizes: list, promised: list[int] = ()) -> None:
    """--resolution fills a file's dynamic height and width; a fixed one cannot change,
    so a row would name a size that was not measured. A file of several sizes is timed
    at the sizes it was validated at, no other."""
    fixed = [d for d in input_shape[2:4] if isinstance(d, int)] if len(input_shape) == 4 else []
    for size in sizes:
        if size is None:
            continue
        if promised and (size[0] != size[1] or size[0] not in promised):
            raise MobattnError(
                f"{Path(artifact).name} takes sizes {','.join(map(str, promised))}; "
                f"--resolution {size[0]}x{size[1]} is not one of them"
            )
        if len(input_shape) != 4:
            raise MobattnError(f"{Path(artifact).name} takes tokens, not images: --resolution does not apply")
        if fixed and list(size) != [
            d if isinstance(d, int) else s for d, s in zip(input_shape[2:4], size, strict=True)
        ]:
            shown = "x".join(str(d) for d in input_shape[2:4])
            raise MobattnError(
                f"{Path(artifact).name} takes {shown} inputs; --resolution {size[0]}x{size[1]} cannot apply"
            )


def _subject_configs(model, attention, dim, hw, heads, weights, resolution, settings, common) -> list:
    from mobattn.bench import api
    from mobattn.catalogue import check_attention, check_resolution_for, swap_for
    from mobattn.catalogue import model_names as list_models

    if model is not None:
        reject_attention_sizes(dim, hw, heads)
        models = parse_names(model, list_models(), "model")  # a list, as `table --models` takes
        for name in models:
            swap_for(name, attention)  # an unknown mechanism, or a family that takes no swap
        if weights is not None and len(models) > 1:
            raise MobattnError("--weights holds one model's weights: give one --model with it")
        if weights is not None and not Path(weights).is_file():
            raise MobattnError(f"weights file not found: {weights}")
        configs = []
        for name in models:
            sizes = parse_resolutions(resolution or own_resolution(name))
            for size in sizes:
                check_resolution_for(name, attention, size)
            configs += api.model_configs([name], [attention], sizes, weights=weights, **settings, **common)
        return configs
    if weights is not None:
        raise MobattnError("--weights applies to --model only (a bare attention has random weights)")
    if resolution is not None:
        raise MobattnError("--resolution describes a model input; a bare attention takes --hw")
    dim, heads = check_bare_attention(attention, dim, hw, heads)
    check_attention(attention)
    return api.attention_configs([attention], [dim], parse_hw_list(hw), heads=heads, **settings, **common)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def within_spread(rows) -> set[int]:
    """Rows (by index) whose median differs from the fastest row of the same size and
    setting by less than the run-to-run spread of either (``--repeat``): a difference
    that repeats of one configuration already show is not evidence."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.ok and r.run_to_run is not None:
            key = (r.kind, str(r.hw or r.resolution), r.dim, r.device, r.threads, r.precision, r.machine)
            groups.setdefault(key, []).append(i)
    marked = set()
    for members in groups.values():
        best = min(members, key=lambda i: rows[i].median_ms)
        for i in members:
            spread = max(rows[i].run_to_run, rows[best].run_to_run)
            if i != best and rows[i].median_ms / rows[best].median_ms - 1 < spread:
                marked.add(i)
    return marked


def print_bench_table(rows, title: str = "latency (batch 1)", cold_start: bool = False) -> None:
    table_rows = []
    repeated = any(r.run_to_run is not None for r in rows)
    close = within_spread(rows)
    for index, r in enumerate(rows):
        if r.kind == "attention":
            size = f"{r.hw[0]}x{r.hw[1]} ({r.tokens})"
        else:
            size = "x".join(map(str, r.resolution or r.details.get("input_shape", [])))
        status = Text("ok") if r.ok else Text(f"{r.status}: {r.reason[:60]}", style="red")
        cv = _fmt(r.cv, ".1%") + (" noisy" if r.noisy else "")
        table_rows.append(
            [
                r.subject_label,
                size,
                f"{r.backend}/{r.device}",
                r.precision,
                r.threads,
                status,
                _fmt(r.median_ms, ".3f") + (" ≈" if index in close else ""),
                _fmt(r.p90_ms, ".3f"),
                cv,
                _fmt(r.iterations, "d"),
                _fmt(r.peak_rss_mib, ".1f"),
                _fmt(r.gflops_per_s, ".1f"),
                _fmt(r.throughput_fps, ".1f"),
                "-" if r.fraction_of_peak is None else f"{r.fraction_of_peak:.0%}",
            ]
            + ([_fmt(r.load_ms, ".1f"), _fmt(r.first_run_ms, ".2f")] if cold_start else [])
            + ([_fmt(r.run_to_run, ".1%")] if repeated else [])
        )
    cols = [
        "subject",
        "size",
        "backend",
        "precision",
        "thr",
        "status",
        "median ms",
        "p90 ms",
        "cv",
        "runs",
        "peak MiB",
        "GFLOP/s",
        "FPS",
        "of matmul peak",
    ] + (["load ms", "first run ms"] if cold_start else [])
    cols += ["run-to-run"] if repeated else []
    console.print(make_table(title, cols, table_rows, set(cols[6:]) | {"thr"}, fold={"subject"}))
    if close:
        console.print(
            "[dim]≈: slower than the fastest row of its size by less than the run-to-run spread "
            "(--repeat): the difference may not be real[/dim]"
        )
