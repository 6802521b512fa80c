"""The plain record of one export."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ExportRecord:
    target: str  # onnx | coreml
    path: str
    subject: dict  # model / attention / size / input shape
    precision: str
    status: str  # ok | unvalidated (kept, not executed) | failed (validation) | error
    seconds: float = 0.0
    size_bytes: int = 0
    op_count: int = 0
    op_histogram: dict[str, int] = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
