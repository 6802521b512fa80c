"""``mobattn list attentions|models|targets|backends``."""

from __future__ import annotations

import click

from mobattn.parsing import MAX_DIM, check_int, parse_hw

from .common import CONTEXT, json_option, settings_text
from .console import console, err_console, human_count, make_table, print_json


@click.group("list", context_settings=CONTEXT)
def command() -> None:
    """List the registered attentions, models, export targets or benchmark backends."""


@command.command("attentions")
@click.option("--dim", type=int, default=96, show_default=True, help=f"Channels for the cost; <= {MAX_DIM}.")
@click.option("--hw", default="14x14", show_default=True, help="Token grid HxW at which to report the cost.")
@json_option
def attentions(dim: int, hw: str, json_out: bool) -> None:
    """The attention mechanisms, with their cost at one setting."""
    from mobattn.describe import describe_all_attentions

    infos = describe_all_attentions(check_int(dim, "--dim", 1, MAX_DIM), parse_hw(hw))
    if json_out:
        return print_json([i.to_dict() for i in infos])
    rows = [
        [i.attention, settings_text(i.settings), human_count(i.params), human_count(i.macs), i.description]
        for i in infos
    ]
    title = f"attentions at dim {dim}, {hw} tokens (batch 1)"
    cols = ["attention", "settings", "params", "MACs", "what"]
    console.print(make_table(title, cols, rows, {"params", "MACs"}))


@command.command("models")
@json_option
def models(json_out: bool) -> None:
    """The models, with params and GMACs measured at each one's input size, and the
    published figures with their source (a figure not found in the primary source is n/a)."""
    from mobattn.describe import describe_all_models

    with err_console.status("building every model to count its params and MACs..."):
        infos = describe_all_models()
    if json_out:
        return print_json([i.to_dict() for i in infos])
    rows = [
        [
            i.model,
            f"{i.resolution[0]}x{i.resolution[1]}",
            f"{i.params / 1e6:.2f} M",
            f"{i.macs / 1e9:.3f}",
            "n/a" if i.published_top1 is None else f"{i.published_top1:.1f} %",
            "n/a" if i.published_latency_ms is None else f"{i.published_latency_ms:.1f} ms",
            i.published_device or "",
            "yes" if i.swappable else "no (mobattn info says why)",
        ]
        for i in infos
    ]
    cols = ["model", "input", "params", "GMACs", "top-1 (published)", "latency (published)", "on", "swap"]
    title = "models at their input size (params, GMACs measured here)"
    console.print(make_table(title, cols, rows, {"params", "GMACs"}))


@command.command("targets")
@json_option
def targets(json_out: bool) -> None:
    """The export targets: file, precisions, options and what validates them."""
    from dataclasses import asdict

    from mobattn.exporters.formats import OPTION_FLAGS, TARGETS

    if json_out:
        return print_json([{**asdict(t), "needs": t.needs()} for t in TARGETS.values()])
    rows = [
        [
            t.name,
            t.suffix,
            ", ".join(t.precisions),
            t.default_precision,
            " ".join(OPTION_FLAGS[o] for o in t.options),
            t.runtime,
            t.needs(),
        ]
        for t in TARGETS.values()
    ]
    cols = ["target", "file", "precisions", "default", "options", "validated by", "needs"]
    console.print(make_table("export targets (mobattn export --to ...)", cols, rows))


@command.command("backends")
@json_option
def backends(json_out: bool) -> None:
    """The benchmark backends and the precisions each measures per device."""
    from dataclasses import asdict

    from mobattn.bench.config import BACKENDS
    from mobattn.exporters.formats import TARGETS

    def needs(backend) -> str:
        gpu = "a CUDA GPU" if "cpu" not in backend.precisions else ""
        extra = TARGETS[backend.target].needs() if backend.target else "-"
        return "; ".join(n for n in (gpu, extra if extra != "-" else "") if n) or "-"

    if json_out:
        return print_json([{**asdict(b), "needs": needs(b)} for b in BACKENDS.values()])
    rows = [
        [
            b.name,
            b.target or "-",
            "; ".join(f"{d}: {', '.join(p)}" for d, p in b.precisions.items()),
            b.description,
            needs(b),
        ]
        for b in BACKENDS.values()
    ]
    console.print(
        make_table(
            "benchmark backends (mobattn bench --backend ...)",
            ["backend", "times", "precisions", "what", "needs"],
            rows,
        )
    )
