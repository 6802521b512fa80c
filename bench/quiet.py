"""Was the machine quiet while a row was timed? The CPU time every other process used
over the timed window, from the kernel's counters (``/proc/stat`` against this process's
own ``getrusage``). A sweep on a shared machine, or two fleet nodes on one host, shows up
here rather than only as a wider spread."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

# Other processes keeping more than half a core busy on average make a row noisy.
QUIET_CORES = 0.5
_BUSY_FIELDS = slice(1, 9)  # user nice system idle iowait irq softirq steal -> all but idle/iowait
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[_BUSY_FIELDS]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICK


def _own_s() -> float:
    """This process's CPU time and its children's, ended or running: a warm template
    started ahead of the measurement (:func:`.workers.prestart`) is this command's work,
    not another process's load."""
    usage, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + ended.ru_utime + ended.ru_stime + _live_children_s()


def _live_children_s() -> float:
    """CPU seconds of this process's running children (``/proc/PID/stat``, Linux; 0 elsewhere)."""
    total, me = 0.0, os.getpid()
    try:
        entries = os.listdir("/proc/self/task")
        children = set()
        for task in entries:
            with open(f"/proc/self/task/{task}/children") as f:
                children.update(f.read().split())
    except OSError:
        return 0.0
    for pid in children:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == me:  # the parent pid: still ours
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


@dataclass
class OtherLoad:
    """Started before timing, read after: ``cores`` is the average number of cores other
    processes kept busy (None where the kernel does not say, e.g. macOS)."""

    wall: float
    busy: float | None
    own: float

    @classmethod
    def start(cls) -> OtherLoad:
        return cls(time.perf_counter(), _machine_busy_s(), _own_s())

    def cores(self) -> float | None:
        busy, wall = _machine_busy_s(), time.perf_counter() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self.busy) - (_own_s() - self.own)) / wall
