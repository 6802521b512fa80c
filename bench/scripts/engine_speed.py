"""Before and after the sweep engine of issue 26, measured side by side in one run.

"Old" is a fresh interpreter per worker phase and no artifact cache
(``MOBATTN_WORKERS=fresh``, ``--no-cache``); "new" is the warm template and the cache,
from an empty cache ("cold") and from the cache the cold run filled ("warm").

    .venv/bin/python bench/scripts/engine_speed.py --out results/benchmarks/engine-speed.json \
        --markdown results/benchmarks/engine_speed.md

1. ``mobattn --help``: wall time, median of 7.
2. One configuration per command (``mobattn bench``, quick profile, 1 thread, bare
   mechanism, dim 64, 14x14): wall time minus timed time, per backend, median over the
   five mechanisms of the scaling studies; old, new cold, new warm, interleaved.
3. ``mobattn sweep --preset quick`` (15 configurations): wall, timed, efficiency.
4. Same numbers: 30 configurations (five mechanisms x 14x14, 28x28, 56x56 x torch,
   onnxruntime; default profile), each measured the old way and the new way, alternating
   which goes first; the medians' ratio new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MECHANISMS = ("eaa", "hilo", "external", "ufo", "mhsa")
BACKENDS = ("torch", "onnxruntime", "executorch")
MOBATTN = [sys.executable, "-m", "mobattn"]


def run_cli(args: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(MOBATTN + args, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, done


def modes(cache_dir: str) -> dict[str, tuple[dict, list[str]]]:
    base = {**os.environ, "MOBATTN_CACHE": cache_dir}
    return {
        "old": ({**base, "MOBATTN_WORKERS": "fresh"}, ["--no-cache"]),
        "new": ({**base, "MOBATTN_WORKERS": "warm"}, []),
    }


def help_time() -> float:
    times = [run_cli(["--help"], dict(os.environ))[0] for _ in range(7)]
    return statistics.median(times)


def one_configuration(cache_dir: str, backends=BACKENDS) -> dict:
    """Per backend and mode: wall minus timed seconds of one `mobattn bench` command."""
    overhead: dict[str, dict[str, list[float]]] = {
        b: {"old": [], "new cold": [], "new warm": []} for b in backends
    }
    env_of = modes(cache_dir)
    for backend in backends:
        for mechanism in MECHANISMS:
            args = ["bench", "--attention", mechanism, "--dim", "64", "--hw", "14x14", "--backend", backend]
            args += ["--profile", "quick", "--threads", "1", "--json"]
            for label, mode in (("new cold", "new"), ("old", "old"), ("new warm", "new")):
                env, extra = env_of[mode]
                wall, done = run_cli(args + extra, env)
                rows = json.loads(done.stdout)
                timed = rows[0]["phases_s"]["timed"]
                overhead[backend][label].append(wall - timed)
                print(
                    f"one config: {backend} {mechanism} {label}: wall {wall:.2f} s, timed {timed:.2f} s",
                    flush=True,
                )
    return {b: {m: statistics.median(v) for m, v in per.items()} for b, per in overhead.items()}


def quick_sweep(cache_dir: str) -> dict:
    found = {}
    env_of = modes(cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for label, mode in (("old", "old"), ("new cold", "new"), ("new warm", "new")):
            env, extra = env_of[mode]
            results = Path(tmp) / f"{label.replace(' ', '-')}.jsonl"
            wall, done = run_cli(["sweep", "--preset", "quick", "--results", str(results), *extra], env)
            rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
            timed = sum(r["phases_s"]["timed"] for r in rows if r.get("phases_s"))
            export = sum(
                sum(r["phases_s"].get(k, 0.0) for k in ("build", "export", "validation"))
                for r in rows
                if r.get("phases_s")
            )
            found[label] = {
                "configurations": len(rows),
                "wall_s": wall,
                "timed_s": timed,
                "export_s": export,
                "efficiency": timed / wall,
                "other_per_configuration_s": (wall - timed - export) / len(rows),
                "cached": sum(1 for r in rows if r.get("artifact_cached")),
            }
            print(f"quick sweep {label}: {found[label]}", flush=True)
    return found


def same_numbers(rounds: int = 3) -> list[dict]:
    """Each configuration measured ``rounds`` times each way, interleaved (old, new, old,
    new, ...; the first way alternates between configurations); the median of each way's
    medians is compared. The old way's first two rounds, compared with each other, say how
    far this machine's noise alone moves a median (the A/A baseline)."""
    from mobattn.bench import attention_configs
    from mobattn.bench.cache import ArtifactCache
    from mobattn.bench.compute import machine_peak_gflops
    from mobattn.bench.runner import run
    from mobattn.bench.workers import FreshWorkers, worker_pool

    configs = attention_configs(
        MECHANISMS, [64], [(14, 14), (28, 28), (56, 56)], backends=["torch", "onnxruntime"]
    )
    compared = []
    with worker_pool("warm", {"onnx"}) as pool:
        warm, cache = pool.get(), ArtifactCache()
        for i, config in enumerate(configs):
            config.matmul_peak_gflops = machine_peak_gflops(config.threads, config.device)
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            medians: dict[str, list[float]] = {"old": [], "new": []}
            noisy = False
            for _ in range(rounds):
                for mode in order:
                    row = (
                        run(config, workers=FreshWorkers())
                        if mode == "old"
                        else run(config, workers=warm, cache=cache)
                    )
                    if row.ok:
                        medians[mode].append(row.median_ms)
                        noisy = noisy or bool(row.noisy)
            old = statistics.median(medians["old"]) if medians["old"] else None
            new = statistics.median(medians["new"]) if medians["new"] else None
            first_two = medians["old"][:2]
            compared.append(
                {
                    "config": config.label(),
                    "old_ms": old,
                    "new_ms": new,
                    "ratio": new / old if old and new else None,
                    "old_rounds_ms": medians["old"],
                    "new_rounds_ms": medians["new"],
                    "aa_ratio": first_two[1] / first_two[0] if len(first_two) == 2 else None,
                    "noisy": noisy,
                }
            )
            print(f"same numbers: {compared[-1]}", flush=True)
    return compared


