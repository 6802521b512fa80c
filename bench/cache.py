"""The artifact cache: each distinct export stored once, with its validation record, and
reused by later configurations and later sweeps (threads 1 and 2 time one file; a sweep
resumed after an interruption exports nothing it exported before).

An entry is addressed by everything that changes the file (:func:`key_fields`): the
subject, the weights' hash, the target (its deployable form follows from the subject and
mobattn's code), the precision, the versions of the libraries that write it, and
mobattn's version *and* the hash of its source, so an edited exporter never reuses an
old file. The form, layout and calibration are fixed by those: benchmark exports
calibrate on seeded inputs and take no options.

Where: ``$MOBATTN_CACHE``, else ``$XDG_CACHE_HOME/mobattn``, else ``~/.cache/mobattn``;
entries under ``artifacts/<key>/`` (the file and ``entry.json``). Bounded by
``$MOBATTN_CACHE_MAX_MB`` (default 4096): the least recently used entries go first.

Safety: an entry appears by one rename of a complete staging folder (a reader never
sees half of one); writers (store, evict, clear) hold ``.lock``; a reader checks the
file against the sha256 in ``entry.json`` and removes a damaged entry (a torn
``entry.json`` too), which is then exported again. The hash only catches damage: whoever
can write an entry can rewrite both, so a cache folder another user can write is
refused, and a cached file is run against its subject in the row that times it
(:func:`mobattn.bench.backends.check_cached`) before the row calls it validated.

A row's artifact is hard-linked (or copied) out of the cache into the row's private
run folder, so an eviction by a concurrent sweep cannot pull it away.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import util
from pathlib import Path

from mobattn.environment import package_version
from mobattn.errors import MobattnError
from mobattn.exporters.files import link_or_copy
from mobattn.settings import cache_max_mb, cache_root  # noqa: F401  (cache_root: re-exported)

ENTRY = "entry.json"
# The libraries whose versions change what an exporter writes
KEY_PACKAGES = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "executorch", "torchao", "numpy")


def max_bytes() -> int:
    """``$MOBATTN_CACHE_MAX_MB`` in bytes (checked by :mod:`mobattn.settings`)."""
    return cache_max_mb() * 2**20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def source_digest() -> str:
    """The hash of mobattn's installed source (every ``.py`` file of the package and its
    sub-packages): a changed exporter, deploy twin or model never reuses an entry. Only
    package folders count (an ``__init__.py`` beside the file): the scripts beside a
    checkout's ``bench/`` are not part of what exports."""
    digest = hashlib.sha256()
    for f in source_files():
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def source_files() -> list[Path]:
    """The modules of mobattn's packages, wherever they are installed."""
    folders = set()
    for package in ("mobattn", "mobattn.exporters", "mobattn.bench"):
        spec = util.find_spec(package)
        folders.update(Path(p).resolve() for p in (spec.submodule_search_locations or []))
    found = {f.resolve() for folder in folders for f in folder.rglob("*.py")}
    return sorted(f for f in found if (f.parent / "__init__.py").is_file())


