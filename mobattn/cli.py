"""The ``mobattn`` command (click).

Every subcommand prints a rich table for people and, with ``--json``, plain JSON for
programs. User errors end in one red line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import click
from rich.text import Text

from mobattn import __version__
from mobattn.console import console, err_console, human_count, make_table, print_error, print_json
from mobattn.errors import MobattnError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_state = {"debug": False}

json_option = click.option("--json", "json_out", is_flag=True, help="Print JSON instead of a table.")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="mobattn")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def app(debug: bool) -> None:
    """Efficient attention for mobile vision: reference modules, exports and
    on-device-style benchmarks."""
    _state["debug"] = debug


# --- list -------------------------------------------------------------------------


@app.group("list", context_settings=CONTEXT)
def list_group() -> None:
    """List the registered attentions or models."""


@list_group.command("attentions")
@click.option("--dim", type=int, default=96, show_default=True, help="Channels at which to report the cost.")
@click.option("--hw", default="14x14", show_default=True, help="Token grid HxW at which to report the cost.")
@json_option
def list_attentions_cmd(dim: int, hw: str, json_out: bool) -> None:
    """The attention mechanisms, with their cost at one setting."""
    from mobattn.describe import describe_all_attentions
    from mobattn.parsing import parse_hw

    infos = describe_all_attentions(_positive(dim, "--dim"), parse_hw(hw))
    if json_out:
        return print_json([i.to_dict() for i in infos])
    rows = [
        [i.attention, _settings(i.settings), human_count(i.params), human_count(i.macs), i.description]
        for i in infos
    ]
    title = f"attentions at dim {dim}, {hw} tokens (batch 1)"
    console.print(
        make_table(title, ["attention", "settings", "params", "MACs", "what"], rows, {"params", "MACs"})
    )


@list_group.command("models")
@json_option
def list_models_cmd(json_out: bool) -> None:
    """The models, with measured params and GMACs at 224 and published top-1."""
    from mobattn.describe import describe_all_models

    infos = describe_all_models()
    if json_out:
        return print_json([i.to_dict() for i in infos])
    rows = [
        [
            i.model,
            f"{i.params / 1e6:.2f} M",
            f"{i.macs / 1e9:.3f}",
            _opt(i.published_top1, "{:.1f} %"),
            _opt(i.published_latency_ms, "{:.1f} ms"),
        ]
        for i in infos
    ]
    cols = ["model", "params", "GMACs", "top-1 (published)", "latency (published)"]
    console.print(make_table("models at 224x224", cols, rows, set(cols[1:])))


# --- info ---------------------------------------------------------------------------


@app.command("info", context_settings=CONTEXT)
@click.option("--model", help="Model name (see `mobattn list models`).")
@click.option("--attention", help="Attention name; with --model, the swapped-in token mixer.")
@click.option("--dim", type=int, help="Channels of a bare attention module.")
@click.option("--hw", help="Token grid HxW of a bare attention module.")
@click.option("--heads", type=int, help="Heads of a bare attention (default: the swap rule).")
@click.option("--resolution", default="224", show_default=True, help="Model input resolution, N or HxW.")
@json_option
def info_cmd(model, attention, dim, hw, heads, resolution, json_out) -> None:
    """Parameters and multiply-accumulates of a model or of one attention module.

    \b
      mobattn info --model swiftformer_s --attention hilo --resolution 320
      mobattn info --attention hilo --dim 96 --hw 14x14 --heads 6
    """
    from mobattn.describe import describe_attention, describe_model
    from mobattn.parsing import parse_hw, parse_resolution

    if model is None:
        if attention is None or dim is None or hw is None:
            raise MobattnError("give --model NAME, or --attention NAME --dim D --hw HxW")
        info = describe_attention(
            attention,
            _positive(dim, "--dim"),
            parse_hw(hw),
            None if heads is None else _positive(heads, "--heads"),
        )
        if json_out:
            return print_json(info.to_dict())
        rows = [
            ["attention", info.attention],
            ["settings", _settings(info.settings)],
            ["dim", info.dim],
            ["tokens", f"{hw} = {info.tokens}"],
            ["params", f"{info.params:,}"],
            ["MACs (analytic)", f"{info.macs:,}"],
            ["MACs (torch FLOP counter)", f"{info.measured_macs:,}"],
        ]
        return console.print(make_table(info.description, ["", "value"], rows))

    res = parse_resolution(resolution)
    info = describe_model(model, attention, res)
    if json_out:
        return print_json(info.to_dict())
    rows = [
        ["params", f"{info.params / 1e6:.2f} M", _opt(info.published_params_m, "{:.1f} M")],
        ["GMACs", f"{info.macs / 1e9:.3f}", _opt(info.published_gmacs, "{:.1f} (at 224)")],
        [
            "top-1 (ImageNet-1K)",
            "n/a",
            _opt(info.published_top1 if info.attention == "eaa" else None, "{:.1f} %"),
        ],
        ["latency", "see `mobattn bench`", _opt(info.published_latency_ms, "{:.1f} ms")],
        [
            "preprocessing",
            f"{info.interpolation}, crop {info.crop_pct}, mean {info.mean}, std {info.std}",
            "",
        ],
    ]
    title = f"{info.model} with {info.attention} at {info.resolution[0]}x{info.resolution[1]}"
    console.print(make_table(title, ["", "measured", "published"], rows))
    mixer_rows = [[m.stage, m.dim, m.tokens, _settings(m.settings)] for m in info.mixers]
    console.print(
        make_table(
            "token mixer per stage (swap rule: mobattn.models.swap)",
            ["stage", "dim", "tokens", "settings"],
            mixer_rows,
        )
    )
    if info.published_source:
        console.print(f"[dim]published: {info.published_source}[/dim]")


# --- export -------------------------------------------------------------------------


def subject_options(func):
    """The options that name what to export or measure: a model or a bare attention."""
    options = [
        click.option("--model", help="Model name (see `mobattn list models`)."),
        click.option("--attention", help="Attention name; with --model, the swapped-in token mixer."),
        click.option("--dim", type=int, help="Channels of a bare attention (no --model)."),
        click.option("--hw", help="Token grid HxW of a bare attention."),
        click.option("--heads", type=int, help="Heads of a bare attention (default: the swap rule)."),
        click.option("--batch", type=int, default=1, show_default=True, help="Batch size."),
        click.option("--weights", type=click.Path(dir_okay=False), help="Local checkpoint for --model."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _reject_attention_sizes(dim, hw, heads) -> None:
    if dim is not None or hw is not None or heads is not None:
        raise MobattnError("--dim/--hw/--heads describe a bare attention; drop them with --model")


def build_subject(model, attention, dim, hw, heads, batch, weights, resolution: tuple[int, int]):
    from mobattn.exporters import attention_subject, model_subject
    from mobattn.parsing import parse_hw

    if model is not None:
        _reject_attention_sizes(dim, hw, heads)
        return model_subject(model, attention, resolution, _positive(batch, "--batch"), weights)
    if attention is None or dim is None or hw is None:
        raise MobattnError("give --model NAME, or --attention NAME --dim D --hw HxW")
    if weights is not None:
        raise MobattnError("--weights applies to --model only")
    return attention_subject(
        attention, _positive(dim, "--dim"), parse_hw(hw), heads, _positive(batch, "--batch")
    )


@app.command("export", context_settings=CONTEXT)
@subject_options
@click.option("--resolution", default="224", show_default=True, help="Model input resolution, N or HxW.")
@click.option(
    "--to",
    "targets",
    default="onnx",
    show_default=True,
    help="onnx, coreml, executorch, or several: onnx,coreml.",
)
@click.option("--out", "out_dir", default="exports", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="Default: fp32 (ONNX, ExecuTorch), fp16 (Core ML). int8: ExecuTorch (XNNPACK quantizer).",
)
@click.option("--force", is_flag=True, help="Replace an existing artifact.")
@click.option("--dynamic", is_flag=True, help="ONNX: dynamic batch (and H, W for models).")
@click.option("--no-simplify", is_flag=True, help="ONNX: skip onnxsim.")
@click.option("--opset", type=int, default=20, show_default=True, help="ONNX opset (17 or newer).")
@click.option(
    "--min-target", default="iOS16", show_default=True, help="Core ML: iOS16, iOS17, iOS18 or iOS26."
)
@click.option(
    "--image-input", is_flag=True, help="Core ML: take an RGB image; mean/std folded into the input."
)
@click.option("--compress", help="Core ML weights: int8, palettize4, palettize6 or palettize8.")
@click.option(
    "--calibration",
    type=click.Path(file_okay=False),
    help="ExecuTorch int8: an ImageFolder of images to calibrate on (default: random inputs).",
)
@json_option
def export_cmd(
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
    dynamic,
    no_simplify,
    opset,
    min_target,
    image_input,
    compress,
    calibration,
    json_out,
) -> int:
    """Export a model or a bare attention to ONNX, Core ML or ExecuTorch, then validate it.

    \b
      mobattn export --model swiftformer_s --to coreml
      mobattn export --model swiftformer_xs --attention hilo --to onnx --dynamic
      mobattn export --attention ufo --dim 64 --hw 14x14 --to onnx,coreml
      mobattn export --model swiftformer_s --to executorch --precision int8

    Exit code 0 if every artifact validates, 1 if one fails (nothing is kept for it).
    """
    from pathlib import Path

    from mobattn.exporters import export
    from mobattn.exporters.export import check_request, check_target
    from mobattn.parsing import parse_resolution

    target_list = [t.strip() for t in targets.split(",") if t.strip()] or ["onnx"]
    for target in target_list:
        check_target(target)
    res = parse_resolution(resolution)
    subject = build_subject(model, attention, dim, hw, heads, batch, weights, res)
    options = dict(
        dynamic=dynamic or None,
        simplify=not no_simplify,
        opset=opset,
        min_target=min_target,
        image=image_input or None,
        compress=compress,
        calibration=calibration_images(subject, calibration) if calibration else None,
    )
    for target in target_list:  # every target's options, before the first file is written
        check_request(subject, target, precision, **options)
    records = []
    for target in target_list:
        with err_console.status(f"exporting {subject.stem()} to {target}..."):
            records.append(export(subject, target, Path(out_dir), precision, force, **options))
    if json_out:
        print_json(records[0].to_dict() if len(records) == 1 else [r.to_dict() for r in records])
    else:
        print_export_table(records)
    return 0 if all(r.status == "ok" for r in records) else 1


def calibration_images(subject, folder: str) -> list:
    """Images of an ImageFolder, preprocessed as the model expects, for int8 calibration."""
    from mobattn.evaluate import image_folder, load_image, preprocess
    from mobattn.models import get_model_config

    if not subject.is_model:
        raise MobattnError("--calibration takes images, so it needs --model (a bare attention takes tokens)")
    config = get_model_config(subject.model)
    h = subject.input_shape[2]
    samples, _ = image_folder(folder)
    return [
        preprocess(load_image(path), h, config.crop_pct, config.mean, config.std, config.interpolation)
        for path, _ in samples[:64]
    ]


def print_export_table(records) -> None:
    rows = []
    for r in records:
        v = r.validation
        check = (
            f"max rel {v['max_rel']:.1e}, cos {v['cosine']:.6f}"
            if v
            else r.details.get("predictions", "spec checked")
        )
        status = Text(r.status, style="green" if r.status == "ok" else "red")
        rows.append(
            [
                r.target,
                status,
                r.path if r.status == "ok" else r.reason,
                f"{r.size_bytes / 1e6:.2f} MB",
                r.op_count,
                f"{r.seconds:.1f}",
                check,
            ]
        )
    cols = ["target", "status", "path", "size", "ops", "seconds", "validation"]
    console.print(make_table("export", cols, rows, {"size", "ops", "seconds"}, fold={"path", "validation"}))


# --- bench and sweep ----------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise MobattnError(f"--threads must be integers like 1,2, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise MobattnError(f"--threads must be positive, got '{text}'")
    return values


def _check_backends(names: list[str]) -> list[str]:
    from mobattn.bench.config import BACKENDS
    from mobattn.errors import unknown_name_error

    for name in names:
        if name not in BACKENDS:
            raise unknown_name_error("backend", name, list(BACKENDS))
    return names


def _check_device(device: str) -> str:
    from mobattn.bench.backends import check_device
    from mobattn.bench.config import DEVICES
    from mobattn.errors import unknown_name_error

    if device not in DEVICES:
        raise unknown_name_error("device", device, list(DEVICES))
    check_device(device)
    return device


def _check_artifact(path: str) -> str:
    """Refuse a missing or corrupt artifact up front; return the backend that runs it."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise MobattnError(f"artifact not found: {file}")
    if file.suffix not in (".onnx", ".pte"):
        raise MobattnError(f"cannot benchmark {file.name}: only .onnx and .pte artifacts are supported")
    try:
        if file.suffix == ".pte":
            from mobattn.exporters.to_executorch import load_method, require_executorch

            require_executorch()
            load_method(file)
            return "executorch"
        import onnx

        onnx.checker.check_model(str(file))
        return "onnxruntime"
    except MobattnError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is a corrupt artifact
        kind = "ExecuTorch program" if file.suffix == ".pte" else "ONNX model"
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise MobattnError(f"{file} is not a valid {kind}: {first}") from None


