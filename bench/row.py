"""A results row: one measurement of one configuration, the only currency between the
runner, results files, sweeps, merge, tables and reports.

:meth:`Row.identity` is the one notion of "the same measurement": everything that
changes the numbers (subject, backend, device, threads, precision, batch, profile and
the machine with its library versions). Resume, merge and tables all use it, and
:func:`latest` is the one rule for which row survives: the newest, except that an ``ok``
row is never replaced by a failed one.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mobattn.errors import MobattnError
from mobattn.parsing import check_name

from .config import (  # noqa: F401  (the identity's fields, re-exported for readers of rows)
    ENV_KEYS,
    GPU_KEYS,
    SETTING_FIELDS,
    SUBJECT_FIELDS,
    env_fingerprint,
    identity_of,
    swap_rule_heads,
)

STATUSES = ("ok", "skipped", "oom", "timeout", "error")
FAILED = ("oom", "timeout", "error")


# Fields renamed since version 0.1 (the figures were always MiB): old files still read.
LEGACY_NAMES = {
    "peak_rss_mb": "peak_rss_mib",
    "baseline_rss_mb": "baseline_rss_mib",
    "cuda_max_allocated_mb": "cuda_max_allocated_mib",
    "live_tensor_peak_mb": "live_tensor_peak_mib",
}


@dataclass
class Row:
    # subject
    kind: str  # model | attention | file
    model: str | None = None
    attention: str | None = None
    resolution: list[int] | None = None  # [H, W] of a model or file input
    dim: int | None = None
    hw: list[int] | None = None  # token grid of a bare attention
    heads: int | None = None
    tokens: int | None = None
    file: str | None = None
    batch: int = 1
    # setting
    backend: str = "torch"
    device: str = "cpu"
    threads: int = 1
    precision: str = "fp32"
    profile: str = "default"
    pin: str | None = None  # the cores the measuring worker was pinned to (--pin), e.g. "0,1"
    # outcome
    status: str = "error"
    reason: str = ""
    pid: int | None = None
    timestamp: str = ""
    environment: dict = field(default_factory=dict)
    # timing (milliseconds), from a Measurement
    median_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    iqr_ms: float | None = None
    cv: float | None = None
    noisy: bool | None = None  # IQR above 10% of the median, or other_cpu_cores above bench.quiet's limit
    other_cpu_cores: float | None = None  # cores other processes kept busy while this row was timed
    iterations: int | None = None
    warmup_runs: int | None = None
    throughput_fps: float | None = None  # batch / median latency
    # memory (MiB = 2**20 bytes)
    peak_rss_mib: float | None = None
    baseline_rss_mib: float | None = None
    cuda_max_allocated_mib: float | None = None
    # CUDA rows: median_ms is the wall single-stream latency; this is the GPU's own time per
    # call (CUDA events), with what the events were around (bench/cuda_timing.py)
    gpu_median_ms: float | None = None
    gpu_time_method: str | None = None
    live_tensor_peak_mib: float | None = None
    artifact_bytes: int | None = None
    # compute
    params: int | None = None
    macs: int | None = None
    param_bytes: int | None = None
    gflops_per_s: float | None = None
    matmul_peak_gflops: float | None = None
    fraction_of_peak: float | None = None
    # flat copies of the sizes, for data frames: token grid and input size
    grid_h: int | None = None
    grid_w: int | None = None
    height: int | None = None
    width: int | None = None
    samples_ms: list[float] | None = None  # every timed run, with --samples
    # --repeat N: each repeat's median, from separate workers; run_to_run derived from them
    repeat_medians_ms: list[float] | None = None
    run_to_run: float | None = None  # (max - min) / median of repeat_medians_ms
    # cold start and where the configuration's wall time went
    load_ms: float | None = None  # session creation / program load / module build
    first_run_ms: float | None = None  # the first inference after loading, before warm-up
    phases_s: dict | None = None  # worker start, export, validation, load, warm-up, timed, ...
    artifact_cached: bool | None = None  # the timed artifact came from the artifact cache
    # provenance
    details: dict = field(default_factory=dict)
    validation: dict | None = None  # the timed artifact's agreement with torch
    traceback: str | None = None

    # ----- identity -------------------------------------------------------------------

    def identity(self) -> tuple:
        """Subject, setting and environment: two rows with equal identities measured the
        same thing on the same machine."""
        return identity_of(asdict(self))

    @property
    def machine(self) -> str:
        """The machine the row was measured on, as tables, plots and fits name it: its CPU,
        node label and machine tag (:func:`machine_tag`). Rows of different machines never
        share a table cell, a plot panel or a fit."""
        return machine_name(self.environment)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def subject_label(self) -> str:
        if self.kind == "attention":
            return f"{self.attention} d{self.dim}"
        if self.kind == "model":
            return f"{self.model}" + ("" if self.attention == _native(self.model) else f"+{self.attention}")
        return self.file or ""

    # ----- (de)serialisation ----------------------------------------------------------

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> Row:
        """A row from a results file's JSON object, every field type-checked (a wrong
        type is a :class:`MobattnError`, not a traceback later)."""
        if not isinstance(data, dict):
            raise MobattnError(f"a row must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        data = {LEGACY_NAMES.get(k, k): v for k, v in data.items()}
        values = {}
        for name, value in data.items():
            if name not in known:
                continue  # fields of other mobattn versions are ignored
            _check_type(name, value, _FIELD_TYPES[name])
            values[name] = value
        if "kind" not in values or values["kind"] not in ("model", "attention", "file"):
            raise MobattnError("a row needs 'kind': model, attention or file")
        if values.get("status", "error") not in STATUSES:
            raise MobattnError(f"unknown status {values.get('status')!r} (valid: {', '.join(STATUSES)})")
        _check_ranges(values)
        row = cls(**values)
        row.noisy = derived_noisy(row)  # from the row's numbers, never its word
        row.run_to_run = run_to_run_of(row.repeat_medians_ms)
        if row.kind == "attention" and row.heads is None and row.attention and row.dim:
            row.heads = _swap_rule_heads(row.attention, row.dim)  # rows written before heads were recorded
        return row


def derived_noisy(row: Row) -> bool | None:
    """Whether a row's figure is noisy, from its numbers alone: an IQR above
    NOISY_IQR_FRACTION of the median (of its samples when it kept them), or other
    processes keeping more than QUIET_CORES busy while it was timed. None without a
    median (a failed row)."""
    from .measurement import NOISY_IQR_FRACTION
    from .quiet import QUIET_CORES

    if row.median_ms is None:
        return None
    median, iqr = row.median_ms, row.iqr_ms
    if row.samples_ms:
        q1, median, q3 = _quantiles(row.samples_ms)
        iqr = q3 - q1
    spread = iqr is not None and iqr > NOISY_IQR_FRACTION * median
    return bool(spread or (row.other_cpu_cores or 0.0) > QUIET_CORES)


def run_to_run_of(medians: list[float] | None) -> float | None:
    """The spread of whole repeats of one configuration: (max - min) / median of their
    medians (None with fewer than two) -- the figure that says whether a 5% difference
    between two rows is real."""
    if not medians or len(medians) < 2:
        return None
    return (max(medians) - min(medians)) / statistics.median(medians)


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    """The 25th, 50th and 75th percentiles (numpy's linear rule, without numpy)."""
    ordered = sorted(values)

    def at(q: float) -> float:
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return at(0.25), at(0.5), at(0.75)


def machine_tag(environment: Mapping[str, Any]) -> str | None:
    """Eight hex digits naming a machine in a given state: its fingerprint and its
    calibration band (None for a row written before fingerprints)."""
    if not environment.get("fingerprint"):
        return None
    text = f"{environment['fingerprint']}|{environment.get('calibration_band')}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def machine_name(environment: Mapping[str, Any]) -> str:
    """``CPU [label] #tag``; ``CPU [label] (no fingerprint)`` for rows written before
    fingerprints, which cannot tell two hosts of one CPU label apart."""
    cpu = str(environment.get("cpu") or "unknown")
    label = environment.get("node_label")
    name = f"{cpu} [{label}]" if label else cpu
    tag = machine_tag(environment)
    return f"{name} #{tag}" if tag else f"{name} (no fingerprint)"


def _native(model: str | None) -> str:
    """The model's own token mixer; ``eaa`` for a model this version does not know."""
    from mobattn.catalogue import native_attention

    try:
        return native_attention(model or "")
    except MobattnError:
        return "eaa"


def latest(rows: Iterable[Row]) -> list[Row]:
    """One row per identity: the newest (by timestamp, then by order), except that an
    ``ok`` row is never replaced by a failed or skipped one. Order of first appearance."""
    chosen: dict[tuple, Row] = {}
    for row in rows:
        key = row.identity()
        old = chosen.get(key)
        if old is None or (old.ok <= row.ok and (row.ok > old.ok or row.timestamp >= old.timestamp)):
            chosen[key] = row
    return list(chosen.values())


# ----- type checks for rows read from files -----------------------------------------------


def _kind_of(annotation: Any) -> str:
    """A field's annotation as the checker's kind: ``int``, ``float?`` (optional),
    ``ints`` (a list of two integers), ``floats`` (a list of numbers)."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    if typing.get_origin(base) is list:
        base = {int: "ints", float: "floats"}[typing.get_args(base)[0]]
    else:
        base = {str: "str", int: "int", float: "float", bool: "bool", dict: "dict"}[base]
    return base + ("?" if optional else "")


# field -> kind, derived from the dataclass's own annotations (one table, not two)
_FIELD_TYPES = {name: _kind_of(hint) for name, hint in typing.get_type_hints(Row).items()}


# What a number may be, beyond its type: a row that says otherwise was not measured.
POSITIVE = ("batch", "threads", "dim", "heads", "tokens", "iterations", "median_ms", "mean_ms", "min_ms")
POSITIVE += ("max_ms", "p90_ms", "p99_ms", "throughput_fps", "grid_h", "grid_w", "height", "width")
NON_NEGATIVE = ("std_ms", "iqr_ms", "cv", "warmup_runs", "artifact_bytes", "params", "macs", "param_bytes")
# (peak_rss_mib is a difference of two kernel readings: a few hundred KiB below zero happen)
NON_NEGATIVE += ("load_ms", "first_run_ms", "other_cpu_cores", "baseline_rss_mib")
NON_NEGATIVE += ("cuda_max_allocated_mib", "live_tensor_peak_mib", "gflops_per_s", "matmul_peak_gflops")
NON_NEGATIVE += ("fraction_of_peak", "gpu_median_ms")
MAX_INT = 2**63 - 1


def _check_ranges(values: dict) -> None:
    for name, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise MobattnError(f"field '{name}' is out of range ({len(str(value))} digits)")
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if name in POSITIVE and value <= 0:
            raise MobattnError(f"field '{name}' must be positive, got {value!r}")
        if name in NON_NEGATIVE and value < 0:
            raise MobattnError(f"field '{name}' must not be negative, got {value!r}")
    for name in ("resolution", "hw"):
        if values.get(name) is not None and min(values[name]) <= 0:
            raise MobattnError(f"field '{name}' must hold positive sizes, got {values[name]!r}")
    for name in ("samples_ms", "repeat_medians_ms"):
        if any(not math.isfinite(v) or v <= 0 for v in values.get(name) or []):
            raise MobattnError(f"field '{name}' must hold positive finite milliseconds")
    for name in ("details", "validation", "environment", "phases_s"):
        if values.get(name) is not None and not _finite_everywhere(values[name]):
            raise MobattnError(f"field '{name}' holds a NaN or infinite number")
    for phase, seconds in (values.get("phases_s") or {}).items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise MobattnError(f"field 'phases_s' must hold non-negative seconds, got {phase!r}: {seconds!r}")
    _check_environment(values.get("environment") or {})


# What a row's environment may hold: a row that says otherwise was not measured by mobattn.
ENV_STRINGS = ("cpu", "machine", "os", "python", "mobattn", "gpu", "cuda", "gpu_driver")


def _check_environment(env: dict) -> None:
    """The machine facts a row's identity and kind are built from: a core count is a
    positive integer, a memory limit a non-negative number, a name a short line."""
    cores = env.get("cores")
    if cores is not None and (isinstance(cores, bool) or not isinstance(cores, int) or cores <= 0):
        raise MobattnError(f"field 'environment.cores' must be a positive integer, got {cores!r}")
    limit = env.get("memory_limit_mib")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0):
        raise MobattnError(f"field 'environment.memory_limit_mib' must be a number >= 0, got {limit!r}")
    for key in ENV_STRINGS:
        if env.get(key) is not None and not isinstance(env[key], str):
            raise MobattnError(f"field 'environment.{key}' must be a string, got {env[key]!r}")
    if env.get("node_label") is not None:
        try:
            check_name(env["node_label"], "environment.node_label")
        except MobattnError as exc:
            raise MobattnError(f"field {exc}") from None


def _finite_everywhere(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_everywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_everywhere(v) for v in value)
    return True


def _check_type(name: str, value: Any, kind: str) -> None:
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None and optional:
        return
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        "dict": isinstance(value, dict),
        "floats": isinstance(value, list)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value),
        "ints": isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }[base]
    if not ok:
        expected = {"ints": "a list of two integers"}.get(base, base)
        raise MobattnError(
            f"field '{name}' must be {expected}{' or null' if optional else ''}, got {value!r}"
        )


def _swap_rule_heads(attention: str, dim: int) -> int | None:
    try:
        return swap_rule_heads(attention, dim)
    except MobattnError:  # an attention this version does not know: leave it unresolved
        return None
