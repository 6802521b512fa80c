"""Tables, plots and the benchmark page, from synthetic rows through real matplotlib."""

import csv
import io
import json
from dataclasses import replace

import pytest

from mobattn.bench.api import calibrated_environment
from mobattn.bench.page import write_report
from mobattn.bench.report import pareto_front
from mobattn.bench.row import Row
from mobattn.bench.table import accuracy_for, build_rows, render, untrusted_for

ENV = {"cpu": "test cpu", "cores": 2, "torch": "2.13.0"}


def model_row(model, attention, backend, median, peak=100.0):
    return Row(
        kind="model",
        status="ok",
        model=model,
        attention=attention,
        resolution=[224, 224],
        backend=backend,
        device="cpu",
        threads=1,
        precision="fp32",
        params=3_500_000,
        macs=600_000_000,
        median_ms=median,
        p90_ms=median * 1.1,
        peak_rss_mib=peak,
        environment=ENV,
    )


def attention_rows():
    rows = []
    for name, power in (("eaa", 1.0), ("mhsa", 2.0)):
        for side in (14, 28, 56):
            n = side * side
            rows.append(
                Row(
                    kind="attention",
                    status="ok",
                    attention=name,
                    dim=64,
                    hw=[side, side],
                    tokens=n,
                    backend="torch",
                    device="cpu",
                    threads=1,
                    precision="fp32",
                    median_ms=1e-4 * n**power,
                    peak_rss_mib=10 + n / 100,
                    environment=ENV,
                )
            )
    rows.append(replace(rows[-1], hw=[128, 128], tokens=16384, status="oom", median_ms=None))
    return rows


def test_accuracy_sources_in_order_and_untrusted_evals_never_replace_published():
    base = dict(model="swiftformer_xs", attention="eaa", resolution=224, artifact=None, weights="w.pth")
    whole = dict(classes=1000, num_classes=1000, class_counts=[50] * 1000)
    trusted = dict(base, top1=74.9, images=50000, dataset="imagenet-1k-val", trusted=True, **whole)
    tiny = dict(base, top1=0.0, images=9, dataset="imagenet-1k-val", trusted=False, **whole)
    assert accuracy_for("swiftformer_xs", "eaa", 224, [trusted]) == (
        74.9,
        "mobattn eval (imagenet-1k-val, 50000 images, w.pth)",
    )
    top1, source = accuracy_for("swiftformer_xs", "eaa", 224, [tiny])  # the tiny run does not count
    assert top1 == 75.7 and source.startswith("published") and "ICCV 2023" in source
    assert untrusted_for("swiftformer_xs", "eaa", 224, [tiny]) == "0.0 (9 images (fewer than 10000))"
    # a record is judged from what it holds: an edited "trusted" field or a gamed folder never counts
    forged = dict(trusted, class_counts=[50000] + [0] * 999)
    assert accuracy_for("swiftformer_xs", "eaa", 224, [forged])[0] == 75.7
    assert "999 classes have no image" in untrusted_for("swiftformer_xs", "eaa", 224, [forged])
    old = dict(base, top1=1.0, images=9)  # written before evaluations were judged: untrusted
    assert accuracy_for("swiftformer_xs", "eaa", 224, [old])[0] == 75.7
    assert accuracy_for("swiftformer_xs", "eaa", 320, [])[0] is None  # published only at its resolution
    assert accuracy_for("swiftformer_xs", "hilo", 224, [])[0] is None


@pytest.mark.parametrize("fmt", ["md", "csv", "tex", "json"])
def test_table_formats(fmt):
    rows = [
        model_row("swiftformer_xs", "eaa", "onnxruntime", 10.0),
        model_row("swiftformer_xs", "eaa", "torch", 20.0),
        model_row("swiftformer_xs", "mhsa", "onnxruntime", 12.0),
    ]
    table = build_rows(rows, [], ["onnxruntime", "torch"])
    text = render(table, ["onnxruntime", "torch"], fmt)
    if fmt == "json":
        data = json.loads(text)
        assert data[0]["latency"]["torch"]["median_ms"] == 20.0 and data[1]["top1"] is None
    elif fmt == "csv":
        parsed = list(csv.reader(io.StringIO(text)))
        assert parsed[0][6] == "onnxruntime median (ms)" and parsed[1][6] == "10.00" and parsed[2][8] == "n/a"
    elif fmt == "tex":
        assert r"\begin{tabular}" in text and r"swiftformer\_xs" in text and r"\bottomrule" in text
    else:
        lines = text.splitlines()
        assert lines[0].startswith("| model | attention") and len(lines) == 4
        assert "| 75.7 |" in lines[2] and "n/a (no trained weights" in lines[3]


