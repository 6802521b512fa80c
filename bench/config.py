"""One benchmark configuration: what to measure, how, and where. Plain data, so it
crosses into the isolated worker process as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

BACKENDS = ("torch", "onnxruntime", "executorch")
DEVICES = ("cpu", "cuda")


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
    timeout_s: float = 300.0
    memory_limit_mb: int | None = None  # address-space limit applied in the worker
    matmul_peak_gflops: float | None = None  # measured once per run by the parent
    extra: dict = field(default_factory=dict)

    @property
    def tokens(self) -> int | None:
        return self.hw[0] * self.hw[1] if self.hw else None

    def subject_fields(self) -> dict:
        """What a results row says about its subject and setting (also the resume key)."""
        return {
            "kind": self.kind,
            "model": self.model,
            "attention": self.attention or ("eaa" if self.model else None),
            "resolution": self.resolution,
            "dim": self.dim,
            "hw": self.hw,
            "heads": self.heads,
            "tokens": self.tokens,
            "file": self.file,
            "batch": self.batch,
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "precision": self.precision,
            "profile": self.profile,
        }

    def key(self) -> str:
        return json.dumps(self.subject_fields(), sort_keys=True)

    def label(self) -> str:
        if self.kind == "model":
            subject = self.model + (f"+{self.attention}" if self.attention else "")
            size = "x".join(map(str, self.resolution or []))
        elif self.kind == "attention":
            subject, size = f"{self.attention} d{self.dim}", "x".join(map(str, self.hw or []))
        else:
            subject, size = self.file or "", "x".join(map(str, self.resolution or [])) or "file"
        return f"{subject} {size} {self.backend}/{self.device} t{self.threads}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        return cls(**json.loads(text))
