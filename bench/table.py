"""Speed–accuracy tables: measured rows joined with accuracy, rendered for pasting."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

from mobattn.evaluate import caveats_of
from mobattn.models import get_model_config

from .row import Row, latest


@dataclass
class TableRow:
    model: str
    attention: str
    resolution: int
    precision: str
    machine: str  # the CPU the latencies were measured on
    params_m: float | None
    gmacs: float | None
    latency: dict[str, dict[str, float | None]] = field(default_factory=dict)  # backend -> median/p90
    peak_mb: float | None = None
    top1: float | None = None
    accuracy_source: str = "n/a"
    untrusted_eval: str = ""  # a measurement that may not replace the figure above, with why
    published_latency: str = "n/a"  # the authors' on-device latency with its device (never measured here)
    # backend -> its artifact's top-1 agreement with torch fp32 on real images, trained
    # weights (`mobattn fidelity`'s newest row for the model, mechanism, target, precision)
    real_images: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _evals_of(model: str, attention: str, resolution: int, evals: list[dict]) -> list[dict]:
    """``mobattn eval`` results of the torch model (not of an artifact) at this setting,
    newest last; records without a numeric top-1 are ignored."""
    return [
        row
        for row in evals
        if (row.get("model"), row.get("attention"), row.get("resolution")) == (model, attention, resolution)
        and row.get("artifact") is None
        and isinstance(row.get("top1"), int | float)
    ]


def accuracy_for(model: str, attention: str, resolution: int, evals: list[dict]) -> tuple[float | None, str]:
    """In order: a trusted top-1 measured with ``mobattn eval`` (named dataset, the
    model's classes, trained weights, enough images: ``evaluate.caveats_of``); the
    published top-1 of the official model (EAA at its published resolution); else n/a.
    An untrusted measurement never replaces a published figure (see :func:`untrusted_for`)."""
    for row in reversed(_evals_of(model, attention, resolution, evals)):
        if not caveats_of(row):  # judged from what it records, not from its "trusted" field
            return row[
                "top1"
            ], f"mobattn eval ({row.get('dataset')}, {row.get('images')} images, {row.get('weights')})"
    published = get_model_config(model).published
    own = get_model_config(model).native_attention
    if published and attention == own and resolution == get_model_config(model).input_size[-1]:
        return published.top1, f"published ({published.source.split(' (')[0]})"
    return None, "n/a (no trained weights for this variant)"


def published_latency_for(model: str, attention: str, resolution: int) -> str:
    """The authors' mobile latency of the official model at its input size, labelled
    with device and source; n/a for swaps, other sizes and models without one."""
    config = get_model_config(model)
    published = config.published
    if not published or published.latency_ms is None or attention != config.native_attention:
        return "n/a"
    if resolution != config.input_size[-1]:
        return "n/a"
    source = published.source.split(" (")[0]
    return f"{published.latency_ms:.1f} ms on {published.latency_device} (published, {source})"


def untrusted_for(model: str, attention: str, resolution: int, evals: list[dict]) -> str:
    """The newest untrusted measurement, with its caveats, for its own column."""
    for row in reversed(_evals_of(model, attention, resolution, evals)):
        if caveats := caveats_of(row):
            return f"{row['top1']:.1f} ({'; '.join(caveats)})"
    return ""


def build_rows(
    bench_rows: list[Row], evals: list[dict], backends: list[str], converted: list | None = None
) -> list[TableRow]:
    """One table row per (model, attention, resolution, precision, machine) among the
    ``ok`` model rows; per backend, the newest row (:func:`row.latest`). Rows of different
    machines never share a table row: their latencies are not comparable. ``converted``:
    `mobattn fidelity`'s rows, joined as each backend's agreement on real images."""
    grouped: dict[tuple, dict[str, Row]] = {}
    for row in latest(bench_rows):
        if row.kind == "model" and row.ok and row.backend in backends:
            machine = row.machine  # the CPU, and the node label where there is one
            key = (row.model, row.attention, row.resolution[0], row.precision, machine)
            by_backend = grouped.setdefault(key, {})
            if row.backend not in by_backend or row.timestamp >= by_backend[row.backend].timestamp:
                by_backend[row.backend] = row
    table = []
    for (model, attention, res, precision, machine), by_backend in grouped.items():
        rows = list(by_backend.values())
        first = rows[0]
        top1, source = accuracy_for(model, attention, res, evals)
        if precision != "fp32" and source.startswith("published"):  # a published top-1 is fp32's
            top1, source = None, f"n/a at {precision} (fp32's is published; see the cosine to fp32)"
        table.append(
            TableRow(
                model=model,
                attention=attention,
                resolution=res,
                precision=precision,
                machine=machine,
                params_m=first.params / 1e6 if first.params else None,
                gmacs=first.macs / 1e9 if first.macs else None,
                latency={
                    b: {
                        "median_ms": r.median_ms,
                        "p90_ms": r.p90_ms,
                        "noisy": r.noisy,
                        "cosine": (r.validation or {}).get("cosine"),  # the timed artifact vs torch fp32
                        "top1_agreement": (r.validation or {}).get("top1_agreement"),
                        "load_ms": r.load_ms,  # cold start: session creation / program load
                        "first_run_ms": r.first_run_ms,
                    }
                    for b, r in sorted(by_backend.items(), key=lambda kv: backends.index(kv[0]))
                },
                peak_mb=max((r.peak_rss_mib for r in rows if r.peak_rss_mib is not None), default=None),
                top1=top1,
                accuracy_source=source,
                untrusted_eval=untrusted_for(model, attention, res, evals),
                published_latency=published_latency_for(model, attention, res)
                if precision == "fp32"
                else "n/a",
                real_images=real_image_agreement(
                    model, attention, precision, list(by_backend), converted or []
                ),
            )
        )
    return table


def real_image_agreement(
    model: str, attention: str, precision: str, backends: list[str], converted: list
) -> dict:
    """Per backend, the newest `mobattn fidelity` row of its target for this model,
    mechanism and precision, as "98.57% of 700 (top-1 -0.14 pts)" (trained weights on real
    images: what the conversion does to predictions, not these rows' random weights)."""
    from .config import get_backend

    found = {}
    for backend in backends:
        target = get_backend(backend).target
        rows = [
            r
            for r in converted
            if r.model == model
            and (r.attention or attention) == attention
            and r.target == target
            and r.precision == precision
        ]
        if rows:
            row = rows[-1]  # appended in order: the newest last
            delta = "" if row.top1_delta is None else f" (top-1 {100 * row.top1_delta:+.2f} pts)"
            found[backend] = f"{100 * row.agreement:.2f}% of {row.images}{delta}"
    return found


def _columns(backends: list[str], machines: bool, cold_start: bool = False, real: bool = False) -> list[str]:
    cols = ["model", "attention", "precision", "params (M)", "GMACs", "resolution"]
    cols += ["machine"] if machines else []
    for b in backends:
        cols += [f"{b} median (ms)", f"{b} p90 (ms)"]
        cols += [f"{b} load (ms)", f"{b} first run (ms)"] if cold_start else []
        cols += [f"{b} agreement with fp32, real images (mobattn fidelity)"] if real else []
    return cols + [
        "cosine to torch fp32 (min over backends)",
        "peak memory (MiB, max over backends)",
        "top-1 (%)",
        "accuracy source",
        "untrusted eval (caveats)",
        "published mobile latency",
    ]


def _cells(
    row: TableRow, backends: list[str], machines: bool, cold_start: bool = False, real: bool = False
) -> list[str]:
    def f(value, spec):
        return "n/a" if value is None else format(value, spec)

    cells = [row.model, row.attention, row.precision]
    cells += [f(row.params_m, ".2f"), f(row.gmacs, ".3f"), str(row.resolution)]
    cells += [row.machine] if machines else []
    for b in backends:
        lat = row.latency.get(b, {})
        noisy = " (noisy)" if lat.get("noisy") else ""
        cells += [f(lat.get("median_ms"), ".2f") + noisy, f(lat.get("p90_ms"), ".2f")]
        if cold_start:
            cells += [f(lat.get("load_ms"), ".1f"), f(lat.get("first_run_ms"), ".2f")]
        if real:
            cells += [row.real_images.get(b, "n/a")]
    cosines = [lat["cosine"] for lat in row.latency.values() if lat.get("cosine") is not None]
    fidelity = f(min(cosines) if cosines else None, ".5f")
    return cells + [
        fidelity,
        f(row.peak_mb, ".0f"),
        f(row.top1, ".1f"),
        row.accuracy_source,
        row.untrusted_eval or "-",
        row.published_latency,
    ]


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """Every character LaTeX treats specially, escaped (one pass, so a backslash's
    replacement is not escaped again)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def render(rows: list[TableRow], backends: list[str], fmt: str, cold_start: bool = False) -> str:
    """The table in ``fmt``; ``cold_start`` adds each backend's load and first-run times."""
    machines = len({r.machine for r in rows}) > 1  # a column only when rows differ in it
    real = any(r.real_images for r in rows)  # a column only when `mobattn fidelity` measured one
    cols = _columns(backends, machines, cold_start, real)
    body = [_cells(r, backends, machines, cold_start, real) for r in rows]
    if fmt == "json":
        return json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(cols)
        writer.writerows(body)
        return out.getvalue()
    if fmt == "tex":
        lines = [
            r"\begin{tabular}{" + "l" * 3 + "r" * (len(cols) - 4) + "l}",
            r"\toprule",
            " & ".join(tex_escape(c) for c in cols) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(tex_escape(c) for c in cells) + r" \\" for cells in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


FORMATS = ("md", "csv", "tex", "json")
