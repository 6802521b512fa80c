"""Writing artifacts safely: never over an existing file without ``force``, always
through a temporary name renamed into place, so nothing half-written survives."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mobattn.errors import MobattnError


def check_writable(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise MobattnError(f"{path} exists; pass --force to replace it")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def staged(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the
    block succeeds (files and directories such as .mlpackage alike)."""
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if path.exists():
            remove(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
