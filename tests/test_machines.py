"""A row's machine is a machine (issue 35): fingerprints and calibration in every row,
rows of two hosts behind one CPU label never merged, `mobattn machines`, and the
reproducibility controls (--pin, the pre-flight check, --repeat)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from helpers import assert_one_line_error
from mobattn.bench import attention_configs, measure
from mobattn.bench.results import merge
from mobattn.bench.row import Row, latest
from mobattn.environment import environment

ROOT = Path(__file__).resolve().parent.parent


def _measured_row(tmp_path: Path) -> Row:
    (row,) = measure(attention_configs(["eaa"], [8], [(2, 2)], profile="quick"))
    assert row.ok
    return row


def _other_host(row: Row, gflops_factor: float = 2.3, fingerprint: str = "0123456789abcdef") -> Row:
    """The same row as a second host with the same CPU label would write it: another
    fingerprint and a calibration 2.3x apart (93 against 212 GFLOP/s, as measured)."""
    from mobattn.bench.calibration import band_of

    gflops = row.environment["calibration_gflops"] * gflops_factor
    env = {**row.environment, "fingerprint": fingerprint, "calibration_gflops": gflops}
    env["calibration_band"] = band_of(gflops)
    return Row.from_dict({**row.to_dict(), "environment": env, "median_ms": row.median_ms * 2})


@pytest.mark.slow  # measures in worker processes (seconds)
def test_every_row_names_its_machine_by_fingerprint_and_calibration(tmp_path):
    row = _measured_row(tmp_path)
    env = row.environment
    assert len(env["fingerprint"]) == 16 and len(env["machine_id"]) == 16
    assert platform.node() not in json.dumps(env)  # never the host name ...
    raw = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").is_file() else None
    assert raw is None or raw not in json.dumps(env)  # ... nor the raw machine id
    assert env["calibration_gflops"] > 0 and 0 <= env["calibration_spread"] < 1
    assert isinstance(env["calibration_band"], int) and "warnings" in env["preflight"]
    assert row.machine.startswith(env["cpu"]) and "#" in row.machine
    # measured once per machine: a second run carries the same figure, hence the same identity
    again = _measured_row(tmp_path)
    assert again.environment["calibration_gflops"] == env["calibration_gflops"]
    assert again.identity() == row.identity()


@pytest.mark.slow  # measures in worker processes (seconds)
def test_rows_of_two_hosts_with_one_cpu_label_never_merge(tmp_path, cli):
    here = _measured_row(tmp_path)
    there = _other_host(here)
    assert here.environment["cpu"] == there.environment["cpu"]
    assert here.identity() != there.identity() and here.machine != there.machine
    assert len(latest([here, there])) == 2
    # the same fingerprint with a calibration more than a band apart is another machine too
    drifted = _other_host(here, fingerprint=here.environment["fingerprint"])
    assert drifted.identity() != here.identity()
    path = tmp_path / "two.jsonl"
    path.write_text(here.to_json() + "\n" + there.to_json() + "\n")
    assert len(merge([path])) == 2
    result = cli(f"merge {path} --out {tmp_path / 'merged.jsonl'}")
    assert result.code == 0 and "kept apart" in result.err
    assert here.machine in result.out and there.machine in result.out
    listed = cli(f"machines {path} --json").json()
    assert sorted(m["machine"] for m in listed) == sorted([here.machine, there.machine])
    assert all(m["rows"] == 1 and m["fingerprint"] for m in listed)
    # a report of both: one table per machine, each labelled, never one table of both
    assert cli(f"report {path} --out {tmp_path / 'report'}").code == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"fp32, {here.machine}, dim 8" in text and f"fp32, {there.machine}, dim 8" in text


def test_rows_without_a_fingerprint_stay_readable_and_say_so(cli):
    path = ROOT / "results/benchmarks/runtime-parity.jsonl"
    listed = cli(f"machines {path} --json").json()
    assert listed and all(m["machine"].endswith("(no fingerprint)") and m["tag"] is None for m in listed)


@pytest.mark.slow
def test_repeat_reports_run_to_run_spread_beside_the_within_run_spread(cli):
    result = cli("bench --attention eaa --dim 8 --hw 2x2 --profile quick --repeat 3 --json")
    assert result.code == 0, result.err
    (row,) = result.json()
    assert len(row["repeat_medians_ms"]) == 3 and row["run_to_run"] is not None
    assert row["median_ms"] in row["repeat_medians_ms"] and row["cv"] is not None
    # derived when read, never taken from the row's word
    forged = Row.from_dict({**row, "run_to_run": 0.0, "repeat_medians_ms": [1.0, 2.0]})
    assert forged.run_to_run == pytest.approx(1 / 1.5)


@pytest.mark.slow
def test_repeat_on_five_mechanisms_gives_each_its_run_to_run_spread(tmp_path, cli):
    grid = tmp_path / "five.toml"
    grid.write_text(
        'attentions = ["eaa", "hilo", "external", "ufo", "mhsa"]\ndims = [16]\nhws = [[4, 4]]\n'
        'backends = ["torch"]\nprofile = "quick"\n'
    )
    result = cli(f"sweep {grid} --results {tmp_path / 'r.jsonl'} --repeat 2")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(len(r["repeat_medians_ms"]) == 2 for r in rows)
    assert all(r["run_to_run"] is not None for r in rows)


def test_pin_puts_the_measuring_worker_on_named_cores(cli):
    (row,) = cli("bench --attention eaa --dim 8 --hw 2x2 --profile quick --pin 0 --json").json()
    assert row["status"] == "ok" and row["pin"] == "0"
    (two,) = cli("bench --attention eaa --dim 8 --hw 2x2 --profile quick --pin 0 --threads 2 --json").json()
    assert two["status"] == "skipped" and "--pin 0" in two["reason"]
    assert_one_line_error(cli("bench --attention eaa --dim 8 --hw 2x2 --pin 4096"), "--pin", "core 4096")
    assert_one_line_error(cli("bench --attention eaa --dim 8 --hw 2x2 --pin 1-0"), "--pin")
    unpinned = Row.from_dict({**row, "pin": None})
    assert unpinned.identity() != Row.from_dict(row).identity()  # pinning is part of the setting


def test_the_preflight_check_says_what_makes_a_machine_unquiet():
    from mobattn.bench.preflight import warnings_of

    assert warnings_of({"other_cpu_cores": 0.1, "governor": "performance", "boost": False}) == []
    said = warnings_of(
        {"other_cpu_cores": 1.7, "governor": "powersave", "boost": True, "throttle_events": 12}
    )
    assert len(said) == 4 and "1.7 cores busy" in said[0] and "'powersave'" in said[1]


def test_a_machine_id_setting_makes_another_fingerprint(monkeypatch):
    from mobattn.machine import machine_facts

    env = environment()
    mine = machine_facts(env["cpu"], env["cores"])
    monkeypatch.setenv("MOBATTN_MACHINE_ID", "a-clone-of-this-image")
    other = machine_facts(env["cpu"], env["cores"])
    assert other["fingerprint"] != mine["fingerprint"] and other["caches"] == mine["caches"]