def test_plots_leave_out_one_point_panels_and_ring_noisy_points(tmp_path):
    """A setting with one token size has no line to draw: no panel (issue 38); noisy rows
    are drawn ringed and the report explains its ``~``."""
    from mobattn.bench.report import plot_latency

    rows = attention_rows()
    single = [replace(r, backend="onnxruntime") for r in rows if r.hw == [14, 14]]
    assert plot_latency(single) == {}
    assert set(plot_latency(rows)) == {"latency_vs_tokens.png", "latency_vs_tokens.svg"}
    assert plot_latency(rows) == plot_latency(rows)  # the same rows, the same bytes: no dates, fixed ids
    rows[0] = replace(rows[0], noisy=True, iqr_ms=rows[0].median_ms)  # an IQR as large as its median
    write_report(rows, tmp_path / "plots", [], [tmp_path / "r.jsonl"], None)
    report = (tmp_path / "plots" / "report.md").read_text()
    assert " ~ |" in report and "~ marks a noisy figure (noisy: IQR > " in report


def test_speed_accuracy_labels_tell_machines_and_noise_apart():
    from mobattn.bench.report import point_label
    from mobattn.bench.table import TableRow

    def row(machine, noisy):
        latency = {"onnxruntime": {"median_ms": 10.0, "noisy": noisy}}
        return TableRow("swiftformer_xs", "eaa", 224, "fp32", machine, 3.5, 0.6, latency, top1=75.7)

    machines = ["AMD EPYC #ab12", "Intel Xeon #cd34"]
    labels = [point_label(row(m, False), "onnxruntime", machines) for m in machines]
    assert labels == ["SF-XS [1]", "SF-XS [2]"]  # two kinds of machine are two points, named
    assert point_label(row(machines[0], True), "onnxruntime", machines[:1]) == "SF-XS ~"


def test_pareto_front():
    points = [(10, 75.0), (12, 74.0), (15, 78.0), (20, 77.0), (25, 80.0)]
    assert pareto_front(points) == [(10, 75.0), (15, 78.0), (25, 80.0)]