def run_with_progress(configs, isolate: bool, results_path=None, title: str = "measuring") -> list[dict]:
    """Run configurations one by one under a progress bar; append each row to
    ``results_path`` the moment it is measured."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from mobattn.bench.compute import matmul_peak_gflops
    from mobattn.bench.results import append_row
    from mobattn.bench.runner import run

    rows = []
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(title, total=len(configs))
        for config in configs:
            progress.update(task, description=f"{title}: {config.label()}")
            if config.matmul_peak_gflops is None:
                config.matmul_peak_gflops = matmul_peak_gflops(config.threads, config.device)
            row = run(config, isolate=isolate)
            rows.append(row)
            if results_path is not None:
                append_row(results_path, row)
            progress.advance(task)
        progress.update(task, description=title)
    return rows


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def print_bench_table(rows: list[dict], title: str = "latency (batch 1)") -> None:
    table_rows = []
    for r in rows:
        if r.get("kind") == "attention":
            subject, size = f"{r['attention']} d{r['dim']}", f"{r['hw'][0]}x{r['hw'][1]} ({r['tokens']})"
        elif r.get("kind") == "model":
            subject, size = (
                r["model"] + ("" if r["attention"] == "eaa" else f"+{r['attention']}"),
                "x".join(map(str, r["resolution"])),
            )
        else:
            subject, size = r.get("file"), "x".join(map(str, r.get("details", {}).get("input_shape", [])))
        status = (
            Text("ok")
            if r["status"] == "ok"
            else Text(f"{r['status']}: {r.get('reason', '')[:60]}", style="red")
        )
        fraction = r.get("fraction_of_peak")
        table_rows.append(
            [
                subject,
                size,
                f"{r['backend']}/{r['device']}",
                r["threads"],
                status,
                _fmt(r.get("median_ms"), ".3f"),
                _fmt(r.get("p90_ms"), ".3f"),
                _fmt(r.get("cv"), ".1%"),
                _fmt(r.get("iterations"), "d"),
                _fmt(r.get("peak_rss_mb"), ".1f"),
                _fmt(r.get("gflops_per_s"), ".1f"),
                "-" if fraction is None else f"{fraction:.0%}",
            ]
        )
    cols = [
        "subject",
        "size",
        "backend",
        "thr",
        "status",
        "median ms",
        "p90 ms",
        "cv",
        "runs",
        "peak MB",
        "GFLOP/s",
        "of peak",
    ]
    console.print(make_table(title, cols, table_rows, set(cols[5:]) | {"thr"}))


@app.command("bench", context_settings=CONTEXT)
@click.argument("artifact", required=False, type=click.Path(dir_okay=False))
@subject_options
@click.option(
    "--resolution", help="Resolutions, e.g. 224,320 (models: default 224; .onnx files: fills dynamic H, W)."
)
@click.option(
    "--backend",
    "backends",
    default="torch",
    show_default=True,
    help="torch, onnxruntime, executorch, or several: torch,onnxruntime.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--threads", default="1", show_default=True, help="Intra-op threads, e.g. 1,2 (inter-op is 1).")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="fp16: onnxruntime, or torch on CUDA; int8: executorch.",
)
@click.option(
    "--profile",
    type=click.Choice(["default", "mlperf", "quick"]),
    default="default",
    show_default=True,
    help="default: a few seconds each; mlperf: >= 1024 queries (MLPerf single-stream).",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds per configuration.")
@click.option("--no-isolate", is_flag=True, help="Measure in this process instead of a fresh one each.")
@click.option("--results", type=click.Path(dir_okay=False), help="Also append each row to this JSONL file.")
@json_option
def bench_cmd(
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
    timeout,
    no_isolate,
    results,
    json_out,
) -> None:
    """Latency and memory, batch 1, few threads: a model, a bare attention, or an .onnx file.

    \b
      mobattn bench --model swiftformer_s --resolution 224,384 --backend onnxruntime --threads 1
      mobattn bench --attention mhsa --dim 64 --hw 14x14,28x28,56x56 --backend torch,onnxruntime
      mobattn bench exports/swiftformer_s-224.onnx --threads 1,2
    """
    from itertools import product
    from pathlib import Path

    from mobattn.attention import get_attention_class
    from mobattn.bench.backends import check_backend
    from mobattn.bench.config import BenchConfig
    from mobattn.models import get_model_entry
    from mobattn.parsing import parse_hw_list, parse_resolutions

    thread_list = _threads(threads)
    backend_list = _check_backends(_csv(backends))
    _check_device(device)
    if artifact is None:
        for backend in backend_list:
            check_backend(backend, device, precision)
    common = dict(
        device=device,
        batch=_positive(batch, "--batch"),
        precision=precision,
        profile=profile,
        timeout_s=timeout,
    )
    configs = []
    if artifact is not None:
        if model or attention:
            raise MobattnError("give an artifact file or --model/--attention, not both")
        runtime = _check_artifact(artifact)
        check_backend(runtime, device, precision)
        sizes = [list(r) for r in parse_resolutions(resolution)] if resolution else [None]
        for size, t in ((s, t) for s in sizes for t in thread_list):
            configs.append(BenchConfig("file", runtime, threads=t, file=artifact, resolution=size, **common))
    elif model is not None:
        _reject_attention_sizes(dim, hw, heads)
        get_model_entry(model)
        if attention is not None:
            get_attention_class(attention)
        if weights is not None and not Path(weights).is_file():
            raise MobattnError(f"weights file not found: {weights}")
        for res, b, t in product(parse_resolutions(resolution or "224"), backend_list, thread_list):
            configs.append(
                BenchConfig(
                    "model",
                    b,
                    threads=t,
                    model=model,
                    attention=attention,
                    resolution=list(res),
                    weights=weights,
                    **common,
                )
            )
    else:
        if attention is None or dim is None or hw is None:
            raise MobattnError("give an .onnx file, --model NAME, or --attention NAME --dim D --hw HxW")
        get_attention_class(attention)
        for grid, b, t in product(parse_hw_list(hw), backend_list, thread_list):
            configs.append(
                BenchConfig(
                    "attention",
                    b,
                    threads=t,
                    attention=attention,
                    dim=_positive(dim, "--dim"),
                    hw=list(grid),
                    heads=heads,
                    **common,
                )
            )
    rows = run_with_progress(configs, isolate=not no_isolate, results_path=Path(results) if results else None)
    if json_out:
        return print_json(rows)
    print_bench_table(rows)


@app.command("sweep", context_settings=CONTEXT)
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="attention-scaling, models or quick.")
@click.option(
    "--results",
    default="results/sweep.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="JSONL file the rows are appended to; rows already there are skipped.",
)
@click.option("--shard", help="Run only shard i of n, e.g. 2/4.")
@click.option("--no-isolate", is_flag=True, help="Measure in this process instead of a fresh one each.")
@click.option("--dry-run", is_flag=True, help="List the configurations that would run.")
@json_option
def sweep_cmd(grid_file, preset, results, shard, no_isolate, dry_run, json_out) -> None:
    """Run a grid of measurements from a TOML file or a preset; resumable.

    \b
      mobattn sweep --preset attention-scaling
      mobattn sweep my_grid.toml --results results/mine.jsonl --shard 1/2
    """
    from pathlib import Path

    from mobattn.bench import sweep as sweeps
    from mobattn.environment import environment

    grid = sweeps.load_grid(preset, grid_file)
    index, count = sweeps.parse_shard(shard)
    for device in grid.devices:
        _check_device(device)
    results_path = Path(results)
    configs = sweeps.shard(grid.configs(), index, count)
    todo, skipped = sweeps.pending(configs, results_path, environment())
    err_console.print(
        f"{len(configs)} configurations in shard {index}/{count}; {skipped} already in "
        f"{results_path}, {len(todo)} to run"
    )
    if dry_run:
        for config in todo:
            console.print(config.label())
        return
    run_with_progress(todo, isolate=not no_isolate, results_path=results_path, title="sweep")
    print_sweep_summary(results_path, json_out)


def print_sweep_summary(results_path, json_out: bool) -> None:
    """Fitted exponents k of latency ~ a * N^k, per mechanism and setting."""
    from dataclasses import asdict

    from mobattn.bench.fit import FIT_COLUMNS, fit_cells, fit_exponents
    from mobattn.bench.results import read_rows, status_counts

    rows = read_rows(results_path)
    fits = fit_exponents(rows)
    statuses = status_counts(rows)
    if json_out:
        return print_json({"results": str(results_path), "rows": statuses, "fits": [asdict(f) for f in fits]})
    console.print(f"{results_path}: " + ", ".join(f"{n} {s}" for s, n in statuses.items()))
    table_rows = [fit_cells(f) for f in fits]
    cols = FIT_COLUMNS
    if table_rows:
        console.print(
            make_table("empirical complexity: latency ~ a·N^k", cols, table_rows, {"k", "r²", "points"})
        )


@app.command("merge", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Merged JSONL file.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def merge_cmd(inputs, out, force) -> None:
    """Merge the JSONL results of several shards or machines (last row wins per key)."""
    import json
    from pathlib import Path

    from mobattn.bench.results import merge
    from mobattn.exporters.files import staged

    rows = merge([Path(p) for p in inputs])
    with staged(Path(out), force) as tmp:
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    console.print(f"{len(rows)} rows from {len(inputs)} files -> {out}")


# --- eval, table, report -------------------------------------------------------------


@app.command("eval", context_settings=CONTEXT)
@click.option("--model", required=True, help="Model name.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Local checkpoint (trained weights).")
@click.option(
    "--data", required=True, type=click.Path(file_okay=False), help="ImageFolder root: <class>/<image>."
)
@click.option("--attention", help="Swapped-in attention (needs weights trained with it).")
@click.option("--resolution", type=int, help="Input resolution (default: the model's).")
@click.option(
    "--artifact", type=click.Path(dir_okay=False), help="Evaluate this .onnx export instead, vs torch."
)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--limit", type=int, help="Only the first N images.")
@click.option("--num-classes", type=int, default=1000, show_default=True)
@click.option(
    "--results",
    default="results/accuracy.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Append the result here; `mobattn table` reads it.",
)
@json_option
def eval_cmd(
    model, weights, data, attention, resolution, artifact, batch, limit, num_classes, results, json_out
) -> None:
    """Top-1 and top-5 on an ImageFolder tree, with the model's own preprocessing;
    with --artifact, the export's accuracy and its agreement with torch."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mobattn.bench.results import append_row
    from mobattn.evaluate import evaluate, image_folder

    if weights is not None and not Path(weights).is_file():
        raise MobattnError(f"weights file not found: {weights}")
    samples, _ = image_folder(data)
    total = min(len(samples), limit) if limit else len(samples)
    with Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("eval", total=total)
        result = evaluate(
            model,
            data,
            weights,
            attention,
            resolution,
            artifact,
            _positive(batch, "--batch"),
            limit,
            _positive(num_classes, "--num-classes"),
            on_batch=lambda n: progress.advance(task, n),
        )
    append_row(Path(results), result.to_dict())
    if json_out:
        return print_json(result.to_dict())
    rows = [
        ["images", result.images],
        ["classes", result.classes],
        ["top-1", f"{result.top1:.2f} %"],
        ["top-5", f"{result.top5:.2f} %"],
    ]
    if artifact:
        rows += [
            ["top-1 agreement with torch", f"{result.agreement_top1:.2f} %"],
            ["max |logit difference|", f"{result.max_abs_diff:.2e}"],
        ]
    console.print(
        make_table(
            f"{model} ({result.attention}) at {result.resolution}"
            + (f", artifact {artifact}" if artifact else ""),
            ["", "value"],
            rows,
        )
    )


