"""Load a file the user handed over where a crash cannot take the command down.

Native runtimes (ExecuTorch's loader above all) may abort on a corrupt or hostile file.
:func:`probe_file` first checks what the file is (a regular file, not empty, the
container's magic where it has one) and then, for a target whose loader is native code
that can crash (``Target.isolated_loading``), loads it once in a fresh isolated process
(``python -I -m mobattn.exporters.probe``): a crash there is one line here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from mobattn.errors import MobattnError, signal_name

from .formats import Target, target_for_file

PROBE_TIMEOUT_S = 300.0


def check_file(path: Path, target: Target) -> None:
    """What the file is, before native code sees it: it exists, is a regular file (a
    folder for a folder target: never a FIFO or a device) and is not empty, and starts
    with the container's magic bytes where the format has them."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MobattnError(f"artifact not found: {path}") from None
    except OSError as exc:
        raise MobattnError(f"cannot read {path}: {exc.strerror or exc}") from None
    if target.is_folder:
        if not stat.S_ISDIR(info.st_mode):
            raise MobattnError(f"{path} is not a {target.suffix} package (a folder)")
        _check_contained(path)
        target.implementation().check_package(path)
        return
    if not stat.S_ISREG(info.st_mode):
        raise MobattnError(f"{path} is not a regular file")
    if info.st_size == 0:
        raise MobattnError(f"{path} is empty")
    if target.magic:
        offset, magic = target.magic
        with open(path, "rb") as f:
            f.seek(offset)
            if f.read(len(magic)) != magic:
                raise MobattnError(f"{path} is not a {target.suffix} file (no {magic.decode()} header)")


def _check_contained(package: Path) -> None:
    """A package holds plain files and folders only: a link could make a runtime read
    something outside it (mobattn's exports never contain one)."""
    if package.is_symlink():
        raise MobattnError(f"{package} is a link; give the package itself")
    for root, folders, files in os.walk(package):
        for name in folders + files:
            entry = Path(root) / name
            if entry.is_symlink():
                raise MobattnError(f"{package} holds a link ({entry.relative_to(package)}): not a package")
            if not (entry.is_dir() or entry.is_file()):
                raise MobattnError(f"{package} holds {entry.relative_to(package)}, not a plain file")


def probe_file(path: str | Path, action: str = "use", facts: bool = False, precision: bool = False) -> dict:
    """The file checked and, where loading it could crash this process, loaded once in
    another: its target's ``load_runner`` facts (``input_shape``, ``input_dtype``,
    ``metadata``; with ``precision``, also what its content holds, read by the target's
    ``file_precision``), or ``{}`` for a file loaded safely here unless ``facts`` asks."""
    path = Path(path)
    target = target_for_file(path, action)
    check_file(path, target)
    if not target.isolated_loading:
        if not facts:
            return {}
        return _facts(path, precision)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-m", "mobattn.exporters.probe", str(path.resolve())]
            + (["--precision"] if precision else []),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            cwd=path.resolve().parent,
        )
    except subprocess.TimeoutExpired:
        raise MobattnError(f"{path}: loading it did not finish within {PROBE_TIMEOUT_S:g} s") from None
    if done.returncode < 0:
        raise MobattnError(
            f"{path} is not a valid {target.suffix} file: its runtime crashed loading it "
            f"({signal_name(-done.returncode)})"
        )
    answer = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("{")), None)
    if answer is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise MobattnError(f"{path}: loading it failed ({tail})")
    result = json.loads(answer)
    if "error" in result:
        raise MobattnError(result["error"])
    return result


def _facts(path: Path, precision: bool = False) -> dict:
    """What a probe reports of a file it loads (plain JSON, so it crosses processes)."""
    implementation = target_for_file(path).implementation()
    runner = implementation.load_runner(path)
    found = {
        "input_shape": runner.input_shape,
        "input_dtype": runner.input_dtype,
        "metadata": runner.metadata or implementation.file_metadata(path),  # a runner may not read it
    }
    if precision:
        found["precision"] = implementation.file_precision(path)
    return found


def main() -> None:
    path = Path(sys.argv[1])
    try:
        answer = _facts(path, "--precision" in sys.argv[2:])
    except MobattnError as exc:
        answer = {"error": str(exc)}
    sys.stdout.write("\n" + json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
