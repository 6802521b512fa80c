"""The report folder (plots + report.md) and the published benchmark page."""

from __future__ import annotations

import os
from pathlib import Path

from .fit import FIT_COLUMNS, fit_cells, fit_exponents
from .report import (
    NOISY_LABEL,
    latency_tables,
    markdown_table,
    plot_latency,
    plot_memory,
    plot_speed_accuracy,
    precision_tables,
)
from .results import status_counts
from .row import Row
from .sweep import FAMILIES
from .table import build_rows, render

R = "results/benchmarks"
# `make benchmarks`, command for command (a test keeps the Makefile's recipe equal to it)
BENCHMARK_COMMANDS = [
    f"mobattn sweep --preset attention-scaling --results {R}/attention-scaling.jsonl",
    f"mobattn sweep --preset runtime-parity --results {R}/runtime-parity.jsonl",
    f"mobattn sweep --preset families --results {R}/families.jsonl",
    f"mobattn sweep --preset swap-experiment --results {R}/swap-experiment.jsonl",
    f"mobattn sweep --preset precision --results {R}/precision.jsonl",
    "mobattn bench --model swiftformer_s --backend onnxruntime,executorch,litert --precision fp32,int8 "
    f"--results {R}/precision-models.jsonl",
    "mobattn table --models " + ",".join(FAMILIES) + " --backend onnxruntime,executorch,litert "
    f"--results {R}/families.jsonl --out {R}/families.md --force",
    f"python bench/scripts/export_speed.py > {R}/export_speed.txt",
    f"python bench/scripts/fidelity.py > {R}/fidelity.txt",
    f"python bench/scripts/coreml_agreement.py > {R}/coreml_agreement.md",
    f"python bench/scripts/int8_recipe_speed.py > {R}/int8_recipe_speed.md",
    # the trained network and real images of ../shared/real (never copied into the repository)
    f"python bench/scripts/real_fidelity.py ../shared/real --results {R}/real_fidelity.jsonl "
    f"> {R}/real_fidelity.md",
    "mobattn fidelity --model vit_tiny_patch16_224 --weights "
    "../shared/real/vit_tiny_augreg/vit_tiny_patch16_224.augreg_in21k_ft_in1k.pth "
    "--data ../shared/real/ilsvrc2012-val-1300/labels.csv "
    "--files ../shared/real/ilsvrc2012-val-1300/evaluation.txt "
    "--to onnx,executorch,litert,coreml --precision fp32,fp16,int8 "
    "--calibration ../shared/real/ilsvrc2012-val-1300/calibration.txt "
    f"--results {R}/fidelity-vit.jsonl --format md > {R}/accuracy_after_conversion.md",
    f"python bench/scripts/runtime_parity.py > {R}/runtime_parity.md",
    f"mobattn sweep --preset litert-parity --results {R}/litert-parity.jsonl",
    f"python bench/scripts/litert_parity.py > {R}/litert_parity.md",
    "mobattn export --model swiftformer_xs --to onnx,executorch,litert --sizes 224,256,288,320,384,448,512 "
    "--out /tmp/mobattn-sweep --force",
    *(
        f"mobattn bench /tmp/mobattn-sweep/swiftformer_xs-sizes224-256-288-320-384-448-512.{suffix} "
        f"--results {R}/resolution-one-artifact.jsonl"
        for suffix in ("onnx", "pte", "tflite")
    ),
    f"python bench/scripts/flexible_cost.py --out /tmp/mobattn-flexible --results {R}/flexible.jsonl "
    f"> {R}/flexible_cost.md",
    f"python bench/scripts/litert_coverage.py > {R}/litert_coverage.md",
    f"python bench/scripts/mobile_usability.py > {R}/mobile_usability.md",
    f"python bench/scripts/ane_layout.py > {R}/ane_layout.md",
    f"python bench/scripts/engine_speed.py --out {R}/engine-speed.json --markdown {R}/engine_speed.md",
    f"python bench/scripts/adaptive_profile.py > {R}/adaptive_profile.md",
    f"python bench/scripts/command_overhead.py --markdown {R}/command_overhead.md",
    f"python bench/scripts/gpu_report.py --plots docs/benchmarks > {R}/gpu.md",
    f"python bench/scripts/fleet_makespan.py > {R}/fleet_makespan.md",
    f"python bench/scripts/fleet_run.py >> {R}/fleet_makespan.md",
    # later sources win where two measured the same point (runtime-parity's default profile
    # over precision's quick one)
    f"mobattn report {R}/attention-scaling.jsonl {R}/precision.jsonl {R}/precision-models.jsonl "
    f"{R}/runtime-parity.jsonl {R}/families.jsonl {R}/swap-experiment.jsonl {R}/litert-parity.jsonl "
    "--out docs/benchmarks --page BENCHMARKS.md --force",
]

