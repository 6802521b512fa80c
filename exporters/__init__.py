"""Exporters: nn.Module -> deployable artifact (ONNX, Core ML, ExecuTorch) + validation
record. The names below are imported on first use (PEP 562): reading the table of
targets (``mobattn.exporters.formats``) imports no toolchain and not torch."""

from mobattn.lazy import lazy_getattr

# public name -> the module that defines it
_EXPORTS = {
    "TARGETS": "mobattn.exporters.formats",
    "ExportRecord": "mobattn.exporters.record",
    "Subject": "mobattn.exporters.subject",
    "artifact_path": "mobattn.exporters.export",
    "attention_subject": "mobattn.exporters.subject",
    "export": "mobattn.exporters.export",
    "model_subject": "mobattn.exporters.subject",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
