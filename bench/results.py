"""Results files: one JSON row per line, appended the moment a row finishes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from mobattn.errors import MobattnError

# Environment fields that make two runs comparable: same machine, same libraries.
ENV_KEYS = ("cpu", "cores", "machine", "torch", "onnxruntime", "onnx", "mobattn")


def env_fingerprint(environment: dict) -> str:
    return json.dumps({k: environment.get(k) for k in ENV_KEYS}, sort_keys=True)


def row_key(row: dict) -> str:
    """Subject and setting of a row (the same fields as BenchConfig.subject_fields)."""
    from .config import BenchConfig

    fields = BenchConfig(kind="model").subject_fields().keys()
    return json.dumps({k: row.get(k) for k in fields}, sort_keys=True)


def read_rows(path: Path) -> list[dict]:
    """Rows of a results file; a last line cut short by an interrupted write is skipped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise MobattnError(f"{path}:{number} is not a JSON row") from None
    return rows


def append_row(path: Path, row: dict) -> None:
    """Append one row and flush it to disk, so an interrupted sweep keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def done_keys(rows: Iterable[dict], environment: dict) -> set[str]:
    """Keys of rows already measured in this environment (``error`` rows are retried)."""
    fingerprint = env_fingerprint(environment)
    return {
        row_key(r)
        for r in rows
        if r.get("status") != "error" and env_fingerprint(r.get("environment", {})) == fingerprint
    }


def merge(paths: list[Path]) -> list[dict]:
    """Rows of several files, the last row winning for the same key and environment."""
    merged: dict[tuple[str, str], dict] = {}
    for path in paths:
        if not path.exists():
            raise MobattnError(f"results file not found: {path}")
        for row in read_rows(path):
            merged[(row_key(row), env_fingerprint(row.get("environment", {})))] = row
    return list(merged.values())


STATUSES = ("ok", "oom", "timeout", "error")


def status_counts(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r.get("status") == s for r in rows) for s in STATUSES}
