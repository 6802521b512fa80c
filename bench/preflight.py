"""The machine's state before a run measures anything, printed once and recorded in
every row's environment (``preflight``): other processes' load, frequency scaling and
thermal throttling where the system says them (pyperf's ``system show`` checks the same).
A warning is a reason to distrust small differences, not a refusal."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from mobattn.environment import environment

from .quiet import QUIET_CORES, OtherLoad

SAMPLE_S = 0.25  # how long other processes' load is sampled
_CPU = Path("/sys/devices/system/cpu")
_remembered: dict = {}  # one check per process and minute (a fleet node measures often)


def throttle_events() -> int | None:
    """Thermal throttling events counted by the kernel since boot (Intel; None elsewhere)."""
    counts = []
    for path in _CPU.glob("cpu*/thermal_throttle/*_throttle_count"):
        with contextlib.suppress(OSError, ValueError):
            counts.append(int(path.read_text()))
    return sum(counts) if counts else None


def preflight() -> dict:
    """Other processes' cores over SAMPLE_S, the governor, boost and throttle counts, and
    the warnings they give."""
    if _remembered and time.monotonic() - _remembered["at"] < 60:
        return _remembered["state"]
    load = OtherLoad.start()
    time.sleep(SAMPLE_S)
    env = environment()
    state = {
        "other_cpu_cores": load.cores(),
        "governor": env.get("governor"),
        "boost": env.get("boost"),
        "throttle_events": throttle_events(),
    }
    state["warnings"] = warnings_of(state)
    _remembered.update(at=time.monotonic(), state=state)
    return state


def warnings_of(state: dict) -> list[str]:
    found = []
    if (state.get("other_cpu_cores") or 0.0) > QUIET_CORES:
        found.append(
            f"other processes keep {state['other_cpu_cores']:.1f} cores busy: rows may be noisy "
            "(each row says how busy the machine was while it was timed)"
        )
    if state.get("governor") not in (None, "performance"):
        governor = state["governor"]
        found.append(f"the CPU frequency governor is '{governor}', not 'performance': clocks may vary")
    if state.get("boost"):
        found.append("frequency boost is on: clocks depend on temperature and load")
    if state.get("throttle_events"):
        found.append(f"the CPU has been thermally throttled ({state['throttle_events']} events since boot)")
    return found
