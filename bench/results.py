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

from mobattn.errors import MobattnError, warn

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


def _parse(path: Path, number: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise MobattnError(f"{path}:{number} is not a JSON row") from None
    if not isinstance(obj, dict):
        raise MobattnError(f"{path}:{number}: a row must be a JSON object, got {type(obj).__name__}")
    return obj


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    """The file opened for appending, under an exclusive lock (shards of one sweep may
    share a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _quarantine_torn_tail(path: Path, fd: int) -> None:
    """Cut a last line that has no newline (a write that was interrupted) and keep it
    in ``<file>.torn``, so the next row starts on a line of its own."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    chunk = min(size, 1 << 20)
    tail = os.pread(fd, chunk, size - chunk)
    cut = size - chunk + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    fragment = os.pread(fd, size - cut, cut)
    with open(f"{path}.torn", "ab") as f:
        f.write(fragment + b"\n")
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


def done_identities(rows: Iterable[Row]) -> set[tuple]:
    """Identities already measured (``error`` rows are retried, the rest are results)."""
    return {r.identity() for r in rows if r.status != "error"}


@contextlib.contextmanager
def sweep_lock(path: Path, shard: str) -> Iterator[None]:
    """Refuse a second identical sweep (same results file and shard) while one runs;
    other shards of the same grid may append to the same file concurrently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.{shard.replace('/', 'of')}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MobattnError(
                f"another sweep is already running shard {shard} into {path}; wait for it "
                "or give another --results file"
            ) from None
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def status_counts(rows: list[Row]) -> dict[str, int]:
    return {s: sum(r.status == s for r in rows) for s in STATUSES}
