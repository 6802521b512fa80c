"""The ``mobattn`` command (click).

Every subcommand prints a rich table for people and, with ``--json``, plain JSON for
programs. User errors end in one red line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import click

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
    from mobattn.parsing import parse_hw, parse_resolutions

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

    (res,) = parse_resolutions(resolution)
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


def build_subject(model, attention, dim, hw, heads, batch, weights, resolution: tuple[int, int]):
    from mobattn.exporters import attention_subject, model_subject
    from mobattn.parsing import parse_hw

    if model is not None:
        if dim is not None or hw is not None or heads is not None:
            raise MobattnError("--dim/--hw/--heads describe a bare attention; drop them with --model")
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
    "--to", "targets", default="onnx", show_default=True, help="onnx, coreml, or both: onnx,coreml."
)
@click.option("--out", "out_dir", default="exports", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--precision", type=click.Choice(["fp32", "fp16"]), help="Default: fp32 (ONNX), fp16 (Core ML)."
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
    json_out,
) -> int:
    """Export a model or a bare attention to ONNX and/or Core ML, then validate it.

    \b
      mobattn export --model swiftformer_s --to coreml
      mobattn export --model swiftformer_xs --attention hilo --to onnx --dynamic
      mobattn export --attention ufo --dim 64 --hw 14x14 --to onnx,coreml

    Exit code 0 if every artifact validates, 1 if one fails (nothing is kept for it).
    """
    from pathlib import Path

    from mobattn.exporters import export
    from mobattn.exporters.export import check_target
    from mobattn.parsing import parse_resolutions

    target_list = [t.strip() for t in targets.split(",") if t.strip()] or ["onnx"]
    for target in target_list:
        check_target(target)
    (res,) = parse_resolutions(resolution)
    subject = build_subject(model, attention, dim, hw, heads, batch, weights, res)
    records = []
    for target in target_list:
        with err_console.status(f"exporting {subject.stem()} to {target}..."):
            records.append(
                export(
                    subject,
                    target,
                    Path(out_dir),
                    precision,
                    force,
                    dynamic=dynamic or None,
                    simplify=not no_simplify,
                    opset=opset,
                    min_target=min_target,
                    image=image_input or None,
                    compress=compress,
                )
            )
    if json_out:
        print_json(records[0].to_dict() if len(records) == 1 else [r.to_dict() for r in records])
    else:
        print_export_table(records)
    return 0 if all(r.status == "ok" for r in records) else 1


def print_export_table(records) -> None:
    rows = []
    for r in records:
        v = r.validation
        check = (
            f"max rel {v['max_rel']:.1e}, cos {v['cosine']:.6f}"
            if v
            else r.details.get("predictions", "spec checked")
        )
        status = {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(r.status, "[red]error[/red]")
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
