"""What can be measured (the table of backends, devices, precisions and profiles) and
one configuration to measure: plain data, so it crosses into the isolated worker as JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobattn.errors import MobattnError, unknown_name_error
from mobattn.exporters.formats import PRECISIONS, TARGETS

# What a row's subject is and how it was measured; with the environment, its identity.
SUBJECT_FIELDS = ("kind", "model", "attention", "resolution", "dim", "hw", "heads", "file", "batch")
SETTING_FIELDS = ("backend", "device", "threads", "precision", "profile", "pin")
# Environment fields that make two runs comparable: same machine, same libraries (the
# runtime's own only for its rows: installing ExecuTorch does not change a torch row).
# ("node_label": MOBATTN_NODE_LABEL, None unless set, so older rows keep their identity)
# ("fingerprint", "calibration_band": mobattn.machine and .calibration; None in rows written
# before them, which keep their identity and are labelled as having no fingerprint)
ENV_KEYS = ("cpu", "cores", "machine", "torch", "mobattn", "node_label", "fingerprint", "calibration_band")
# ... and for CUDA rows the GPU: two GPUs behind one CPU model never share an identity
GPU_KEYS = ("gpu", "cuda", "gpu_driver")

DEVICES = ("cpu", "cuda")
PROFILES = ("default", "mlperf", "quick", "adaptive")
MAX_TIMEOUT_S = 24 * 3600.0
# Below this an address-space limit leaves torch too little room to run at all: the failure
# comes from inside torch's own machinery, not as an honest oom, so it is refused, not tried.
MIN_MEMORY_LIMIT_MB = 128


@dataclass(frozen=True)
class Backend:
    """A runtime mobattn times, the export target it times (if any), and the
    precisions it measures on each device.

    A backend with a ``target`` times that target's file: the target's module exports
    and loads it (see exporters.formats), so such a backend is one row here. One
    without a target names its ``prepare(config, artifact) -> Prepared`` function."""

    name: str
    target: str | None  # the export target whose artifact it loads
    precisions: dict[str, tuple[str, ...]]  # device -> precisions
    description: str
    env_keys: tuple[str, ...] = ()  # library versions (environment keys) in its rows' identity
    prepare: str | None = None  # "module:function" for a backend without a target
    imports: tuple[str, ...] = ()  # the runtime's modules, imported before the load clock starts
    # how its runtime is set up for a target's file (the target's load_runner takes them,
    # refusing what it does not know); recorded in each row's details
    runtime_options: dict = field(default_factory=dict)

    def unsupported(self, device: str, precision: str) -> str | None:
        """Why this backend cannot measure ``precision`` on ``device`` (None if it can)."""
        if device not in self.precisions:
            return f"--backend {self.name} runs on {' or '.join(self.precisions)}, not {device}"
        allowed = self.precisions[device]
        if precision not in allowed:
            return f"--backend {self.name} on {device} measures {' or '.join(allowed)}, not {precision}"
        return None


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "torch",
            None,
            {"cpu": ("fp32",), "cuda": ("fp32", "fp16", "bf16")},
            "PyTorch eager",
            prepare="mobattn.bench.backends:prepare_torch",
        ),
        # torch.compile (inductor) on the GPU; compile time is in the row's details,
        # apart from the steady-state latency
        Backend(
            "torch-compile",
            None,
            {"cuda": ("fp32", "fp16", "bf16")},
            "torch.compile (inductor, default mode), no CUDA graphs",
            prepare="mobattn.bench.backends:prepare_compiled",
        ),
        # the eager module captured as written in a CUDA graph and replayed: what a deployer
        # runs where the code cannot be compiled (bench/cuda_timing.py)
        Backend(
            "torch-cudagraph",
            None,
            {"cuda": ("fp32", "fp16", "bf16")},
            "the eager module captured in a CUDA graph (torch.cuda.graph), replayed; no compiler",
            prepare="mobattn.bench.backends:prepare_cudagraph",
        ),
        Backend(
            "torch-cudagraphs",
            None,
            {"cuda": ("fp32", "fp16", "bf16")},
            "torch.compile (inductor) with CUDA graphs (mode reduce-overhead)",
            prepare="mobattn.bench.backends:prepare_compiled",
        ),
        Backend(
            "onnxruntime",
            "onnx",
            {"cpu": ("fp32", "fp16", "int8"), "cuda": ("fp32", "fp16")},
            "onnxruntime, timing mobattn's ONNX export",
            env_keys=("onnxruntime", "onnx"),
            imports=("onnxruntime",),
        ),
        Backend(
            "onnxruntime-basic",
            "onnx",
            {"cpu": ("fp32", "fp16", "int8")},
            "onnxruntime with only its basic graph optimizations (no fusions): what the fusions buy",
            env_keys=("onnxruntime", "onnx"),
            imports=("onnxruntime",),
            runtime_options={"graph_optimization": "basic"},
        ),
        Backend(
            "executorch",
            "executorch",
            {"cpu": ("fp32", "int8")},
            "ExecuTorch with XNNPACK",
            env_keys=("executorch",),
            imports=("executorch.runtime",),
        ),
        Backend(
            "litert",
            "litert",
            {"cpu": ("fp32", "int8")},
            "LiteRT (TensorFlow Lite) interpreter with XNNPACK",
            env_keys=("ai-edge-litert", "litert-torch"),
            imports=("ai_edge_litert.interpreter",),
        ),
    )
}


def _file_backends() -> dict[str, Backend]:
    """A backend for every target that can time its files here and has no row above:
    a new target's files are benchable at once, under the target's name, by its own
    runner (a row above replaces it with a better name or runtime options)."""
    timed = {b.target for b in BACKENDS.values()}
    return {
        t.name: Backend(
            t.name, t.name, {"cpu": t.precisions}, f"{t.name}'s own runner (from the target table)"
        )
        for t in TARGETS.values()
        if t.times_here and t.name not in timed
    }


BACKENDS.update(_file_backends())


def env_fingerprint(environment: Mapping[str, Any], backend: str | None = None, device: str = "cpu") -> tuple:
    keys = ENV_KEYS + (BACKENDS[backend].env_keys if backend in BACKENDS else ())
    keys += GPU_KEYS if device == "cuda" else ()
    return tuple((k, environment.get(k)) for k in keys)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def identity_of(values: Mapping[str, Any]) -> tuple:
    """The identity of a row or of a planned configuration (see :meth:`Row.identity`)."""
    subject = tuple(_hashable(values.get(k)) for k in SUBJECT_FIELDS + SETTING_FIELDS)
    environment = values.get("environment") or {}
    return subject + env_fingerprint(environment, values.get("backend"), values.get("device") or "cpu")


def swap_rule_heads(attention: str, dim: int) -> int | None:
    """The heads the swap rule gives a bare ``attention`` of width ``dim`` (the catalogue
    remembers them: planning imports no torch)."""
    from mobattn.catalogue import swap_rule_heads as remembered

    return remembered(attention, dim)


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise unknown_name_error("backend", name, list(BACKENDS))
    return BACKENDS[name]


# What a measurement may run in: the export precisions, and bf16 (torch on CUDA).
MEASURED_PRECISIONS = (*PRECISIONS, "bf16")


def check_precision(precision: str) -> str:
    if precision not in MEASURED_PRECISIONS:
        raise unknown_name_error("precision", str(precision), list(MEASURED_PRECISIONS))
    return precision


def check_timeout(value: float, option: str = "--timeout") -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MobattnError(f"{option} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise MobattnError(f"{option} must be between 0 and {MAX_TIMEOUT_S:g} seconds, got {value}")
    return float(value)


def check_profile(profile: str) -> str:
    """``default``, ``mlperf`` or ``quick``, optionally with fixed counts:
    ``quick,runs=20,warmup=3`` (see ``TimingPolicy.named``)."""
    from .timer import TimingPolicy

    if not isinstance(profile, str) or profile.split(",")[0] not in PROFILES:
        raise unknown_name_error("profile", str(profile), list(PROFILES))
    TimingPolicy.named(profile)  # the overrides parse
    return profile


def profile_with(profile: str, runs: int | None, warmup: int | None) -> str:
    """The profile name with --runs/--warmup folded in, so a row's identity says them."""
    parts = (
        [profile]
        + ([f"runs={runs}"] if runs is not None else [])
        + ([f"warmup={warmup}"] if warmup is not None else [])
    )
    return ",".join(parts)


