"""One export, start to finish: name, stage, convert, validate, record."""

from __future__ import annotations

from pathlib import Path

from mobattn.environment import environment
from mobattn.errors import MobattnError

from . import files
from .record import ExportRecord
from .subject import Subject

TARGETS = {"onnx": ".onnx", "coreml": ".mlpackage"}
DEFAULT_PRECISION = {"onnx": "fp32", "coreml": "fp16"}


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
    check_target(target)
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
        record.reason = (
            f"outputs differ from torch by {exc.agreement.max_rel:.2e} relative "
            f"(tolerance {exc.agreement.tolerance:.0e}); nothing written"
        )
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


class _OutsideTolerance(Exception):
    def __init__(self, agreement):
        super().__init__("outside tolerance")
        self.agreement = agreement


def _convert(subject: Subject, target: str, tmp: Path, precision: str, options: dict) -> dict:
    if target == "onnx":
        from .to_onnx import export_onnx

        allowed = {"dynamic", "simplify", "opset"}
        return export_onnx(subject, tmp, precision=precision, **_only(options, allowed, target))
    from .to_coreml import export_coreml

    allowed = {"min_target", "image", "compress"}
    return export_coreml(subject, tmp, precision=precision, **_only(options, allowed, target))


def _only(options: dict, allowed: set[str], target: str) -> dict:
    """The options that apply to ``target`` (unset ones dropped)."""
    return {k: v for k, v in options.items() if k in allowed and v is not None}