NOTES = ("export_speed.txt", "fidelity.txt")  # benchmark outputs shown verbatim when present
SECTIONS = {  # markdown outputs of bench/scripts, shown as sections in this order
    "accuracy_after_conversion.md": "Accuracy after conversion: what `export` ships of a trained network",
    "int8_target.md": "Accuracy-aware mixed precision: --int8-target on the trained ViT-Ti, three runtimes",
    "real_fidelity.md": "A trained network on real images: what each format, precision and compression moves",
    "int8_recipe_speed.md": "What the int8 recipes cost in latency, per runtime",
    "command_overhead.md": "One configuration per command: what it costs beyond its measurement",
    "engine_speed.md": "What a sweep costs beyond its measurements: warm workers and the artifact cache",
    "adaptive_profile.md": "--profile adaptive against the default profile",
    "gpu.md": "GPU rows: NVIDIA H200, eager torch (the first CUDA rows)",
    "fleet_makespan.md": "A sweep over many machines: makespan by how the grid is split, and a real fleet",
    "litert_coverage.md": "LiteRT: every mechanism and model, executed, and what XNNPACK took",
    "litert_parity.md": "LiteRT and ExecuTorch against onnxruntime, per mechanism",
    "flexible_cost.md": "What flexibility costs: one artifact for several sizes against fixed-size exports",
    "runtime_parity.md": "ExecuTorch against onnxruntime, each in its fastest faithful form",
    "mobile_usability.md": "onnxruntime's mobile providers: default and --form mobile",
    "ane_layout.md": "The Neural Engine layout: --layout ane",
    "coreml_agreement.md": "Core ML exports, executed",
}
FINDINGS = "findings.md"  # the reading of these numbers, written by whoever ran them, shown first


def exponents_table(rows: list[Row]) -> str:
    body = [fit_cells(f) for f in fit_exponents(rows)]
    return markdown_table(FIT_COLUMNS, body) if body else ""


def machine(rows: list[Row]) -> str:
    """Each machine the rows were measured on, with its libraries and its row count
    (tables and plots never mix machines; see Row.machine)."""
    keys = ("fingerprint", "cores", "caches", "memory_gib", "hypervisor", "governor", "calibration_gflops")
    keys += ("machine", "os", "python", "torch", "onnxruntime", "executorch", "mobattn")
    lines = []
    for cpu in dict.fromkeys(r.machine for r in rows):
        mine = [r for r in rows if r.machine == cpu]
        values = {
            k: sorted({str(r.environment[k]) for r in mine if r.environment.get(k) is not None}) for k in keys
        }
        details = ", ".join(f"{k} {' / '.join(v)}" for k, v in values.items() if v)
        lines.append(f"- {cpu} ({len(mine)} rows): {details}")
    return "\n".join(lines)


def write_report(
    rows: list[Row],
    out_dir: Path,
    evals: list[dict],
    sources: list[Path],
    page: Path | None,
    force: bool = False,
    fidelity: list | None = None,
) -> list[Path]:
    """Render the plots, report.md and (optionally) the page, then write them all.

    Every output is checked before the first is written: an existing file is replaced
    only with ``force``, each goes through a temporary name renamed into place (so a
    symlink is replaced, never written through), and a failure writes nothing more.
    """
    backends = sorted({r.backend for r in rows if r.kind == "model" and r.ok})
    table = build_rows(rows, evals, backends) if backends else []
    plots = {**plot_latency(rows), **plot_memory(rows)}
    if table:
        main = "onnxruntime" if "onnxruntime" in backends else backends[0]
        plots.update(plot_speed_accuracy(table, main))
        for other in (b for b in backends if b != main and b != "torch"):
            plots.update(plot_speed_accuracy(table, other, f"speed_accuracy_{other}"))
    sections = []
    exponents = exponents_table(rows)
    if exponents:
        sections += ["## Empirical complexity: latency ~ a·N^k", exponents]
    if table:
        sections += ["## Models", render(table, backends, "md")]
    precision = precision_tables(rows)
    if precision:
        sections += ["## Precision: what int8 buys or costs"]
        sections += [part for t, c, b in precision for part in (f"### {t}", markdown_table(c, b))]
    if fidelity:
        from .fidelity import markdown

        for source in dict.fromkeys(r.source for r in fidelity):
            mine = [r for r in fidelity if r.source == source]
            sections += [
                f"## Accuracy after conversion ({mine[0].model}, {mine[0].images} images of {source})"
            ]
            sections += [markdown(mine)]
    sections += op_sections(rows)
    for title, columns, body in latency_tables(rows):
        sections += [f"### {title}", markdown_table(columns, body)]
    if any(cell.endswith(" ~") for _, _, body in latency_tables(rows) for line in body for cell in line):
        sections += [f"~ marks a noisy figure ({NOISY_LABEL})."]
    summary = ", ".join(f"{n} {s}" for s, n in status_counts(rows).items())
    pngs = [name for name in plots if name.endswith(".png")]
    report = (
        f"# mobattn report\n\nFrom {', '.join(map(str, sources))}: {len(rows)} rows ({summary}).\n\n"
        + "\n".join(f"![{Path(name).stem}]({name})" for name in pngs)
        + "\n\n"
        + "\n\n".join(sections)
        + "\n\n## Machine\n\n"
        + machine(rows)
        + "\n"
    )
    outputs = {out_dir / name: content for name, content in plots.items()}
    outputs[out_dir / "report.md"] = report.encode()
    if page is not None:
        outputs[page] = page_text(page, rows, [out_dir / n for n in pngs], sections, sources).encode()
    return write_files(outputs, force)


