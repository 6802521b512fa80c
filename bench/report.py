"""From results rows to tables and plots (matplotlib, PNG and SVG)."""

from __future__ import annotations

import io
import math
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from mobattn.errors import MobattnError  # noqa: E402
from mobattn.models import native_attention  # noqa: E402

from .fit import fit_exponents  # noqa: E402
from .row import Row  # noqa: E402
from .table import TableRow  # noqa: E402


def _noisy_label() -> str:
    from .measurement import NOISY_IQR_FRACTION
    from .quiet import QUIET_CORES

    return f"noisy: IQR > {NOISY_IQR_FRACTION:.0%} of the median, or > {QUIET_CORES:g} other cores busy"


NOISY_LABEL = _noisy_label()
MARKER_CYCLE = "osD^v<>ph*"


def _style(attention: str | None) -> tuple[str, str | None]:
    """(marker, colour) of a mechanism, by its place in the registry: a new mechanism is
    drawn apart from the others without a list here to extend."""
    from mobattn.attention import list_attentions

    names = list_attentions()
    if attention not in names:
        return "o", None
    number = names.index(attention)
    return MARKER_CYCLE[number % len(MARKER_CYCLE)], f"C{number % 10}"


def _settings(rows: list[Row]) -> list[tuple]:
    """The (backend, device, threads, precision, machine) settings among attention rows."""
    keys = {(r.backend, r.device, r.threads, r.precision, r.machine) for r in rows if r.kind == "attention"}
    return sorted(keys, key=str)


def _series(rows: list[Row], setting: tuple, value: str) -> dict[tuple, list[tuple[int, float]]]:
    """(attention, dim) -> [(tokens, value)], one point per token count (the last row
    given wins, as in the tables and fits: sources later on the command line win)."""
    series: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r.kind != "attention" or r.status != "ok" or getattr(r, value) is None:
            continue
        if (r.backend, r.device, r.threads, r.precision, r.machine) == setting:
            series[(r.attention, r.dim)][r.tokens] = getattr(r, value)
    return {k: sorted(v.items()) for k, v in sorted(series.items())}


Files = dict[str, bytes]  # file name -> content, written together by the caller


def _save(fig, stem: str) -> Files:
    """The figure as PNG and SVG bytes (nothing touches the disk here), the same bytes for
    the same rows: no date in either, and SVG ids from a fixed salt (a regenerated page
    changes only where its numbers do)."""
    files = {}
    for suffix in ("png", "svg"):
        buffer = io.BytesIO()
        metadata = {"Date": None} if suffix == "svg" else {"Software": None}
        with plt.rc_context({"svg.hashsalt": "mobattn"}):
            fig.savefig(buffer, format=suffix, dpi=130, bbox_inches="tight", metadata=metadata)
        files[f"{stem}.{suffix}"] = buffer.getvalue()
    plt.close(fig)
    return files


def _grid_figure(count: int):
    cols = min(count, 2)
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def log_ticks(low: float, high: float) -> list[float]:
    """Labelled ticks for a log axis holding values from ``low`` to ``high``: 1-2-5 steps
    (0.1, 0.2, 0.5, 1, 2, 5, 10 ...), thinned to decades over a wide range, from the step
    at or below ``low`` to the step at or above ``high``, so the largest value has a
    labelled tick above it (a 47 ms point sits under a "50", not above the last "20")."""
    if not (low > 0 and high >= low):
        return [low] if low > 0 else []
    steps = [
        m * 10.0**e
        for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
        for m in (1, 2, 5)
    ]
    below = max(t for t in steps if t <= low * (1 + 1e-9))
    above = min(t for t in steps if t >= high * (1 - 1e-9))
    ticks = [t for t in steps if below <= t <= above]
    if len(ticks) > 8:  # decades only, still enclosing the values
        first, last = math.floor(math.log10(below) + 1e-9), math.ceil(math.log10(above) - 1e-9)
        ticks = [10.0**e for e in range(first, last + 1)]
    if len(ticks) < 2:  # low == high on a step: one step either side
        ticks = [t for t in steps if below / 2.5 <= t <= above * 2.5]
    return ticks


def _log_axes(ax) -> None:
    """Grid on both scales; the x ticks are the measured token counts themselves, the y
    ticks labelled plain numbers (0.1, 1, 10 ms rather than 4x10^1, and always some:
    matplotlib labels no tick on a log axis spanning less than a decade), the axis
    spanning the first to the last of them."""
    ax.grid(True, which="both", alpha=0.3)
    values = [y for line in ax.get_lines() for y in line.get_ydata() if y > 0]
    if values:
        ticks = log_ticks(min(values), max(values))
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_ylim(ticks[0], ticks[-1])
    ax.yaxis.set_minor_formatter(NullFormatter())
    tokens = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(tokens, [str(int(t)) for t in tokens], rotation=45 if len(tokens) > 5 else 0)


