"""Results files: one JSON row per line, appended the moment a row finishes.

Whatever happened before (a killed sweep, a full disk), an append leaves the file
valid: a torn last line is moved to ``<file>.torn`` and the new row starts on a line of
its own; a write that fails is rolled back and reported in one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from mobattn.errors import MobattnError, first_line, warn

from .row import STATUSES, Row, latest


def read_rows(path: Path) -> list[Row]:
    """Measurement rows of a results file, each type-checked (see :meth:`Row.from_dict`)."""
    rows = []
    for number, obj in _read_objects(path):
        try:
            rows.append(Row.from_dict(obj))
        except MobattnError as exc:
            raise MobattnError(f"{path}:{number}: {exc}") from None
    return rows


def read_records(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file that holds other records (``mobattn eval``)."""
    return [obj for _, obj in _read_objects(path)]


def _read_objects(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each line. A last line cut short by an interrupted
    write is skipped with a warning; any other bad line is an error naming the line."""
    if not path.exists():
        return []
    if not path.is_file():
        raise MobattnError(f"{path} is not a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MobattnError(f"{path} is not a UTF-8 JSONL file (byte {exc.start})") from None
    except OSError as exc:
        raise MobattnError(f"cannot read {path}: {exc.strerror}") from None
    lines = text.split("\n")
    torn = lines.pop()  # the text after the last newline: empty unless a write was cut
    objects = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            objects.append((number, _parse(path, number, line)))
    if torn.strip():
        try:
            objects.append((len(lines) + 1, _parse(path, len(lines) + 1, torn)))
        except MobattnError:
            warn(f"{path}: the last line was cut short by an interrupted write; it is ignored")
    return objects


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _parse(path: Path, number: int, line: str) -> dict:
    try:
        obj = json.loads(line, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise MobattnError(f"{path}:{number} is not a JSON row") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to read
        raise MobattnError(f"{path}:{number}: {first_line(exc)}") from None
    if not isinstance(obj, dict):
        raise MobattnError(f"{path}:{number}: a row must be a JSON object, got {type(obj).__name__}")
    return obj


def make_parent(path: Path) -> None:
    """Create ``path``'s folder, or say in one line why it cannot be (a file in the way,
    no permission, a full disk)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MobattnError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    if not path.parent.is_dir():
        raise MobattnError(f"cannot create the folder of {path}: a file is in the way")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    """The file opened for appending, under an exclusive lock (shards of one sweep may
    share a file)."""
    make_parent(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _tail_start(fd: int, size: int) -> int:
    """The offset just after the file's last newline (0 if it has none), read backwards
    in 1 MiB chunks: the tail may be of any length."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 20))
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _is_complete_row(fragment: bytes) -> bool:
    try:
        return isinstance(json.loads(fragment.decode("utf-8"), parse_constant=_no_constant), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _quarantine_torn_tail(path: Path, fd: int) -> None:
    """Make the file end in a newline before the next row. A last line without one is
    either a complete row (written by another tool, or edited: it only gets its newline)
    or a write that was interrupted: then exactly the bytes after the last newline move
    to ``<file>.torn``, whatever their size. A complete row is never moved."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    cut = _tail_start(fd, size)
    fragment = os.pread(fd, size - cut, cut)
    if _is_complete_row(fragment):
        os.write(fd, b"\n")
        return
    with open(f"{path}.torn", "ab") as f:
        f.write(fragment + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.ftruncate(fd, cut)
    warn(f"{path}: moved a torn last line ({len(fragment)} bytes) to {path}.torn")


def append_row(path: Path, row: Row) -> None:
    """Append one row and flush it to disk, so an interrupted sweep keeps it."""
    _append_line(path, row.to_json())


def append_row_dict(path: Path, record: dict) -> None:
    """Append a record that is not a measurement row (``mobattn eval`` results)."""
    _append_line(path, json.dumps(record, default=str, allow_nan=False))


def _append_line(path: Path, line: str) -> None:
    data = (line + "\n").encode()
    try:
        with _locked(path) as fd:
            _quarantine_torn_tail(path, fd)
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # leave the file as it was
                raise
    except OSError as exc:
        raise MobattnError(f"cannot append to {path}: {exc.strerror or exc}") from None


def write_rows(path: Path, rows: Iterable[Row], force: bool) -> None:
    """Write a whole results file through a temporary name (see ``staged``)."""
    from mobattn.exporters.files import staged

    with staged(path, force) as tmp:
        tmp.write_text("".join(r.to_json() + "\n" for r in rows))


def merge(paths: list[Path]) -> list[Row]:
    """Rows of several files, one per identity (:func:`row.latest`)."""
    rows = []
    for path in paths:
        if not path.is_file():
            raise MobattnError(f"results file not found: {path}")
        rows += read_rows(path)
    return latest(rows)


RETRIED = ("error", "timeout")  # a rerun tries these again; oom and skipped are results


def done_identities(rows: Iterable[Row]) -> set[tuple]:
    """Identities already measured (``error`` and ``timeout`` rows are retried: a
    timeout may have come from a busy machine; ``oom`` at a fixed limit is a result)."""
    return {r.identity() for r in rows if r.status not in RETRIED}


@contextlib.contextmanager
def sweep_lock(path: Path, shard: str) -> Iterator[None]:
    """Refuse a second identical sweep (same results file and shard) while one runs;
    other shards of the same grid may append to the same file concurrently.

    The lock is keyed by the file itself (its resolved path: a symlink or another
    spelling of the path is the same lock) and only its holder removes it: a refused
    sweep leaves it alone, and a holder that finds its lock file replaced takes again."""
    real = Path(os.path.realpath(path))
    make_parent(real)
    lock = real.with_name(f".{real.name}.{shard.replace('/', 'of')}.lock")
    fd = _take_lock(lock, path, shard)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # still holding it: nobody else can hold this file
        os.close(fd)


def _take_lock(lock: Path, path: Path, shard: str) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MobattnError(f"cannot lock {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MobattnError(
                f"another sweep is already running shard {shard} into {path}; wait for it "
                "or give another --results file"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder we waited on removed that file: lock the new one


def status_counts(rows: list[Row]) -> dict[str, int]:
    return {s: sum(r.status == s for r in rows) for s in STATUSES}
