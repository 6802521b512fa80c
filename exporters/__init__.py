"""Exporters: nn.Module -> deployable artifact (ONNX, Core ML, ExecuTorch) + validation
record. The names below are imported on first use (PEP 562): reading the table of
targets (``mobattn.exporters.formats``) imports no toolchain and not torch."""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mobattn.exporters' has no attribute {name!r}")