@app.command("table", context_settings=CONTEXT)
@click.option(
    "--models", default="swiftformer_xs,swiftformer_s,swiftformer_l1,swiftformer_l3", show_default=True
)
@click.option(
    "--attention",
    "attentions",
    default="eaa",
    show_default=True,
    help="Token mixers to compare, e.g. eaa,hilo,mhsa.",
)
@click.option(
    "--backend",
    "backends",
    default="onnxruntime",
    show_default=True,
    help="e.g. onnxruntime,torch,executorch.",
)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--resolution", type=int, default=224, show_default=True)
@click.option(
    "--profile", type=click.Choice(["default", "mlperf", "quick"]), default="default", show_default=True
)
@click.option(
    "--results",
    type=click.Path(dir_okay=False),
    help="Read measurements from this JSONL file; measure only what is missing and append it.",
)
@click.option(
    "--accuracy",
    default="results/accuracy.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Results of `mobattn eval` to join.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["md", "csv", "tex", "json"]), default="md", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the table here (else print it).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def table_cmd(
    models, attentions, backends, threads, resolution, profile, results, accuracy, fmt, out, force
) -> None:
    """A speed–accuracy table: params, GMACs, latency per backend, memory, top-1 and its source.

    \b
      mobattn table --models swiftformer_xs,swiftformer_s --backend onnxruntime,torch --format md
    """
    from pathlib import Path

    from mobattn.bench.config import BenchConfig
    from mobattn.bench.results import read_rows
    from mobattn.bench.table import build_rows, render
    from mobattn.exporters.files import check_writable, staged
    from mobattn.models import list_models
    from mobattn.parsing import parse_names

    model_list = parse_names(models, list_models(), "model")
    from mobattn.attention import list_attentions

    attention_list = parse_names(attentions, list_attentions(), "attention")
    backend_list = _check_backends(_csv(backends))
    if resolution < 32:
        raise MobattnError(f"--resolution must be at least 32 pixels, got {resolution}")
    _positive(threads, "--threads")
    if out:
        check_writable(Path(out), force)
    results_path = Path(results) if results else None
    existing = read_rows(results_path) if results_path else []
    wanted = [
        BenchConfig(
            "model",
            b,
            threads=threads,
            model=m,
            attention=None if a == "eaa" else a,
            resolution=[resolution, resolution],
            profile=profile,
        )
        for m in model_list
        for a in attention_list
        for b in backend_list
    ]
    have = {_row_setting(r) for r in existing if r.get("status") == "ok"}
    missing = [c for c in wanted if _config_setting(c) not in have]
    measured = (
        run_with_progress(missing, isolate=True, results_path=results_path, title="table") if missing else []
    )
    wanted_settings = {_config_setting(c) for c in wanted}
    rows = [r for r in existing + measured if _row_setting(r) in wanted_settings]
    table = build_rows(rows, read_rows(Path(accuracy)), backend_list)
    text = render(table, backend_list, fmt)
    if out:
        with staged(Path(out), force) as tmp:
            tmp.write_text(text)
        err_console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _row_setting(row: dict) -> tuple:
    res = row.get("resolution") or [None]
    return (
        row.get("kind"),
        row.get("model"),
        row.get("attention"),
        res[0],
        row.get("backend"),
        row.get("threads"),
        row.get("device"),
    )