@functools.cache
def _weights_sha256(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(Path(path))


def key_fields(config) -> dict:
    """Everything that changes the file a benchmark configuration exports."""
    from mobattn import __version__

    from .backend_checks import target_of

    weights = None
    if config.weights:
        info = Path(config.weights).stat()
        weights = _weights_sha256(str(config.weights), info.st_mtime_ns, info.st_size)
    how = ("backend", "threads", "profile", "pin")  # how it is timed, not what is exported
    subject = {k: v for k, v in config.subject_fields().items() if k not in how}
    return {
        "subject": subject,
        "target": target_of(config).name,
        "precision": config.precision,
        "weights_sha256": weights,
        "libraries": {name: package_version(name) for name in KEY_PACKAGES},
        "mobattn": __version__,
        "source_sha256": source_digest(),
    }


def cache_key(config) -> str:
    text = json.dumps(key_fields(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CacheInfo:
    location: str
    entries: int
    bytes: int
    max_bytes: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ArtifactCache:
    """Lookup and store of exported artifacts (plain dicts: an ``Artifact`` record's
    fields), safe for several sweeps at once."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_root()
        self.entries = self.root / "artifacts"

    def check_usable(self) -> None:
        """A cache folder that cannot be made or written, or that another user can write
        (who could then swap an entry's file and its recorded hash), is one line before
        anything is measured (not an error in the middle of a sweep)."""
        max_bytes()
        try:
            self.entries.mkdir(parents=True, exist_ok=True)
            usable = os.access(self.entries, os.W_OK | os.X_OK)
            why = "not writable"
            for folder in (self.root, self.entries):
                if usable and not _private(folder):
                    usable, why = False, f"{folder} can be written by another user"
        except OSError as exc:
            usable, why = False, exc.strerror or str(exc)
        if not usable:
            raise MobattnError(
                f"cannot use the artifact cache at {self.root}: {why} "
                "(set MOBATTN_CACHE to a folder of your own, or pass --no-cache)"
            )

    # ----- readers ------------------------------------------------------------------------
    def lookup(self, key: str, folder: Path) -> dict | None:
        """The cached artifact of ``key``, linked into ``folder`` (None: not cached, or
        its file no longer matches its hash, in which case the entry is removed)."""
        entry = self.entries / key
        if not entry.exists():
            return None
        try:
            record = json.loads((entry / ENTRY).read_text())
            if Path(record["file"]).name != record["file"]:
                raise ValueError("an entry's file is a name inside it")
            source = entry / record["file"]
            if not all(_private(p) for p in (entry, entry / ENTRY, source)):
                return None  # another user's entry: never timed as ours, never removed by us
            target = folder / record["file"]
            link_or_copy(source, target)
        except (OSError, ValueError, KeyError, TypeError):
            self._remove(entry)  # a torn or damaged entry is exported again and replaced
            return None
        if file_sha256(target) != record.get("sha256"):
            target.unlink(missing_ok=True)
            self._remove(entry)
            return None
        with contextlib.suppress(OSError):
            os.utime(entry / ENTRY)  # least recently used goes first
        return {**record["artifact"], "path": str(target), "sha256": record["sha256"], "cached": True}

    def info(self) -> CacheInfo:
        entries = list(self._entries())
        size = sum(_size(e) for e in entries)
        return CacheInfo(str(self.root), len(entries), size, max_bytes())

    # ----- writers ------------------------------------------------------------------------
    def store(self, key: str, artifact: dict, fields: dict) -> dict:
        """Keep ``artifact`` (a file) under ``key``; the artifact, with its hash, back.
        A folder artifact (a Core ML package) is not cached."""
        source = Path(artifact["path"])
        if not source.is_file():
            return artifact
        sha = file_sha256(source)
        entry = self.entries / key
        if entry.exists():
            return {**artifact, "sha256": sha}
        self.entries.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.entries))
        try:
            link_or_copy(source, staging / source.name)
            record = {
                "file": source.name,
                "sha256": sha,
                "bytes": source.stat().st_size,
                "artifact": {k: v for k, v in artifact.items() if k not in ("path", "sha256", "cached")},
                "key": fields,
                "created": time.time(),
            }
            (staging / ENTRY).write_text(json.dumps(record, indent=1, default=str))
            with self._lock():
                with contextlib.suppress(OSError):  # a concurrent sweep stored it first
                    os.rename(staging, entry)
                self._evict()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {**artifact, "sha256": sha}

    def clear(self) -> int:
        """Remove every entry; how many there were."""
        with self._lock():
            entries = list(self._entries())
            for entry in entries:
                shutil.rmtree(entry, ignore_errors=True)
            for staging in self.entries.glob(".staging-*") if self.entries.is_dir() else ():
                shutil.rmtree(staging, ignore_errors=True)
        return len(entries)

    # ----- inside -------------------------------------------------------------------------
    def _entries(self) -> Iterator[Path]:
        if not self.entries.is_dir():
            return iter(())
        return (e for e in self.entries.iterdir() if not e.name.startswith(".") and e.is_dir())

    def _evict(self) -> None:
        """Least recently used first, until the cache fits its bound (lock held)."""
        entries = sorted(self._entries(), key=_last_used)
        sizes = {e: _size(e) for e in entries}
        total, limit = sum(sizes.values()), max_bytes()
        for entry in entries:
            if total <= limit:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= sizes[entry]

    def remove(self, key: str) -> None:
        """Drop ``key``'s entry (its file failed the check against its subject)."""
        self._remove(self.entries / key)

    def _remove(self, entry: Path) -> None:
        with self._lock():
            shutil.rmtree(entry, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            why = exc.strerror or exc
            raise MobattnError(f"cannot use the artifact cache at {self.root}: {why}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _private(path: Path) -> bool:
    """Owned by this user, not a link, and writable by no other user."""
    info = path.lstat()
    return not stat.S_ISLNK(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def _last_used(entry: Path) -> float:
    try:
        return (entry / ENTRY).stat().st_mtime
    except OSError:
        return 0.0


def _size(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
