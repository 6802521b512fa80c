"""One export, start to finish: name, stage, convert, validate, record."""

from __future__ import annotations

from pathlib import Path

from mobattn.environment import environment
from mobattn.errors import MobattnError

from . import files
from .record import ExportRecord
from .subject import Subject

TARGETS = {"onnx": ".onnx", "coreml": ".mlpackage", "executorch": ".pte"}
DEFAULT_PRECISION = {"onnx": "fp32", "coreml": "fp16", "executorch": "fp32"}


def artifact_path(subject: Subject, target: str, out_dir: Path, precision: str, compress: str | None) -> Path:
    """``{model}[-{attention}]-{resolution}[-{precision}]{ext}``; the precision part
    appears when it is not the target's default, then any compression."""
    tags = [precision] if precision != DEFAULT_PRECISION[target] else []
    if compress:
        tags.append(compress)
    return out_dir / (subject.stem("-".join(tags) or None) + TARGETS[target])


def check_target(target: str) -> None:
    if target not in TARGETS:
        from mobattn.errors import unknown_name_error

        raise unknown_name_error("export target", target, sorted(TARGETS))


def _module(target: str):
    """The exporter module of ``target`` (imported on demand: each pulls its toolchain)."""
    from importlib import import_module

    return import_module(f".to_{target}", __package__)


def check_request(subject: Subject, target: str, precision: str | None, **options) -> None:
    """Every option check of ``target``, before anything is built or written, so a
    multi-target export cannot stop half-way on a bad option."""
    check_target(target)
    _module(target).check_options(subject, precision or DEFAULT_PRECISION[target], **_unset_dropped(options))


def export(
    subject: Subject,
    target: str,
    out_dir: Path,
    precision: str | None = None,
    force: bool = False,
    **options,
) -> ExportRecord:
    """Export ``subject`` to ``target``; the record's status is ``ok``, ``failed``
    (outside tolerance: nothing kept) or ``error`` (the converter failed: nothing kept).
    User errors (bad options, an existing file without ``force``) raise MobattnError."""
    check_request(subject, target, precision, **options)
    precision = precision or DEFAULT_PRECISION[target]
    path = artifact_path(subject, target, Path(out_dir), precision, options.get("compress"))
    files.check_writable(path, force)
    subject_info = {
        "model": subject.model,
        "attention": subject.attention or ("eaa" if subject.model else None),
        "size": subject.size,
        "input_shape": list(subject.input_shape),
    }
    record = ExportRecord(target, str(path), subject_info, precision, "error", environment=environment())
    try:
        with files.staged(path, force) as tmp:
            facts = _convert(subject, target, tmp, precision, options)
            agreement = facts.pop("validation")
            record.validation = agreement.to_dict() if agreement else {}
            if agreement is not None and not agreement.passed:
                raise _OutsideTolerance(agreement)
            record.size_bytes = files.size_bytes(tmp)
    except _OutsideTolerance as exc:
        record.status = "failed"
        record.reason = _tolerance_message(exc.agreement)
        return record
    except MobattnError:
        raise
    except Exception as exc:  # a converter failure is a row with its reason, not a crash
        record.reason = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        return record
    record.status = "ok"
    record.seconds = round(facts["seconds"], 2)
    record.op_count = facts["op_count"]
    record.op_histogram = facts["op_histogram"]
    record.details = facts["details"]
    return record


def _tolerance_message(a) -> str:
    if a.criterion == "cosine":
        return f"cosine similarity with torch {a.cosine:.4f} < {a.tolerance}; nothing written"
    bound = f"tolerance {a.tolerance:.0e}"
    return f"outputs differ from torch by {a.max_rel:.2e} relative ({bound}); nothing written"


class _OutsideTolerance(Exception):
    def __init__(self, agreement):
        super().__init__("outside tolerance")
        self.agreement = agreement


def _convert(subject: Subject, target: str, tmp: Path, precision: str, options: dict) -> dict:
    options = _unset_dropped(options)
    if target == "onnx":
        keys = {"dynamic", "simplify", "opset"}
        return _module(target).export_onnx(subject, tmp, precision=precision, **_only(options, keys))
    if target == "executorch":
        return _module(target).export_executorch(
            subject, tmp, precision=precision, **_only(options, {"calibration"})
        )
    keys = {"min_target", "image", "compress"}
    return _module(target).export_coreml(subject, tmp, precision=precision, **_only(options, keys))


def _unset_dropped(options: dict) -> dict:
    return {k: v for k, v in options.items() if v is not None}


def _only(options: dict, keys: set[str]) -> dict:
    """The options that apply to one target."""
    return {k: v for k, v in options.items() if k in keys}