@dataclass
class BenchConfig:
    kind: str  # model | attention | file
    backend: str = "torch"
    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    precision: str = "fp32"
    model: str | None = None
    attention: str | None = None
    resolution: list[int] | None = None  # [H, W] for models and files
    dim: int | None = None
    hw: list[int] | None = None  # token grid of a bare attention
    heads: int | None = None
    file: str | None = None
    weights: str | None = None
    profile: str = "default"
    timeout_s: float = 300.0  # the whole configuration: export, load and timing
    memory_limit_mb: int | None = None  # address-space limit applied in the worker
    matmul_peak_gflops: float | None = None  # measured once per run by the parent
    samples: bool = False  # keep every timed run in the row (samples_ms)
    op_profile: bool = False  # also profile per op (details["op_profile"]), after timing
    pin: str | None = None  # the measuring worker's cores, e.g. "0,1" (--pin); None: not pinned

    @property
    def tokens(self) -> int | None:
        return self.hw[0] * self.hw[1] if self.hw else None

    def resolved_heads(self) -> int | None:
        """A bare attention's heads: as given, or as the swap rule chooses them."""
        if self.kind != "attention" or self.heads is not None:
            return self.heads
        return swap_rule_heads(self.attention, self.dim)

    def subject_fields(self) -> dict:
        """What a results row says about its subject and setting (heads resolved, so a
        row and the configuration that made it have one identity)."""
        from mobattn.catalogue import native_attention

        return {
            "kind": self.kind,
            "model": self.model,
            "attention": self.attention or (native_attention(self.model) if self.model else None),
            "resolution": self.resolution,
            "dim": self.dim,
            "hw": self.hw,
            "heads": self.resolved_heads(),
            "tokens": self.tokens,
            "file": self.file,
            "batch": self.batch,
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "precision": self.precision,
            "profile": self.profile,
            "pin": self.pin,
        }

    def identity(self, environment: dict) -> tuple:
        """The identity its row will have when measured in ``environment``."""
        return identity_of({**self.subject_fields(), "environment": environment})

    def label(self) -> str:
        if self.kind == "model":
            subject = self.model + (f"+{self.attention}" if self.attention else "")
            size = "x".join(map(str, self.resolution or []))
        elif self.kind == "attention":
            subject, size = f"{self.attention} d{self.dim}", "x".join(map(str, self.hw or []))
        else:
            subject, size = self.file or "", "x".join(map(str, self.resolution or [])) or "file"
        precision = "" if self.precision == "fp32" else f" {self.precision}"
        return f"{subject} {size} {self.backend}/{self.device}{precision} t{self.threads}"


def parse_pin(text: str, option: str = "--pin") -> str:
    """Cores as ``0,1`` or ``0-3`` (a list of ranges), each one this process may use;
    the canonical form is the sorted list, ``0,1,2,3``."""
    import os

    cores: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
            raise MobattnError(f"{option} takes core numbers such as 0,1 or 0-3, got {text!r}")
        cores.update(range(int(low), int(high or low) + 1))
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if usable is None:
        raise MobattnError(f"{option}: this system cannot pin a process to cores")
    if not cores <= usable:
        missing = ", ".join(map(str, sorted(cores - usable)))
        raise MobattnError(f"{option}: core {missing} is not one this process may use ({sorted(usable)})")
    return ",".join(map(str, sorted(cores)))


def pinned_cores(pin: str | None) -> set[int] | None:
    return None if pin is None else {int(c) for c in pin.split(",")}
