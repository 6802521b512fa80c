"""The GPU section of the benchmark page, from the rows bench/scripts/gpu_sweep.sh brought
back (results/benchmarks/gpu/): latency and GPU memory against tokens per mechanism, the
fitted exponents beside the CPU ones, the two runs of the same configurations against each
other (the GPU's run-to-run noise), compiled against eager, and what was not measured.

    .venv/bin/python bench/scripts/gpu_report.py --plots docs/benchmarks > results/benchmarks/gpu.md

Reads only committed files: it runs anywhere, no GPU needed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from mobattn.attention import list_attentions
from mobattn.bench.fit import fit_power_law
from mobattn.bench.report import _save, markdown_table, plt
from mobattn.bench.results import read_rows
from mobattn.bench.row import Row
from mobattn.bench.sweep import Grid

GPU = Path("results/benchmarks/gpu")
CPU_SCALING = Path("results/benchmarks/attention-scaling.jsonl")
LARGE = 56 * 56  # fits over tokens >= this: where the kernels, not the launches, set the time


def _rows(path: Path) -> list[Row]:
    return [r for r in read_rows(path) if r.device == "cuda"]


def _key(subject) -> tuple:
    """The same configuration, from a row or a planned BenchConfig."""
    shape = subject.hw or subject.resolution
    return (
        subject.kind,
        subject.attention,
        subject.model,
        subject.dim,
        tuple(shape or ()),
        subject.precision,
    )


def _fit(rows: list[Row], value: str, low: int = 0) -> str:
    points = sorted((r.tokens, getattr(r, value)) for r in rows if r.tokens >= low and getattr(r, value))
    if len(points) < 3:
        return "—"
    k, _, r2 = fit_power_law(*zip(*points, strict=True))
    return f"{k:.2f} (r² {r2:.2f})"


# The `cuda` preset as the committed lease (2026-11-30) ran it: eager only, three precisions,
# models at three sizes. The preset now plans the captured graph beside eager (issue 40).
LEASE_PLAN = Grid(
    attentions=list_attentions(),
    dims=[64, 128],
    hws=[[s, s] for s in (14, 28, 56, 128, 256)],
    models=["swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3"]
    + ["efficientformer_l1", "deit_tiny", "mobilevit_xs", "mobilevitv2_100"],
    resolutions=[224, 512, 1024],
    backends=["torch"],
    precisions=["fp32", "fp16", "bf16"],
    devices=["cuda"],
    profile="quick",
)


def coverage(rows: list[Row]) -> list[str]:
    planned = LEASE_PLAN.configs()
    done = {_key(r) for r in rows}
    missing: dict[str, int] = {}
    for config in planned:
        if _key(config) not in done:
            name = config.attention or config.model
            missing[name] = missing.get(name, 0) + 1
    lines = [
        f"The `cuda` preset of that lease planned {len(planned)} configurations; {len(done)} were measured "
        f"({len(planned) - sum(missing.values())} of the preset's)."
    ]
    if missing:
        lines.append(
            "Not measured (the lease's 15 minutes ran out; not oom, not failed): "
            + ", ".join(f"{name} ({count})" for name, count in missing.items())
            + ". The presets `cuda-throughput` and `cuda-compiled` were not run."
        )
    return lines


def scaling_table(rows: list[Row], dim: int) -> str:
    mechanisms = sorted({r.attention for r in rows if r.kind == "attention"})
    tokens = sorted({r.tokens for r in rows if r.kind == "attention"})
    body = []
    for attention in mechanisms:
        for precision in ("fp32", "fp16"):
            cells = {
                r.tokens: r
                for r in rows
                if r.attention == attention and r.dim == dim and r.precision == precision and r.ok
            }
            if cells:
                body.append(
                    [attention, precision]
                    + [
                        f"{cells[t].median_ms:.3f} / {cells[t].cuda_max_allocated_mib:.0f}"
                        if t in cells
                        else "—"
                        for t in tokens
                    ]
                )
    return markdown_table(["mechanism", "precision", *(f"{t} tokens" for t in tokens)], body)


def exponent_table(rows: list[Row], cpu_rows: list[Row]) -> str:
    body = []
    for attention in sorted({r.attention for r in rows if r.kind == "attention"}):
        for dim in (64, 128):
            for precision in ("fp32", "fp16", "bf16"):
                group = [
                    r
                    for r in rows
                    if r.attention == attention and r.dim == dim and r.precision == precision and r.ok
                ]
                if len(group) < 3:
                    continue
                cpu = [
                    r
                    for r in cpu_rows
                    if r.attention == attention
                    and r.dim == dim
                    and r.backend == "torch"
                    and r.threads == 1
                    and r.ok
                ]
                cpu_cell = _fit(cpu, "median_ms") if precision == "fp32" else ""
                body.append(
                    [
                        attention,
                        str(dim),
                        precision,
                        _fit(group, "median_ms", LARGE),
                        _fit(group, "median_ms"),
                        _fit(group, "cuda_max_allocated_mib", LARGE),
                        cpu_cell,
                    ]
                )
    columns = [
        "mechanism",
        "dim",
        "precision",
        f"GPU latency k, ≥{LARGE} tokens",
        "GPU latency k, all",
        f"GPU memory k, ≥{LARGE} tokens",
        "CPU latency k (torch, 1 thread, fp32)",
    ]
    return markdown_table(columns, body)


def repeat_lines(first: list[Row], second: list[Row]) -> list[str]:
    """The configurations both runs measured, second against first: rows of a few
    milliseconds are kernels; rows under one are eager torch's Python and launch overhead."""
    earlier = {_key(r): r for r in first if r.ok}
    pairs = [(earlier[_key(r)].median_ms, r.median_ms) for r in second if r.ok and _key(r) in earlier]
    if not pairs:
        return []
    ratios = [b / a for a, b in pairs]
    slow = [b / a for a, b in pairs if a >= 2.0]
    fast = [b / a for a, b in pairs if a < 1.0]
    return [
        f"**Run to run**: {len(pairs)} configurations were measured in both runs (minutes apart, "
        f"same machine, a fresh process each): median ratio second/first "
        f"{statistics.median(ratios):.3f}, {sum(abs(x - 1) > 0.10 for x in ratios)} differ by more "
        f"than 10%. Rows of 2 ms or more ({len(slow)}): {min(slow):.2f}–{max(slow):.2f}. Rows under "
        f"1 ms ({len(fast)}): {min(fast):.2f}–{max(fast):.2f}: there eager torch's Python and kernel "
        "launches, not the mechanism, set the time (EAA's latency is flat from 196 to 65536 tokens), "
        "so read them as noisy and compare mechanisms on the GPU only where they take milliseconds."
    ]