def stamp(report: dict, part: str) -> None:
    """When a part started (a report updated by several runs says each part's time)."""
    report.setdefault("parts", {})[part] = time.strftime("%Y-%m-%d %H:%M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="JSON file for the figures")
    parser.add_argument("--markdown", type=Path, help="also write the page's section here")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="the backends of part 2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: help,one,sweep,same")
    parser.add_argument("--update", action="store_true", help="keep the parts of --out this run skips")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    report: dict = json.loads(args.out.read_text()) if args.update and args.out.exists() else {}
    report.update(machine=f"{os.cpu_count()} cores", started=time.strftime("%Y-%m-%d %H:%M:%S"))
    with tempfile.TemporaryDirectory(prefix="engine-speed-cache-") as cache_dir:
        if "help" not in skip:
            stamp(report, "help")
            report["help_s"] = help_time()
            print(f"mobattn --help: {report['help_s']:.3f} s", flush=True)
        if "one" not in skip:
            stamp(report, "one")
            measured = one_configuration(cache_dir, args.backends.split(","))
            report["one_configuration_overhead_s"] = {
                **report.get("one_configuration_overhead_s", {}),
                **measured,
            }
        if "sweep" not in skip:
            stamp(report, "sweep")
            report["quick_sweep"] = quick_sweep(tempfile.mkdtemp(dir=cache_dir))
        if "same" not in skip:
            stamp(report, "same")
            os.environ["MOBATTN_CACHE"] = cache_dir
            report["same_numbers"] = same_numbers()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.markdown:
        args.markdown.write_text(markdown(report))
        print(f"wrote {args.markdown}")


def _parts(report: dict) -> str:
    return ", ".join(f"{part} {when}" for part, when in report.get("parts", {}).items()) or "(not recorded)"