def _config_setting(config) -> tuple:
    return (
        config.kind,
        config.model,
        config.attention or "eaa",
        config.resolution[0],
        config.backend,
        config.threads,
        config.device,
    )


@app.command("report", context_settings=CONTEXT)
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default="results/report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the plots (PNG and SVG) and report.md.",
)
@click.option(
    "--accuracy", default="results/accuracy.jsonl", show_default=True, type=click.Path(dir_okay=False)
)
@click.option("--page", type=click.Path(dir_okay=False), help="Also write a benchmark page (BENCHMARKS.md).")
def report_cmd(results, out_dir, accuracy, page) -> None:
    """Tables and plots from results files: latency and memory against tokens (with the
    fitted exponents) and the speed–accuracy plane with its Pareto front."""
    from pathlib import Path

    from mobattn.bench.page import write_report
    from mobattn.bench.results import merge

    rows = merge([Path(p) for p in results])
    if not rows:
        raise MobattnError("the results files hold no rows")
    written = write_report(
        rows, Path(out_dir), Path(accuracy), [Path(p) for p in results], Path(page) if page else None
    )
    for path in written:
        console.print(f"wrote {path}")


# --- helpers ------------------------------------------------------------------------


def _positive(value: int, option: str) -> int:
    if value <= 0:
        raise MobattnError(f"{option} must be positive, got {value}")
    return value


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _opt(value, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user errors become one line and code 2."""
    _state["debug"] = False
    try:
        result = app.main(args=argv, prog_name="mobattn", standalone_mode=False)
    except MobattnError as exc:
        if _state["debug"]:
            raise
        print_error(str(exc))
        return 2
    except click.UsageError as exc:
        print_error(exc.format_message())
        return 2
    except (click.Abort, KeyboardInterrupt):
        print_error("interrupted")
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
