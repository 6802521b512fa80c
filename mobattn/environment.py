"""The environment a record was produced in: machine and library versions."""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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

    packages = ("torch", "onnx", "onnxruntime", "onnxsim", "coremltools", "numpy", "executorch")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mobattn": __version__,
        **{name: package_version(name) for name in packages},
        **_gpu(),
    }