def markdown(report: dict) -> str:
    """The page's section: every figure from this one run, old beside new."""
    lines = [
        "Measured by `bench/scripts/engine_speed.py` on this project's machine "
        f"({report['machine']}; parts started {_parts(report)} UTC). Old: a fresh interpreter per "
        "worker phase and no cache (`MOBATTN_WORKERS=fresh`, `--no-cache`); new: the warm template and the "
        "artifact cache, from an empty cache (cold) and from a filled one (warm).",
        "",
    ]
    if "help_s" in report:
        lines += [f"`mobattn --help`: {report['help_s']:.3f} s (median of 7; goal <= 0.3 s).", ""]
    if "one_configuration_overhead_s" in report:
        lines += [
            "One configuration per `mobattn bench` command (quick profile, 1 thread, bare mechanism, "
            "dim 64, 14x14): wall time minus timed time in seconds, median over eaa, hilo, external, "
            "ufo and mhsa. It includes the command's own start (it imports torch) and, cold, the export.",
            "",
            "| backend | old | new, cold cache | new, warm cache | goal (new) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        goals = {"torch": 1.5, "onnxruntime": 1.5, "executorch": 3.0}
        for backend, per in report["one_configuration_overhead_s"].items():
            lines.append(
                f"| {backend} | {per['old']:.2f} | {per['new cold']:.2f} | {per['new warm']:.2f} | "
                f"<= {goals.get(backend, 0):.1f} |"
            )
        lines.append("")
    if "quick_sweep" in report:
        from mobattn.bench.sweep import PRESETS

        quick = PRESETS["quick"]
        lines += [
            f"`mobattn sweep --preset quick` ({len(quick.configs())} configurations, "
            f"{', '.join(quick.backends)} only):",
            "",
            "| engine | wall (s) | timed (s) | efficiency | exports (s) | rest per config (s) | cached |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, f in report["quick_sweep"].items():
            lines.append(
                f"| {label} | {f['wall_s']:.1f} | {f['timed_s']:.1f} | {f['efficiency']:.0%} | "
                f"{f['export_s']:.1f} | {f['other_per_configuration_s']:.2f} | "
                f"{f['cached']}/{f['configurations']} |"
            )
        lines.append("")
    if "same_numbers" in report:
        compared = report["same_numbers"]
        ratios = [c["ratio"] for c in compared if c["ratio"] is not None]
        within = sum(1 for r in ratios if abs(r - 1) <= 0.03)
        aa = [c["aa_ratio"] for c in compared if c.get("aa_ratio") is not None]
        aa_within = sum(1 for r in aa if abs(r - 1) <= 0.03)
        rounds = len(compared[0].get("old_rounds_ms") or [1])
        lines += [
            f"Same numbers: {len(compared)} configurations (five mechanisms x 14x14, 28x28, 56x56 x torch, "
            f"onnxruntime; default profile; dim 64; 1 thread), each measured {rounds} times the old way and "
            f"{rounds} times the new way, interleaved; the median of each way's medians compared: "
            f"**{within} of {len(ratios)}** agree within +-3% (goal: at least 27 of 30). The A/A baseline, "
            f"the old way's first two rounds against each other: {aa_within} of {len(aa)} within +-3% "
            "(what this machine's noise alone allows). Those outside +-3%:",
            "",
            "| configuration | old median (ms) | new median (ms) | new / old | old / old (A/A) | noisy |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for c in compared:
            if c["ratio"] is None or abs(c["ratio"] - 1) > 0.03:
                ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.3f}"
                aa_ratio = "n/a" if c.get("aa_ratio") is None else f"{c['aa_ratio']:.3f}"
                lines.append(
                    f"| {c['config']} | {c['old_ms'] or 0:.4f} | {c['new_ms'] or 0:.4f} | {ratio} | "
                    f"{aa_ratio} | {'yes' if c['noisy'] else 'no'} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
