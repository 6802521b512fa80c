"""The wheel holds every module of the source tree under its import path (a sub-package
can no longer go missing, as ``mobattn.cli`` once did). ``make wheel-check`` installs that
wheel into a clean environment and runs the command line from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMPORT_PATHS = {"mobattn": "mobattn", "exporters": "mobattn/exporters", "bench": "mobattn/bench"}


def source_modules() -> set[str]:
    """Every .py of the three source folders, as its path inside the wheel."""
    found = set()
    for folder, installed in IMPORT_PATHS.items():
        for file in (ROOT / folder).rglob("*.py"):
            relative = file.relative_to(ROOT / folder)
            if relative.parts[0] in ("scripts", "__pycache__"):
                continue  # bench/scripts: one-off benchmarks, not installed
            found.add(f"{installed}/{relative.as_posix()}")
    return found


@pytest.mark.slow
def test_wheel_holds_every_source_module(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("mobattn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(source_modules() - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "mobattn/cli/__init__.py" in names
    assert "mobattn/models/imagenet_classes.txt" in names
    assert not any(name.startswith("mobattn/bench/scripts") for name in names)
