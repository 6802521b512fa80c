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
    """Refuse to replace anything (a dangling symlink too) without ``force``, and
    anything that is a folder the user did not make an artifact of."""
    if not (path.exists() or path.is_symlink()):
        return
    if not force:
        raise MobattnError(f"{path} exists; pass --force to replace it")
    if path.is_dir() and not path.is_symlink() and not _is_folder_artifact(path):
        raise MobattnError(f"{path} is a folder; refusing to replace it even with --force")


def _is_folder_artifact(path: Path) -> bool:
    from .formats import TARGETS

    return any(t.is_folder and path.suffix == t.suffix for t in TARGETS.values())


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (owners of staging and temporary folders)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(path: Path) -> None:
    """Remove staging folders beside ``path`` left by a run that was killed (its
    process is gone), so an interrupted export leaves nothing behind for long."""
    for folder in path.parent.glob(f".{path.name}.*.partial-*"):
        pid = folder.name.removeprefix(f".{path.name}.").split(".", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(path)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.partial-", dir=path.parent))
    except OSError as exc:
        raise MobattnError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = tmp_dir / path.name
    try:
        try:
            yield tmp
            if (path.exists() or path.is_symlink()) and (tmp.is_dir() or path.is_dir()):
                remove(path)  # os.replace cannot put a folder over a folder, or onto a link
            os.replace(tmp, path)  # replaces a symlink itself, never its target
        except OSError as exc:
            raise MobattnError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