def _noisy_points(rows: list[Row], setting: tuple, value: str) -> list[tuple[int, float]]:
    """The points of ``setting`` whose row is flagged noisy (drawn ringed)."""
    return [
        (r.tokens, getattr(r, value))
        for r in rows
        if r.kind == "attention"
        and r.ok
        and r.noisy
        and getattr(r, value) is not None
        and (r.backend, r.device, r.threads, r.precision, r.machine) == setting
    ]


def _plot_vs_tokens(rows, settings, value, ylabel, title, stem, exponents=None) -> Files:
    """One log–log panel per setting, one line per mechanism and width; a setting with no
    line of two points or more gets no panel (its rows are in the tables), and noisy
    points are ringed."""
    settings = [s for s in settings if any(len(p) >= 2 for p in _series(rows, s, value).values())]
    if not settings:
        return {}
    smallest_dim = min((r.dim for r in rows if r.dim), default=0)
    fig, axes = _grid_figure(len(settings))
    for ax, setting in zip(axes, settings, strict=False):
        for (attention, dim), points in _series(rows, setting, value).items():
            k = (exponents or {}).get((attention, dim, *setting))
            label = f"{attention} d{dim}" + (f" (k={k:.2f})" if k is not None else "")
            ax.plot(
                *zip(*points, strict=True),
                marker=_style(attention)[0],
                color=_style(attention)[1],
                linestyle="-" if dim == smallest_dim else "--",
                label=label,
            )
        noisy = _noisy_points(rows, setting, value)
        if noisy:
            ringed = dict(s=110, facecolors="none", edgecolors="gray", label=NOISY_LABEL)
            ax.scatter(*zip(*noisy, strict=True), **ringed)
        backend, device, threads, precision, machine = setting
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="tokens N = H·W",
            ylabel=ylabel,
            title=f"{backend} {device}, {threads} thread{'s' if threads > 1 else ''}, {precision}, batch 1"
            f"\n{machine}",
        )
        _log_axes(ax)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    return _save(fig, stem)


def plot_latency(rows: list[Row]) -> Files:
    """Latency against tokens, log–log, one panel per backend/threads, with the fitted
    exponent k of each mechanism in the legend."""
    exponents = {
        (
            f.group["attention"],
            f.group["dim"],
            f.group["backend"],
            f.group["device"],
            f.group["threads"],
            f.group["precision"],
            f.group["machine"],
        ): f.k
        for f in fit_exponents(rows)
    }
    return _plot_vs_tokens(
        rows,
        _settings(rows),
        "median_ms",
        "median latency (ms)",
        "Latency against tokens (latency ~ a·N^k)",
        "latency_vs_tokens",
        exponents,
    )