@pytest.mark.slow
def test_report_writes_plots_tables_and_page(tmp_path):
    rows = attention_rows() + [
        model_row("swiftformer_xs", "eaa", "onnxruntime", 10.0),
        model_row("swiftformer_s", "eaa", "onnxruntime", 14.0),
    ]
    page = tmp_path / "BENCHMARKS.md"
    written = write_report(rows, tmp_path / "plots", [], [tmp_path / "r.jsonl"], page)
    names = {p.name for p in written}
    for stem in ("latency_vs_tokens", "memory_vs_tokens", "speed_accuracy"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
        assert (tmp_path / "plots" / f"{stem}.png").stat().st_size > 10_000
    report = (tmp_path / "plots" / "report.md").read_text()
    assert (
        "| eaa | 64 | torch/cpu | 1 | test cpu (no fingerprint) | 1.00 |" in report
        and "| mhsa | 64 | torch/cpu | 1 | test cpu (no fingerprint) | 2.00 |" in report
    )
    assert "oom" in report  # the failed configuration is a recorded cell, not a gap
    assert " ~ |" not in report and "~ marks" not in report  # no noisy row: nothing to explain
    text = page.read_text()
    assert "make benchmarks" in text and "test cpu" in text and "(plots/latency_vs_tokens.png)" in text


def test_report_command_on_a_missing_file(cli, tmp_path):
    from helpers import assert_one_line_error

    assert_one_line_error(cli(f"report {tmp_path / 'nope.jsonl'} --out {tmp_path / 'o'}"), "not found")


def test_table_command_reads_results_and_writes_once(cli, tmp_path):
    from helpers import assert_one_line_error, join

    results = tmp_path / "models.jsonl"
    rows = [
        model_row("swiftformer_xs", "eaa", "onnxruntime", 10.0),
        model_row("swiftformer_s", "eaa", "onnxruntime", 14.0),
    ]
    here = calibrated_environment()  # what rows measured here carry (fingerprint, calibration band)
    results.write_text("".join(replace(r, environment=here).to_json() + "\n" for r in rows))
    out = tmp_path / "table.csv"
    args = [
        "table",
        "--models",
        "swiftformer_xs,swiftformer_s",
        "--results",
        results,
        "--format",
        "csv",
        "--out",
        out,
        "--accuracy",
        tmp_path / "none.jsonl",
    ]
    result = cli(f"{join(args)}")
    assert result.code == 0, result.err
    parsed = list(csv.reader(io.StringIO(out.read_text())))
    assert [r[0] for r in parsed[1:]] == ["swiftformer_xs", "swiftformer_s"]
    assert parsed[2][parsed[0].index("top-1 (%)")] == "78.5"
    assert len(results.read_text().splitlines()) == 2  # nothing was missing, nothing measured
    assert_one_line_error(cli(f"{join(args)}"), "exists", "--force")
    assert_one_line_error(cli("table --models swiftformer_xxl"), "unknown model")


def test_latency_tables_only_for_widths_each_setting_measured():
    from mobattn.bench.report import latency_tables

    rows = attention_rows() + [replace(r, backend="executorch", dim=32) for r in attention_rows()[:3]]
    titles = [title for title, _, body in latency_tables(rows) if body]
    assert len(titles) == len(latency_tables(rows)) == 2
    assert any("executorch" in t and "dim 32" in t for t in titles)
    assert any("torch" in t and "dim 64" in t for t in titles)


@pytest.mark.slow
def test_table_reuses_only_rows_of_the_same_identity(cli, tmp_path):
    """Decoy rows of another precision, profile and machine are never taken for the
    asked setting: with only decoys the row is measured; with a matching row it is
    reused, whatever the decoys' order or age."""
    results = tmp_path / "models.jsonl"
    here = calibrated_environment()
    wanted = replace(
        model_row("swiftformer_xs", "eaa", "onnxruntime", 10.0),
        resolution=[64, 64],
        profile="quick",
        environment=here,
        timestamp="2026-01-01T00:00:00",
    )
    decoys = [
        replace(wanted, precision="fp16", median_ms=91.0, timestamp="2026-02-01T00:00:00"),
        replace(wanted, profile="mlperf", median_ms=92.0, timestamp="2026-02-01T00:00:00"),
        replace(wanted, environment={**here, "cpu": "another machine"}, median_ms=93.0),
    ]
    args = f"table --models swiftformer_xs --resolution 64 --profile quick --results {results} --format csv"
    results.write_text("".join(r.to_json() + "\n" for r in decoys + [wanted]))
    result = cli(args + f" --accuracy {tmp_path / 'none.jsonl'}")
    assert result.code == 0, result.err
    assert list(csv.reader(io.StringIO(result.out)))[1][6] == "10.00"
    assert len(results.read_text().splitlines()) == 4  # reused: nothing measured

    results.write_text("".join(r.to_json() + "\n" for r in decoys))
    result = cli(args + f" --accuracy {tmp_path / 'none.jsonl'}")
    assert result.code == 0, result.err
    measured = float(list(csv.reader(io.StringIO(result.out)))[1][6].split()[0])
    assert measured not in (91.0, 92.0, 93.0)
    lines = results.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["environment"]["cpu"] == here["cpu"]


def test_latest_row_wins_but_never_a_failure_over_ok():
    from mobattn.bench.row import latest

    ok = replace(model_row("swiftformer_xs", "eaa", "torch", 10.0), timestamp="2026-01-01T00:00:00")
    newer = replace(ok, median_ms=11.0, timestamp="2026-01-02T00:00:00")
    failed = replace(ok, status="error", median_ms=None, timestamp="2026-01-03T00:00:00")
    assert [r.median_ms for r in latest([ok, newer])] == [11.0]
    assert [r.median_ms for r in latest([newer, ok])] == [11.0]  # by time, not by order
    assert [r.median_ms for r in latest([ok, failed])] == [10.0]
    assert [r.median_ms for r in latest([failed, ok])] == [10.0]
    assert len(latest([ok, replace(ok, precision="fp16")])) == 2


def test_make_benchmarks_runs_what_the_page_says_it_runs():
    from pathlib import Path

    from mobattn.bench.page import BENCHMARK_COMMANDS

    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    recipe = makefile.split("\nbenchmarks: venv\n", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip() for line in recipe.splitlines()]
    expected = [
        c.replace("results/benchmarks", "$(BENCH)").replace("mobattn ", "$(BIN)/mobattn ", 1)
        if c.startswith("mobattn ")
        else "$(BIN)/" + c.replace("results/benchmarks", "$(BENCH)")
        for c in BENCHMARK_COMMANDS
    ]
    assert commands == expected
