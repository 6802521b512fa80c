"""``mobattn inspect``: what an artifact holds and what keeps it off the fast path."""

from __future__ import annotations

import click

from .common import CONTEXT, file_kinds, json_option
from .console import console, make_table, print_json, print_warning


@click.command("inspect", context_settings=CONTEXT)
@click.argument("artifact", type=click.Path())
@click.option(
    "--compute-plan",
    is_flag=True,
    help="Core ML: ask Core ML itself for each op's device (MLComputePlan; macOS only).",
)
@json_option
def command(artifact, compute_plan, json_out) -> int:
    """Op histogram, tensor ranks and deployment findings of an artifact ({FILES}).

    \b
      mobattn inspect exports/swiftformer_s-224.mlpackage
      mobattn inspect exports/swiftformer_s-224-ane.mlpackage --json
      mobattn inspect exports/swiftformer_s-224-mobile.onnx

    Core ML: the Neural Engine rules (Apple's published guidance; predictions, each with
    its source) and ops_at_risk / ops_total. ONNX: onnxruntime's mobile usability verdict
    for NNAPI and Core ML. ExecuTorch: delegate calls and ops left on portable kernels.
    """
    from mobattn.exporters.inspection import inspect_artifact

    result = inspect_artifact(artifact, compute_plan)
    if compute_plan and result.compute_plan and "skipped" in result.compute_plan:
        print_warning(f"compute plan skipped: {result.compute_plan['skipped']}")
    if json_out:
        print_json([result.to_dict()])
        return 0
    render(result)
    return 0


command.help = command.help.replace("{FILES}", file_kinds())  # the suffixes, from the table


def render(result) -> None:
    from mobattn.exporters.subject import described_by, in_words

    ops = ", ".join(f"{k} {v}" for k, v in result.op_histogram.items())
    ranks = ", ".join(f"rank {k}: {v}" for k, v in result.ranks.items()) or "n/a"
    console.print(f"[bold]{result.path}[/bold] ({result.format}): {result.ops_total} ops")
    said = described_by(result.metadata)
    if said:
        console.print(f"subject (the file's metadata): {in_words(said)}, weights: {said['weights']}")
    if result.metadata.get("user_tolerance"):
        print_warning(
            f"exported under a user tolerance ({result.metadata['user_tolerance']}): see its record"
        )
    console.print(f"ops: {ops}")
    console.print(f"output ranks: {ranks}")
    if result.ane:
        rows = [
            [f["rule"], f["count"], ", ".join(f["blocks"]), f["says"], f["source"]]
            for f in result.ane["findings"]
        ]
        if rows:
            table = make_table(
                "Neural Engine findings (predictions)",
                ["rule", "ops", "blocks", "why", "source"],
                rows,
                {"ops"},
                fold={"blocks", "why", "source"},
            )
            console.print(table)
        s = result.ane["summary"]
        console.print(f"ops at risk: {s['ops_at_risk']} / {s['ops_total']} ({s['prediction']})")
    if result.mobile_usability:
        for provider, v in result.mobile_usability.items():
            if "error" in v:
                console.print(f"{provider}: {v['error']}")
                continue
            missing = ", ".join(v["unsupported_ops"]) or "none"
            console.print(
                f"{provider}: {v['supported_nodes']}/{v['nodes']} nodes in {v['partitions']} partition(s), "
                f"unsupported: {missing}, suitability {v['suitability']}"
            )
    if result.delegation:
        console.print(delegation_line(result.delegation))
    if result.compute_plan and "devices" in result.compute_plan:
        console.print(
            "Core ML compute plan: "
            + ", ".join(f"{k} {v}" for k, v in result.compute_plan["devices"].items())
        )


def delegation_line(delegation: dict) -> str:
    """What a delegate took and what it left, for either runtime's record: ExecuTorch
    names its delegates and the ops left on portable kernels; LiteRT counts its delegated
    partitions and ops and names those left to its default kernels."""
    if "delegates" in delegation:
        taken = ", ".join(delegation["delegates"]) or "none"
        left_kind, left = "portable ops", delegation.get("portable_ops") or {}
    else:
        taken = (
            f"XNNPACK, {delegation.get('delegated_subgraphs', 0)} partition(s) holding "
            f"{delegation.get('delegated_ops', 0)} ops"
        )
        left_kind, left = "ops left to LiteRT's kernels", delegation.get("not_delegated") or {}
    return f"delegates: {taken}; {left_kind}: " + (", ".join(f"{k} {v}" for k, v in left.items()) or "none")