def write_files(outputs: dict[Path, bytes], force: bool) -> list[Path]:
    """Write a report: every file checked before the first is written (all or, on a
    refusal, none); the files of one folder published together in one atomic swap
    (``write_folder``: never plots of one data set beside a report.md of another), then
    any file elsewhere (the page, which links the plots) through ``staged``."""
    from mobattn.exporters.files import check_writable, staged, write_folder

    for path in outputs:
        check_writable(path, force)
    folders: dict[Path, dict[str, bytes]] = {}
    for path, content in outputs.items():
        folders.setdefault(path.parent, {})[path.name] = content
    for folder, files in folders.items():
        if len(files) > 1:
            write_folder(folder, files, force)
    for folder, files in folders.items():  # single files last: the page links the plots
        if len(files) == 1:
            ((name, content),) = files.items()
            with staged(folder / name, force) as tmp:
                tmp.write_bytes(content)
    return list(outputs)


def page_text(
    page: Path, rows: list[Row], plots: list[Path], sections: list[str], sources: list[Path]
) -> str:
    """The benchmark page (BENCHMARKS.md), its plots linked relative to it."""
    rel = [Path(os.path.relpath(p, page.parent)) for p in plots]
    findings = next((f.read_text().strip() for s in sources if (f := s.parent / FINDINGS).exists()), "")
    notes = []
    for source in sources:
        for name in NOTES:
            note = source.parent / name
            if note.exists() and note.read_text().strip() not in notes:
                notes.append(note.read_text().strip())
    text = [
        "# Benchmarks",
        "",
        "Generated by `make benchmarks` (`mobattn report ... --page BENCHMARKS.md`) from a real sweep on "
        "the machine below; every number here comes from the committed results files "
        f"({', '.join(f'`{s}`' for s in sources)}). Batch 1, CPU, fp32 unless a row says otherwise; "
        "latency is the median of single-stream runs (each configuration in a fresh process, "
        "warm-up first), memory the peak resident memory above the measuring process's baseline.",
        "",
        *(["## Findings", "", findings, ""] if findings else []),
        "## Reproduce",
        "",
        "```",
        "make benchmarks",
        "# which runs:",
        *BENCHMARK_COMMANDS,
        "```",
        "",
        "## Machines",
        "",
        machine(rows),
        "",
        "## Plots",
        "",
        *[f"![{p.stem}]({p.as_posix()})" for p in rel],
        "",
        *[part for section in sections for part in (section, "")],  # a blank line after each
    ]
    for name, title in SECTIONS.items():
        section = next((f.read_text().strip() for s in sources if (f := s.parent / name).exists()), "")
        if section:
            text += [f"## {title}", "", section, ""]
    if notes:
        text += ["## Measurement checks", ""] + [f"```\n{n}\n```" for n in notes]
    return "\n".join(text).rstrip() + "\n"


def op_sections(rows: list[Row], count: int = 3) -> list[str]:
    """The ``count`` configurations where a runtime is furthest behind onnxruntime, each
    with its op categories side by side (rows that carry per-op profiles only)."""
    from .op_compare import SCALED, worst

    found = worst(rows, count)
    if not found:
        return []
    sections = ["## Why one runtime is slower, op by op", SCALED + "."]
    for comparison in found:
        sections += [f"### {comparison.subject}", markdown_table(*comparison.table())]
    return sections
