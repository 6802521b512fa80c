"""``mobattn info``: parameters and MACs of a model or of one attention module."""

from __future__ import annotations

import click

from mobattn.parsing import parse_hw, parse_resolution

from .common import (
    CONTEXT,
    check_bare_attention,
    json_option,
    optional,
    own_resolution,
    reject_attention_sizes,
    settings_text,
)
from .console import console, make_table, print_json


@click.command("info", context_settings=CONTEXT)
@click.option("--model", help="Model name (see `mobattn list models`).")
@click.option("--attention", help="Attention name; with --model, the swapped-in token mixer.")
@click.option("--dim", type=int, help="Channels of a bare attention module.")
@click.option("--hw", help="Token grid HxW of a bare attention module.")
@click.option("--heads", type=int, help="Heads of a bare attention (default: the swap rule).")
@click.option("--resolution", help="Model input resolution, N or HxW (default: the model's own).")
@json_option
def command(model, attention, dim, hw, heads, resolution, json_out) -> None:
    """Parameters and multiply-accumulates of a model or of one attention module.

    \b
      mobattn info --model swiftformer_s --attention hilo --resolution 320
      mobattn info --attention hilo --dim 96 --hw 14x14 --heads 6
    """
    if model is None:
        if resolution is not None:
            raise click.UsageError("--resolution describes a model input; a bare attention takes --hw")
        return _attention_info(attention, dim, hw, heads, json_out)
    reject_attention_sizes(dim, hw, heads)
    _model_info(model, attention, parse_resolution(resolution or own_resolution(model)), json_out)


def _attention_info(attention, dim, hw, heads, json_out) -> None:
    from mobattn.describe import describe_attention

    dim, heads = check_bare_attention(attention, dim, hw, heads)
    grid = parse_hw(hw)
    info = describe_attention(attention, dim, grid, heads)
    if json_out:
        return print_json([info.to_dict()])
    rows = [
        ["attention", info.attention],
        ["settings", settings_text(info.settings)],
        ["dim", info.dim],
        ["tokens", f"{grid[0]}x{grid[1]} = {info.tokens}"],
        ["params", f"{info.params:,}"],
        ["MACs (analytic)", f"{info.macs:,}"],
        ["MACs (torch FLOP counter)", f"{info.measured_macs:,}"],
    ]
    console.print(make_table(info.description, ["", "value"], rows))


def _model_info(model, attention, resolution, json_out) -> None:
    from mobattn.describe import describe_model

    info = describe_model(model, attention, resolution)
    if json_out:
        return print_json([info.to_dict()])
    # Published figures describe the official model only: a swapped variant has none.
    from mobattn.models import native_attention

    official = info.attention == native_attention(model)
    rows = [
        [
            "params",
            f"{info.params / 1e6:.2f} M",
            optional(info.published_params_m if official else None, "{:.1f} M"),
        ],
        [
            "GMACs",
            f"{info.macs / 1e9:.3f}",
            optional(info.published_gmacs if official else None, "{:.1f} (at 224)"),
        ],
        ["top-1 (ImageNet-1K)", "n/a", optional(info.published_top1 if official else None, "{:.1f} %")],
        [
            "latency",
            "see `mobattn bench`",
            optional(info.published_latency_ms if official else None, "{:.1f} ms"),
        ],
        [
            "preprocessing",
            f"{info.interpolation}, crop {info.crop_pct}, mean {info.mean}, std {info.std}",
            "",
        ],
    ]
    title = f"{info.model} with {info.attention} at {info.resolution[0]}x{info.resolution[1]}"
    console.print(make_table(title, ["", "measured here", "published"], rows))
    mixer_rows = [[m.stage, m.dim, m.tokens, settings_text(m.settings)] for m in info.mixers]
    cols = ["stage", "dim", "tokens", "settings"]
    if mixer_rows:
        console.print(make_table("token mixer per stage (swap rule: mobattn.models.swap)", cols, mixer_rows))
    console.print(f"swap (--attention): {info.swap}")
    if info.published_source and official:
        console.print(f"[dim]published: {info.published_source}[/dim]")
    elif not official:
        own = native_attention(model)
        console.print(f"[dim]published figures are for {info.model} with {own}; none exist for a swap[/dim]")