def plot_memory(rows: list[Row]) -> Files:
    """Peak resident memory above baseline against tokens (at the fewest threads)."""
    settings = _settings(rows)
    fewest = [s for s in settings if s[2] == min(x[2] for x in settings)] if settings else []
    return _plot_vs_tokens(
        rows,
        fewest,
        "peak_rss_mib",
        "peak RSS above baseline (MiB)",
        "Peak memory against tokens",
        "memory_vs_tokens",
    )


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both latency (lower) and accuracy (higher)."""
    front, best = [], float("-inf")
    for latency, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if accuracy > best:
            front.append((latency, accuracy))
            best = accuracy
    return front


def _family(model: str):
    from mobattn.models import get_model_config

    try:
        return get_model_config(model).family
    except MobattnError:  # a model of another mobattn version
        return None


def short_name(model: str) -> str:
    """``swiftformer_xs`` -> ``SF-XS``, ``mobilevitv2_100`` -> ``MViTv2-100`` (each family
    says its short label)."""
    family = _family(model)
    return family.short_name(model) if family else model


def family_colour(model: str) -> str:
    family = _family(model)
    return family.colour if family else "gray"


def point_label(row: TableRow, backend: str, machines: list[str]) -> str:
    """A speed-accuracy point's label: the model (``+mechanism`` for a swap), a precision
    other than fp32, ``[n]`` for the n-th machine when the plot holds several (the legend
    names them), ``~`` when its latency is noisy."""
    label = short_name(row.model) + (
        "" if row.attention == native_attention(row.model) else f"+{row.attention}"
    )
    label += "" if row.precision == "fp32" else f" {row.precision}"
    label += f" [{machines.index(row.machine) + 1}]" if len(machines) > 1 else ""
    return label + (" ~" if row.latency[backend].get("noisy") else "")


def plot_speed_accuracy(table: list[TableRow], backend: str, stem: str = "speed_accuracy") -> Files:
    """Top-1 against median latency, one colour per family (marker: the token mixer of a
    swap), with the Pareto front marked."""
    points = [
        (r, r.latency[backend]["median_ms"])
        for r in table
        if r.top1 is not None and backend in r.latency and r.latency[backend].get("median_ms")
    ]
    if not points:
        return {}
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    machines = sorted({row.machine for row, _ in points})  # two machines' points never look alike
    for row, latency in points:
        fp32 = row.precision == "fp32"  # other precisions: hollow markers and the precision in the label
        colour = family_colour(row.model)
        ax.scatter(
            latency,
            row.top1,
            marker=_style(row.attention)[0],
            s=40,
            facecolors=colour if fp32 else "none",
            edgecolors=colour,
            linewidths=2.5 if row.latency[backend].get("noisy") else 1.0,
        )
        label = point_label(row, backend, machines)
        ax.annotate(label, (latency, row.top1), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.margins(x=0.18, y=0.08)  # room for the rightmost and topmost labels inside the axes
    ax.set_xlim(left=0)  # latency: no negative room
    if len(machines) > 1:
        for number, machine in enumerate(machines, 1):
            ax.plot([], [], " ", label=f"[{number}] {machine}")
    if any(row.latency[backend].get("noisy") for row, _ in points):
        ax.plot([], [], " ", label="~ " + NOISY_LABEL)
    front = pareto_front([(lat, r.top1) for r, lat in points])
    if len(front) >= 2:  # one point is no front: nothing to draw or to put in the legend
        ax.plot(*zip(*front, strict=True), color="black", linestyle="--", linewidth=1, label="Pareto front")
    ax.set(
        xlabel=f"median latency, {backend} (ms)",
        ylabel="ImageNet-1K top-1 (%)",
        title=f"Speed–accuracy, {backend} CPU (batch 1, published top-1)",
    )
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, stem)


def latency_tables(rows: list[Row]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per setting and width: tokens down, mechanisms across, median ms in the cells."""
    tables = []
    for setting in _settings(rows):
        dims = sorted(
            {
                r.dim
                for r in rows
                if r.kind == "attention"
                and r.dim
                and (r.backend, r.device, r.threads, r.precision, r.machine) == setting
            }
        )
        for dim in dims:
            cells: dict[int, dict[str, str]] = defaultdict(dict)
            attentions = set()
            for r in rows:
                if r.kind != "attention" or r.dim != dim:
                    continue
                if (r.backend, r.device, r.threads, r.precision, r.machine) != setting:
                    continue
                attentions.add(r.attention)
                hw = f"{r.hw[0]}x{r.hw[1]} ({r.tokens})"
                cells[r.tokens, hw][r.attention] = (
                    f"{r.median_ms:.3f}" + (" ~" if r.noisy else "") if r.ok else r.status
                )
            names = sorted(attentions)
            body = [[hw] + [c.get(a, "") for a in names] for (_, hw), c in sorted(cells.items())]
            backend, device, threads, precision, machine = setting
            title = f"{backend} {device}, {threads} thread(s), {precision}, {machine}, dim {dim}: median (ms)"
            tables.append((title, ["tokens"] + names, body))
    return tables


def markdown_table(columns: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in body]) + "\n"


def precision_tables(rows: list[Row]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per backend (and width): what int8 buys or costs per mechanism and token count, as
    int8 median / fp32 median of rows measured alike, with int8's cosine to torch fp32."""
    pairs: dict[tuple, dict[str, Row]] = defaultdict(dict)
    for r in rows:
        if r.kind == "attention" and r.precision in ("fp32", "int8"):
            pairs[(r.backend, r.threads, r.dim, r.attention, r.tokens, tuple(r.hw or ()))][r.precision] = r
    tables: dict[tuple, dict[tuple, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for (backend, threads, dim, attention, tokens, hw), by_precision in pairs.items():
        fp32, int8 = by_precision.get("fp32"), by_precision.get("int8")
        if fp32 is None or int8 is None:
            continue
        if fp32.ok and int8.ok:
            ratio = int8.median_ms / fp32.median_ms
            validation = int8.validation or {}
            cell = f"{ratio:.2f}x" + (" (slower)" if ratio >= 1.005 else "")
            if validation.get("cosine") is not None:
                cell += f", cos {validation['cosine']:.4f}"
                cell += "" if validation.get("passed", True) else f" (below {validation.get('tolerance')})"
        else:
            cell = f"fp32 {fp32.status}, int8 {int8.status}"
        tables[(backend, threads, dim)][(tokens, f"{hw[0]}x{hw[1]} ({tokens})")][attention] = cell
    out = []
    for (backend, threads, dim), cells in sorted(tables.items(), key=str):
        names = sorted({a for c in cells.values() for a in c})
        body = [[label] + [c.get(a, "") for a in names] for (_, label), c in sorted(cells.items())]
        title = (
            f"{backend}, {threads} thread(s), dim {dim}: int8 median / fp32 median, int8 cosine to torch fp32"
        )
        out.append((title, ["tokens"] + names, body))
    return out
