"""The environment a record was produced in: machine and library versions."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
from importlib import metadata


def _cpu_model() -> str:
    if platform.system() == "Darwin":  # Apple silicon's platform.processor() is only "arm"
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            query = ["sysctl", "-n", "machdep.cpu.brand_string"]
            out = subprocess.run(query, capture_output=True, text=True, timeout=10)
            if out.stdout.strip():
                return out.stdout.strip()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cgroup_value(name: str) -> str | None:
    """A cgroup v2 control file of this process's own cgroup (None outside one)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    path = line.split("::", 1)[1].strip()
                    with open(f"/sys/fs/cgroup{path}/{name}") as control:
                        return control.read().strip()
    return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by the cgroup's CPU
    quota (a container given 2 CPUs of a 64-core host has 2, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = (_cgroup_value("cpu.max") or "max").split()
    if quota and quota[0] != "max":
        with contextlib.suppress(ValueError, IndexError):
            cores = min(cores, max(1, math.ceil(int(quota[0]) / int(quota[1]))))
    return cores


def memory_limit_mib() -> float | None:
    """The cgroup's memory limit (a container's), None where there is none."""
    value = _cgroup_value("memory.max")
    return int(value) / 2**20 if value and value.isdigit() else None


def usable_memory_mib() -> float:
    """What this process's measurements may use: the machine's memory or, inside a
    container, the cgroup's limit, whichever is smaller (the oom judgement uses it)."""
    total = float("inf")
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            total = int(f.readline().split()[1]) / 1024
    return min(total, memory_limit_mib() or float("inf"))


def node_label() -> str | None:
    """``MOBATTN_NODE_LABEL``: splits otherwise identical machines into kinds (in the
    identity of every row measured under it)."""
    from mobattn.settings import node_label as checked_label

    return checked_label()


def package_version(package: str) -> str | None:
    """The installed version of ``package`` (None if it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _gpu() -> dict:
    """The GPU CUDA rows are measured on: its name, the CUDA version torch was built
    with, and the driver (from nvidia-smi where present). Empty without a GPU."""
    import shutil
    import subprocess

    if "+cpu" in (package_version("torch") or ""):  # a CPU build has no GPU to name: no torch import
        return {}
    import torch

    if not torch.cuda.is_available():
        return {}
    driver = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "--id=0"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=30)
        driver = out.stdout.strip() or None
    return {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda, "gpu_driver": driver}


_given: dict = {}


def use_environment(known: dict) -> None:
    """Take the environment a parent process already measured (a benchmark worker is
    told it by its runner: the machine facts are measured once per sweep)."""
    _given.clear()
    _given.update(known)


def environment() -> dict:
    """CPU model, core count, OS, Python and the versions of the libraries that matter;
    with a CUDA GPU, also its name, CUDA and driver versions."""
    return dict(_given) if _given else dict(_measured())


@functools.cache
def _measured() -> dict:
    from mobattn import __version__

    packages = (
        "torch",
        "onnx",
        "onnxruntime",
        "onnxsim",
        "coremltools",
        "numpy",
        "executorch",
        "ai-edge-litert",
        "litert-torch",
    )
    from mobattn.machine import machine_facts

    cpu, cores = _cpu_model(), usable_cores()
    return {
        "cpu": cpu,
        "cores": cores,
        **machine_facts(cpu, cores),
        "memory_limit_mib": memory_limit_mib(),
        "node_label": node_label(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mobattn": __version__,
        **{name: package_version(name) for name in packages},
        **_gpu(),
    }
