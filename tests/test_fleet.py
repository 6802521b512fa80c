"""The fleet (issue 23) on 127.0.0.1: a real Dask scheduler, real `mobattn node`
processes, the real driver (`mobattn sweep --cluster`); no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mobattn.bench.api import attention_configs
from mobattn.bench.fleet_plan import ABSENT, Machine, absent_kinds, estimated_cost_s, plan, remaining
from mobattn.bench.sweep import shard
from mobattn.environment import environment

pytest.importorskip("distributed")
BIN = Path(sys.executable).parent
GRID = """
attentions = {attentions}
dims = [16]
hws = [[4, 4], [8, 8]]
backends = ["torch"]
threads = [1]
profile = "{profile}"
"""


class Fleet:
    """A scheduler and its nodes, each its own process group, all killed at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.procs: dict[str, subprocess.Popen] = {}
        self.start(
            "scheduler",
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0"]
            + ["--no-dashboard", "--scheduler-file", str(self.file)],
        )
        deadline = time.monotonic() + 30
        while not self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.file.exists(), (folder / "scheduler.log").read_text()

    def start(self, name: str, argv: list[str], **env) -> subprocess.Popen:
        while name in self.procs:
            name += "+"
        log = open(self.folder / f"{name}.log", "w")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def node(self, node_id: str, label: str, wait: bool = True) -> subprocess.Popen:
        argv = [str(BIN / "mobattn"), "node", str(self.file), "--label", label]
        proc = self.start(f"node-{node_id}", argv, MOBATTN_NODE_ID=node_id)
        if wait:
            self.wait_for_nodes({node_id})
        return proc

    def pair(self, label: str) -> None:
        """Nodes a and b, one kind (``label``), both joined."""
        self.node("a", label, wait=False)
        self.node("b", label, wait=False)
        self.wait_for_nodes({"a", "b"})

    def wait_for_nodes(self, names: set[str], timeout: float = 60) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.file), timeout=10) as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                joined = {w.get("name") for w in client.scheduler_info(n_workers=-1)["workers"].values()}
                if names <= joined:
                    return
                time.sleep(0.2)
        raise AssertionError(f"nodes {names} did not join")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for name in list(self.procs):
            if self.procs[name].poll() is None:
                self.kill(name)


@pytest.fixture
def fleet(tmp_path):
    made = Fleet(tmp_path)
    yield made
    made.close()


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory):
    """One fleet for the tests that kill no node: nodes a and b, labelled as two kinds."""
    made = Fleet(tmp_path_factory.mktemp("two-kinds"))
    made.node("a", "kind-one", wait=False)
    made.node("b", "kind-two", wait=False)
    made.wait_for_nodes({"a", "b"})
    yield made
    made.close()


