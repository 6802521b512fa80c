"""``bench --op-profile``'s tables: each row's time by op type and by node, then, for a
subject timed on several runtimes, their op categories side by side
(:mod:`mobattn.bench.op_compare`)."""

from __future__ import annotations

from .console import console, make_table


def print_op_profiles(rows) -> None:
    for row in rows:
        if row.ok:
            print_op_profile(row)
    from mobattn.bench.op_compare import comparisons

    for comparison in comparisons(rows):
        print_comparison(comparison)


def print_op_profile(row) -> None:
    profile = row.details.get("op_profile") or {}
    if "unavailable" in profile:
        console.print(f"[dim]{row.subject_label} {row.backend}: {profile['unavailable']}[/dim]")
        return
    label = f"{row.subject_label} ({row.backend}, {row.threads} thread(s))"
    by_type = [[e["op_type"], f"{e['ms']:.3f}", f"{e['share']:.1%}"] for e in profile.get("by_op_type", [])]
    console.print(
        make_table(f"time by op type: {label}", ["op type", "ms", "share"], by_type, {"ms", "share"})
    )
    by_node = [
        [e["node"], e["op_type"], f"{e['ms']:.3f}", f"{e['share']:.1%}"] for e in profile.get("by_node", [])
    ]
    cols = ["node", "op type", "ms", "share"]
    console.print(make_table(f"top nodes: {label}", cols, by_node, {"ms", "share"}, fold={"node"}))
    if profile.get("op_ms") and row.median_ms:
        console.print(
            f"[dim]{profile['runtime']}: the ops sum to {profile['op_ms']:.3f} ms per inference, "
            f"{profile['op_ms'] / row.median_ms:.0%} of the timed median ({row.median_ms:.3f} ms)"
            + (f"; {profile['note']}" if profile.get("note") else "")
            + "[/dim]"
        )


def print_comparison(comparison) -> None:
    from mobattn.bench.op_compare import SCALED

    columns, body = comparison.table()
    title = f"op time by category across runtimes: {comparison.subject}"
    console.print(make_table(title, columns, body, set(columns[1:])))
    console.print(f"[dim]{SCALED}[/dim]")
