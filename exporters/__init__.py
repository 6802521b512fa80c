"""Exporters: nn.Module -> deployable artifact (ONNX, Core ML) + validation record."""

from .export import artifact_path, export
from .formats import TARGETS
from .record import ExportRecord
from .subject import Subject, attention_subject, model_subject

__all__ = [
    "TARGETS",
    "ExportRecord",
    "Subject",
    "artifact_path",
    "attention_subject",
    "export",
    "model_subject",
]