def sweep(
    fleet: Fleet, results: Path, *extra: str, profile: str = "quick", attentions: str = '["eaa", "ufo"]'
) -> subprocess.Popen:
    grid = fleet.folder / "grid.toml"
    grid.write_text(GRID.format(profile=profile, attentions=attentions))
    argv = [str(BIN / "mobattn"), "sweep", str(grid), "--results", str(results), "--cluster", str(fleet.file)]
    return subprocess.Popen([*argv, *extra], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def rows(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.read_text().splitlines()]


def subjects(found: list[dict]) -> Counter:
    return Counter((r["attention"], tuple(r["hw"]), r["environment"]["node_label"]) for r in found)


@pytest.mark.slow
def test_compare_runs_the_grid_once_per_kind_and_spread_refuses_two_kinds(two_kinds, tmp_path):
    fleet = two_kinds
    results = tmp_path / "rows.jsonl"
    proc = sweep(fleet, results)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    found = rows(results)
    assert set(subjects(found).values()) == {1} and len(found) == 8  # 4 configurations x 2 kinds
    # the summary line every measuring command ends with (issue 38), after a line per event
    assert "8 configurations in " in err and "timed runs " in err and "on the fleet" in err, err
    assert err.count("done: ") == 8 and "(kind-one)" in err
    for row in found:
        assert (
            row["details"]["fleet"]["node"]
            == {"kind-one": "a", "kind-two": "b"}[row["environment"]["node_label"]]
        )
        assert row["other_cpu_cores"] is not None
    # a rerun has nothing left; spread across the two kinds is refused, naming them
    out, err = sweep(fleet, results).communicate(timeout=60)
    assert len(rows(results)) == 8, err
    proc = sweep(fleet, tmp_path / "spread.jsonl", "--fleet", "spread")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "2 kinds (kind-one, kind-two)" in err and "Traceback" not in err
    assert not (tmp_path / "spread.jsonl").exists()
    proc = sweep(fleet, tmp_path / "none.jsonl", "--machines", "kind-three")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no such kind in the fleet" in err and "(kind-one, kind-two)" in err
    # a table measured on the fleet: one table row per kind, never merged
    table = [str(BIN / "mobattn"), "table", "--models", "swiftformer_xs", "--backend", "torch"]
    table += ["--profile", "quick", "--results", str(results), "--cluster", str(fleet.file), "--json"]
    out = subprocess.run(table, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "started: " in out.stderr and "on the fleet" in out.stderr  # table --cluster is not silent
    machines = sorted(r["machine"] for r in json.loads(out.stdout))
    assert len(machines) == 2 and "[kind-one] #" in machines[0] and "[kind-two] #" in machines[1]


@pytest.mark.slow
def test_a_node_killed_mid_configuration_loses_no_row_and_duplicates_none(fleet, tmp_path):
    fleet.pair("same")
    results = tmp_path / "rows.jsonl"
    proc = sweep(fleet, results, "--fleet", "spread", profile="default")  # about 2 s a configuration
    for line in proc.stderr:
        if line.startswith("started:") and line.rstrip().endswith("on a (same)"):
            time.sleep(0.5)
            fleet.kill("node-a")
            break
    out, err = proc.communicate(timeout=120)
    found = rows(results)
    assert proc.returncode == 0 and len(found) == 4, err
    assert "lost its machine: " in err and "on a (same)" in err
    assert set(subjects(found).values()) == {1} and {r["status"] for r in found} == {"ok"}
    assert {r["details"]["fleet"]["node"] for r in found} >= {"b"}


@pytest.mark.slow
def test_a_second_node_of_one_machine_is_refused(two_kinds):
    second = two_kinds.node("a", "kind-one", wait=False)
    assert second.wait(timeout=60) == 2
    log = (two_kinds.folder / "node-a+.log").read_text()
    assert "already in this fleet" in log and "Traceback" not in log
    # the first node still serves, from Python too (compare: one row per kind)
    from mobattn.bench import measure

    found = measure(attention_configs(["eaa"], [16], [(4, 4)], profile="quick"), cluster=str(two_kinds.file))
    assert all(r.ok for r in found)
    assert sorted((r.details["fleet"]["node"], r.environment["node_label"]) for r in found) == [
        ("a", "kind-one"),
        ("b", "kind-two"),
    ]


@pytest.mark.slow
def test_a_killed_driver_resumes_from_the_results_file(two_kinds, tmp_path):
    fleet, one_kind = two_kinds, ("--machines", "kind-one")
    results = tmp_path / "rows.jsonl"
    for stop in (signal.SIGINT, signal.SIGKILL):  # Ctrl-C, then a killed driver
        proc = sweep(fleet, results, *one_kind, profile="default")
        for line in proc.stderr:
            if line.startswith("done:"):
                proc.send_signal(stop)
                break
        rest = proc.stderr.read()
        assert proc.wait() == (130 if stop == signal.SIGINT else -signal.SIGKILL), rest
        assert "Traceback" not in rest
    before = len(rows(results))
    assert 2 <= before < 4
    out, err = sweep(fleet, results, *one_kind, profile="default").communicate(timeout=120)
    found = rows(results)
    assert len(found) == 4 and set(subjects(found).values()) == {1}, err
    assert {r["environment"]["node_label"] for r in found} == {"kind-one"}


@pytest.mark.slow
def test_no_engine_thread_cap_reaches_a_node(two_kinds):
    from distributed import Client

    with Client(scheduler_file=str(two_kinds.file), timeout=10) as client:
        seen = client.run(lambda: {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    assert list(seen.values()) == [{"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None}] * 2


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line(tmp_path):
    out = subprocess.run(
        [str(BIN / "mobattn"), "sweep", "--preset", "quick", "--results", str(tmp_path / "r.jsonl")]
        + ["--cluster", "tcp://127.0.0.1:9", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "cannot reach the fleet's scheduler" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.jsonl").exists()
    node = subprocess.run(
        [str(BIN / "mobattn"), "node", "tcp://127.0.0.1:9", "--wait", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 2 and node.stderr.splitlines()[-1].startswith("error: cannot join the fleet")
    assert "Traceback" not in node.stderr
    # a scheduler file that never appears (Dask itself would wait for it forever)
    argv = [str(BIN / "mobattn"), "node", str(tmp_path / "scheduler.json"), "--wait", "1"]
    node = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert node.returncode == 2 and "no scheduler file at" in node.stderr.splitlines()[-1]


def machine(label: str) -> Machine:
    return Machine(f"tcp://{label}", label, "host", {**environment(), "node_label": label})


def test_queues_start_with_the_longest_configuration_and_skip_what_is_done():
    configs = attention_configs(["eaa", "mhsa"], [64], [(14, 14), (56, 56)])
    queues = plan(configs, {"a": machine("a"), "b": machine("b")}, [], "compare")
    assert len(queues) == 2
    for jobs in queues.values():
        assert [j.config.label() for j in jobs][0].startswith("mhsa d64 56x56")
        costs = [estimated_cost_s(j.config) for j in jobs]
        assert costs == sorted(costs, reverse=True)


def test_a_kind_whose_machines_all_left_is_shown_with_what_it_owes(tmp_path):
    """``mobattn fleet``'s count: a kind with rows on the fleet and no machine now keeps
    its share of the grid (issue 38: it was hidden, and its configurations with it)."""
    from mobattn.bench.results import append_row
    from mobattn.bench.worker import base_row

    configs = attention_configs(["eaa", "mhsa"], [16], [(4, 4), (8, 8)], profile="quick")
    results = tmp_path / "rows.jsonl"
    gone = base_row(configs[0])
    gone.status, gone.median_ms, gone.environment = "ok", 1.0, machine("b").environment
    gone.details = {"fleet": {"node": "b"}}
    append_row(results, gone)
    left = remaining(configs, {"a": machine("a")}, results)
    assert left == {"a": 4, "b": 3}  # b measured one of four before it left
    (absent,) = absent_kinds({"a": machine("a")}, [gone]).values()
    assert absent.kind_name == "b" and absent.node == ABSENT
    assert absent_kinds({"a": machine("a"), "b": machine("b")}, [gone]) == {}


def test_shards_by_cost_cover_the_grid_once_and_balance_it():
    configs = attention_configs(
        ["eaa", "external", "hilo", "mhsa", "ufo"], [64, 128], [(s, s) for s in (14, 28, 56, 128)]
    )
    for count in (2, 4):
        parts = [shard(configs, i, count, by_cost=True) for i in range(1, count + 1)]
        labels = [c.label() for part in parts for c in part]
        assert sorted(labels) == sorted(c.label() for c in configs)
        by_cost = max(sum(map(estimated_cost_s, part)) for part in parts)
        by_count = max(sum(map(estimated_cost_s, shard(configs, i, count))) for i in range(1, count + 1))
        assert by_cost <= by_count


@pytest.mark.slow  # measures in worker processes (seconds)
def test_more_threads_than_the_usable_cores_is_a_skipped_row(tmp_path):
    """Cores are the process's own (its affinity here; a cgroup quota likewise), not the
    host's: pinned to one core, a 2-thread configuration is skipped, not measured."""
    script = (
        "import os, json; os.sched_setaffinity(0, {0});"
        "from mobattn.bench import measure, attention_configs;"
        "rows = measure(attention_configs(['eaa'], [16], [(4, 4)], threads=[1, 2], profile='quick'));"
        "print(json.dumps([(r.status, r.reason, r.environment['cores']) for r in rows]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (one, two) = json.loads(out.stdout.splitlines()[-1])
    assert one[0] == "ok" and one[2] == 1
    assert two[0] == "skipped" and "more than the 1 usable cores" in two[1]


def test_committed_rows_keep_their_identity_on_an_unrestricted_machine():
    from mobattn.bench.row import Row

    path = Path(__file__).resolve().parent.parent / "results/benchmarks/runtime-parity.jsonl"
    row = Row.from_dict(json.loads(path.read_text().splitlines()[0]))
    relabelled = Row.from_dict({**row.to_dict(), "environment": {**row.environment, "node_label": None}})
    assert "node_label" not in row.environment and relabelled.identity() == row.identity()
    labelled = Row.from_dict({**row.to_dict(), "environment": {**row.environment, "node_label": "pool-a"}})
    assert labelled.identity() != row.identity()


@pytest.mark.slow
def test_a_busy_machine_makes_a_row_noisy(tmp_path):
    """Another process keeping a core busy while a row is timed shows in the row."""
    from mobattn.bench import measure

    config = attention_configs(["eaa"], [64], [(28, 28)], profile="default")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        (loaded,) = measure(config, cache=False)
    finally:
        busy.kill()
        busy.wait()
    assert loaded.ok and loaded.other_cpu_cores > 0.5 and loaded.noisy


@pytest.mark.slow
def test_a_configuration_lost_twice_is_an_error_row_naming_the_machines(fleet, tmp_path):
    fleet.pair("same")
    results = tmp_path / "rows.jsonl"
    proc = sweep(
        fleet, results, "--fleet", "spread", profile="default", attentions='["eaa"]'
    )  # 2 configurations
    victim = None
    for line in proc.stderr:
        if line.startswith("started:") and victim is None and line.rstrip().endswith("on a (same)"):
            victim = line.split("started: ")[1].split(" on ")[0]
            time.sleep(0.5)
            fleet.kill("node-a")
        elif victim and line.startswith(f"started: {victim} on b"):
            time.sleep(0.5)
            fleet.kill("node-b")
            break
    proc.communicate(timeout=120)
    assert proc.returncode == 1 and victim
    found = {f"{r['attention']} d{r['dim']} {r['hw'][0]}x{r['hw'][1]}": r for r in rows(results)}
    lost = [r for label, r in found.items() if victim.startswith(label)]
    assert len(found) == 2 and len(lost) == 1
    assert lost[0]["status"] == "error" and "lost 2 times (a, b)" in lost[0]["reason"]
    assert [r["status"] for r in found.values() if r is not lost[0]] == ["ok"]


# ---- issue 34: nothing hung on the fleet ----------------------------------------------


def _sweep_grid(fleet: Fleet, results: Path, grid: str, *extra: str) -> subprocess.Popen:
    path = fleet.folder / "grid-34.toml"
    path.write_text(grid)
    argv = [str(BIN / "mobattn"), "sweep", str(path), "--results", str(results), "--cluster", str(fleet.file)]
    return subprocess.Popen([*argv, *extra], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_stopped_node_is_a_timeout_row_naming_it_and_gets_no_more_work(fleet, tmp_path):
    """A SIGSTOPped node hung the sweep until Dask dropped it (7.5 minutes) and never
    gave a row: its configuration has the fleet's own deadline (timeout plus a margin)."""
    from mobattn.bench.fleet import deadline_s

    fleet.pair("same")
    grid = GRID.format(profile="default", attentions='["eaa"]') + "timeout_s = 5\n"
    results = tmp_path / "rows.jsonl"
    proc = _sweep_grid(fleet, results, grid, "--fleet", "spread")
    stopped = None
    for line in proc.stderr:
        if line.startswith("started:") and line.rstrip().endswith("on a (same)"):
            stopped = fleet.procs["node-a"]
            os.killpg(stopped.pid, signal.SIGSTOP)
            break
    try:
        clock = time.monotonic()
        out, err = proc.communicate(timeout=120)
        waited = time.monotonic() - clock
    finally:
        if stopped is not None:
            os.killpg(stopped.pid, signal.SIGCONT)
    assert stopped is not None and proc.returncode == 1, err
    assert waited < deadline_s(attention_configs(["eaa"], [16], [(4, 4)], timeout_s=5)[0]) + 15
    found = rows(results)
    timeouts = [r for r in found if r["status"] == "timeout"]
    assert len(found) == 2 and len(timeouts) == 1, err
    assert (
        "no answer from a within" in timeouts[0]["reason"] and timeouts[0]["details"]["fleet"]["node"] == "a"
    )
    assert [r["details"]["fleet"]["node"] for r in found if r["status"] == "ok"] == ["b"]
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_dead_scheduler_is_one_line_exit_1_and_keeps_the_rows(fleet, tmp_path):
    """Killing the scheduler mid-sweep gave a KeyError traceback and no row."""
    fleet.node("a", "solo")
    results = tmp_path / "rows.jsonl"
    proc = sweep(fleet, results, profile="default")
    for line in proc.stderr:
        if line.startswith("done:"):
            fleet.kill("scheduler")
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "scheduler stopped answering" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
    found = rows(results)  # every line a whole row
    assert found[0]["status"] == "ok"
    assert all(r["status"] == "ok" or "stopped answering" in r["reason"] for r in found)


@pytest.mark.slow
def test_the_fleet_is_what_the_scheduler_says_now_not_a_cached_copy(two_kinds):
    """Dask's periodic refresh rewrites the client's cached worker list, sometimes without
    workers: read at that moment, every machine looked lost."""
    from distributed import Client
    from distributed.client import SchedulerInfo

    from mobattn.bench.fleet import machines

    with Client(scheduler_file=str(two_kinds.file), timeout=10) as client:
        client._scheduler_identity = SchedulerInfo({"workers": {}})  # what the refresh may leave
        assert sorted(m.node for m in machines(client).values()) == ["a", "b"]


@pytest.mark.parametrize("label", ["a\nb", "x" * 2000])
def test_a_node_label_that_would_split_a_line_is_refused(tmp_path, label):
    done = subprocess.run(
        [str(BIN / "mobattn"), "node", "tcp://127.0.0.1:9", "--label", label, "--wait", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--label" in done.stderr.splitlines()[-1]


@pytest.mark.slow
def test_two_nodes_with_different_fingerprints_are_two_kinds(fleet, tmp_path):
    """Issue 35: one CPU label, two machines (here: two machine ids on one host, as two
    clones of one image that set MOBATTN_MACHINE_ID apart would be)."""
    for name in ("a", "b"):
        argv = [str(BIN / "mobattn"), "node", str(fleet.file)]
        fleet.start(f"node-{name}", argv, MOBATTN_NODE_ID=name, MOBATTN_MACHINE_ID=f"host-{name}")
    fleet.wait_for_nodes({"a", "b"})
    shown = subprocess.run(
        [str(BIN / "mobattn"), "fleet", str(fleet.file), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    kinds = {m["node"]: m["kind"] for m in json.loads(shown.stdout)}
    assert kinds["a"] != kinds["b"] and all("#" in k for k in kinds.values())
    results = tmp_path / "rows.jsonl"
    out, err = sweep(fleet, results, attentions='["eaa"]').communicate(timeout=180)
    found = rows(results)
    assert len(found) == 4, err  # compare: the grid once per machine
    assert len({r["environment"]["fingerprint"] for r in found}) == 2
