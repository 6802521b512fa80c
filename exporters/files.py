"""Writing artifacts safely: never over an existing file without ``force``, always
through a temporary name renamed into place, so nothing half-written survives."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
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


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2  # renameat2 flags (Linux 3.15+)


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux's renameat2; False where the system or filesystem does not offer it."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    if libc.renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def rename_noreplace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` only if nothing is there at that moment (FileExistsError
    otherwise): "never overwrite without --force" holds at the rename, not only before."""
    if _renameat2(src, dst, RENAME_NOREPLACE):
        return
    if dst.exists() or dst.is_symlink():  # no atomic primitive here: the best check left
        raise FileExistsError(errno.EEXIST, "File exists", str(dst))
    os.rename(src, dst)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (both must exist); False where it cannot be done."""
    return _renameat2(a, b, RENAME_EXCHANGE)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def staging_folder(path: Path) -> Path:
    """A new hidden folder beside ``path``, named after it and this process (so a later
    write removes it if this run is killed: :func:`clean_stale_staging`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(path)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.partial-", dir=path.parent))
        folder.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would become the published folder's mode
        return folder
    except OSError as exc:
        raise MobattnError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def staged(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the
    block succeeds (files and directories such as .mlpackage alike)."""
    check_writable(path, force)
    tmp_dir = staging_folder(path)
    tmp = tmp_dir / path.name
    try:
        try:
            yield tmp
            publish(tmp, path, force)
        except FileExistsError:
            raise MobattnError(f"{path} appeared while this ran; pass --force to replace it") from None
        except OSError as exc:
            raise MobattnError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def publish(tmp: Path, path: Path, force: bool) -> None:
    """Put the finished ``tmp`` at ``path``: without ``force`` only if nothing is there
    now; with it, replacing a file or symlink (never following it) or a folder artifact."""
    if not force:
        rename_noreplace(tmp, path)
        return
    if path.is_dir() and not path.is_symlink() and tmp.is_dir() and exchange(tmp, path):
        remove(tmp)  # the old folder, swapped out in one step
        return
    if (path.exists() or path.is_symlink()) and (tmp.is_dir() or path.is_dir()):
        remove(path)  # os.replace cannot put a folder over a folder, or onto a link
    os.replace(tmp, path)  # replaces a symlink itself, never its target


def write_folder(folder: Path, files: dict[str, bytes], force: bool) -> None:
    """Write ``files`` (name -> content) into ``folder`` all at once: they are written
    into a staging folder beside it (holding links to whatever else ``folder`` holds) that
    then takes its place in one atomic exchange, so a reader, or a run killed at any
    moment, sees the old set or the new one, never a mix. Without ``force`` an existing
    file of that name is refused, also one that appears while this runs."""
    for name in files:
        check_writable(folder / name, force)
    staging = staging_folder(folder)
    try:
        kept = _link_others(folder, staging, set(files))
        for name, content in files.items():
            (staging / name).write_bytes(content)
        if not folder.is_dir():
            rename_noreplace(staging, folder)
            return
        _swap(staging, folder)
        _return_newcomers(staging, folder, kept, set(files), force)
    except FileExistsError as exc:
        raise MobattnError(f"{exc.filename} appeared while this ran; pass --force to replace it") from None
    except OSError as exc:
        raise MobattnError(f"cannot write {folder}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _link_others(folder: Path, staging: Path, names: set[str]) -> set[str]:
    """Hard-link (or copy) every entry of ``folder`` that is not about to be written
    into ``staging``; returns their names."""
    if not folder.is_dir():
        return set()
    kept = set()
    for entry in folder.iterdir():
        if entry.name in names:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, staging / entry.name, symlinks=True, copy_function=link_or_copy)
        else:
            link_or_copy(entry, staging / entry.name)
        kept.add(entry.name)
    return kept


def link_or_copy(src, dst) -> None:
    """A hard link where the filesystem allows (no bytes copied), else a copy; a symlink
    stays a symlink."""
    if Path(src).is_symlink():
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap(a: Path, b: Path) -> None:
    """Exchange two folders: atomically where the system can, else by three renames."""
    if not exchange(a, b):
        aside = a.with_name(a.name + "-swap")
        os.rename(b, aside)
        os.rename(a, b)
        os.rename(aside, a)


def _return_newcomers(old: Path, folder: Path, kept: set[str], names: set[str], force: bool) -> None:
    """After the swap, ``old`` holds the folder as it was at that moment: entries that
    appeared there while the files were written move back; one with an output's name
    (possible only without ``force``) undoes the swap and is refused."""
    newcomers = [e for e in old.iterdir() if e.name not in kept and not (force and e.name in names)]
    clash = [e for e in newcomers if e.name in names]
    if clash:
        _swap(old, folder)
        raise FileExistsError(errno.EEXIST, "File exists", str(folder / clash[0].name))
    for entry in newcomers:
        os.rename(entry, folder / entry.name)


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