SMOKE = re.compile(r"^smoke: ok (\S+) (\S+) ([\d.]+)")


def compiled_table(log: Path) -> str:
    """The smoke check's rows (eaa 14x14 dim 64 and swiftformer_xs 224, fp16), printed in
    the log of the first run: the only compiled rows measured so far."""
    found = [SMOKE.match(line) for line in log.read_text().splitlines()] if log.exists() else []
    found = [m for m in found if m]
    subjects = ["eaa d64 14x14", "swiftformer_xs 224"]
    body, compiled = [], ("torch-compile", "torch-cudagraphs")
    for subject, part in zip(subjects, (found[:3], found[3:6]), strict=False):
        ms = {m.group(1): float(m.group(3)) for m in part}
        if "torch" in ms:
            body.append(
                [subject]
                + [f"{ms[b]:.3f}" if b in ms else "—" for b in ("torch", *compiled)]
                + [f"{ms['torch'] / ms[b]:.1f}x" if b in ms else "—" for b in compiled]
            )
    columns = [
        "fp16, batch 1",
        "eager ms",
        "compile ms",
        "compile + CUDA graphs ms",
        "compile speedup",
        "graphs speedup",
    ]
    return markdown_table(columns, body)


def plot(rows: list[Row], out: Path) -> list[str]:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for attention in sorted({r.attention for r in rows if r.kind == "attention"}):
        points = sorted(
            (r.tokens, r.median_ms, r.cuda_max_allocated_mib)
            for r in rows
            if r.attention == attention and r.dim == 64 and r.precision == "fp16" and r.ok
        )
        if points:
            tokens, ms, mib = zip(*points, strict=True)
            axes[0].plot(tokens, ms, marker="o", label=attention)
            axes[1].plot(tokens, mib, marker="o", label=attention)
    for ax, label in zip(axes, ("median latency (ms)", "peak GPU memory allocated (MiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("NVIDIA H200, eager torch, fp16, dim 64, batch 1 (measured here)")
    files = _save(fig, "gpu_vs_tokens")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return sorted(files)


HARNESS_TOLERANCE = 0.10  # a row and the independent harness agree within 10%


def harness_table(rows: list[Row], records: list[dict]) -> str:
    """Each harness record beside mobattn's rows of the same subject and precision: the
    graph row's GPU time against the harness's CUDA-event replay time, the eager row's wall
    median against the harness's (with and without inference mode). A ratio outside
    1 +- HARNESS_TOLERANCE is marked."""

    def find(record: dict, backend: str) -> Row | None:
        for row in rows:
            same = (row.attention if record["kind"] == "attention" else row.model) == record["subject"]
            size = row.dim == record["size"] and row.hw == [record["grid"]] * 2 if record["grid"] else True
            if same and size and row.backend == backend and row.precision == record["precision"] and row.ok:
                return row
        return None

    def ratio(mine: float | None, theirs: float) -> str:
        if mine is None:
            return "—"
        value = mine / theirs
        return f"{value:.2f}" + ("" if abs(value - 1) <= HARNESS_TOLERANCE else " ✗")

    lines = [
        "| subject | precision | graph GPU ms (row / harness) | ratio | eager wall ms (row / harness) "
        "| ratio | harness eager without inference_mode |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for record in records:
        graph, eager = find(record, "torch-cudagraph"), find(record, "torch")
        subject = record["subject"] + (
            f" d{record['size']} {record['grid']}x{record['grid']}" if record["grid"] else ""
        )
        graph_ms = graph.gpu_median_ms if graph else None
        eager_ms = eager.median_ms if eager else None
        lines.append(
            f"| {subject} | {record['precision']} | {graph_ms or '—'} / {record['graph_gpu_ms']:.3f} "
            f"| {ratio(graph_ms, record['graph_gpu_ms'])} "
            f"| {eager_ms or '—'} / {record['eager_wall_ms']:.3f} "
            f"| {ratio(eager_ms, record['eager_wall_ms'])} | {record['eager_wall_grad_ms']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, help="folder for gpu_vs_tokens.png/.svg")
    args = parser.parse_args()
    first, second = _rows(GPU / "cuda-run1.jsonl"), _rows(GPU / "cuda-run2.jsonl")
    latest = {_key(r): r for r in first + second}  # the second run's row where both measured
    rows = list(latest.values())
    facts = json.loads((GPU / "gpu.json").read_text())
    env = facts["environment"]
    print(
        f"Measured here on the device tool's machine (2026-11-30): {env['gpu']} "
        f"({facts['nvidia_smi']}), CUDA {env['cuda']}, driver {env['gpu_driver']}, torch "
        f"{facts['torch']}, {env['cpu']} x{env['cores']}, Python {env['python']}; command "
        "`OUT=$OUT bash bench/scripts/gpu_sweep.sh` (eager torch, `--profile quick`, batch 1, "
        "in-process), rows in `results/benchmarks/gpu/`. Each cell is median ms / peak GPU memory "
        "allocated (MiB, `torch.cuda.max_memory_allocated`, weights and input included).\n"
    )
    for line in coverage(rows):
        print(line)
    print()
    if args.plots:
        plot(rows, args.plots)
        print(f"![GPU latency and memory against tokens]({args.plots.as_posix()}/gpu_vs_tokens.png)\n")
    for dim in (64, 128):
        print(f"**dim {dim}**\n")
        print(scaling_table(rows, dim) + "\n")
    print(
        "**Exponents** (latency ~ a·N^k; memory likewise). The CPU column is fitted on the "
        f"committed `{CPU_SCALING}` rows (another machine, torch eager at 1 thread, fp32).\n"
    )
    print(exponent_table(rows, read_rows(CPU_SCALING) if CPU_SCALING.exists() else []) + "\n")
    for line in repeat_lines(first, second):
        print(line + "\n")
    print(
        "**Compiled against eager**: only the run's smoke check measured compiled modules (one "
        "configuration each; `torch-compile` then meant mode `max-autotune-no-cudagraphs`, whose "
        "autotuning cost about a minute per configuration and used up the lease; it is now "
        "inductor's default mode). Medians from `results/benchmarks/gpu/run1-log.txt`:\n"
    )
    print(compiled_table(GPU / "run1-log.txt"))
    harness = GPU / "harness.jsonl"
    print("\n**Against an independent harness** (`bench/scripts/gpu_harness.py`, same machine):\n")
    if harness.exists():
        records = [json.loads(line) for line in harness.read_text().splitlines() if line.strip()]
        print(harness_table(rows, records))
    else:
        print(
            "not yet measured: the harness and the `torch-cudagraph` rows (issue 40) come from the "
            "next GPU lease (`bench/scripts/gpu_sweep.sh` runs both)."
        )


if __name__ == "__main__":
    main()
