"""One export, start to finish: name, stage, convert, validate, record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobattn.environment import environment
from mobattn.errors import MobattnError, described

from . import files
from .formats import TARGETS, get_target
from .record import ExportRecord
from .subject import Subject


def artifact_tags(target: str, precision: str, options: dict) -> list[str]:
    """Every option that changes the artifact, as a name part: precision (when not the
    target's default), dynamic shapes, image input, compression, a non-default opset or
    deployment target. Two different artifacts never share a name."""
    from .int8_recipe import DEFAULT_RECIPE
    from .to_coreml import DEFAULT_MIN_TARGET
    from .to_onnx import DEFAULT_OPSET

    tags = [precision] if precision != TARGETS[target].default_precision else []
    if options.get("dynamic"):
        tags.append("dynamic")
    if options.get("sizes"):  # one artifact for several sizes: all of them in its name
        tags.append("sizes" + "-".join(map(str, sorted(options["sizes"]))))
    if options.get("image"):
        tags.append("image")
    if options.get("compress"):
        tags.append(options["compress"])
    if options.get("opset") not in (None, DEFAULT_OPSET):
        tags.append(f"opset{options['opset']}")
    if options.get("min_target") not in (None, DEFAULT_MIN_TARGET):
        tags.append(options["min_target"].lower())
    if options.get("layout") not in (None, "default"):
        tags.append(f"{options['layout']}")
    if options.get("int8_recipe") not in (None, DEFAULT_RECIPE):
        tags.append(options["int8_recipe"])
    if options.get("int8_target") is not None:  # mixed precision: another file than plain int8
        tags.append(f"target{options['int8_target']:g}")
    if options.get("form") not in (None, "reference"):
        tags.append(options["form"])
    if options.get("simplify") is False:
        tags.append("unsimplified")
    return tags


def artifact_path(subject: Subject, target: str, out_dir: Path, precision: str, options: dict) -> Path:
    """``{model}[-{attention}]-{size}[-{tags}]{ext}`` (see :func:`artifact_tags`); a
    dynamic model's size part is ``dynamic`` rather than its example resolution."""
    tags = artifact_tags(target, precision, options)
    stem = subject.stem("-".join(tags) or None)
    if options.get("dynamic") and subject.is_model:
        stem = stem.replace(f"-{subject.size}-dynamic", "-dynamic", 1)
    elif options.get("sizes") and subject.is_model:
        stem = stem.replace(f"-{subject.size}-sizes", "-sizes", 1)
    return out_dir / (stem + TARGETS[target].suffix)


@dataclass(frozen=True)
class ExportRequest:
    """One export as asked and checked: the target, its precision (the target's default
    when none was given) and the options it takes. Made once, by :meth:`checked`, before
    anything is built or written; every later step reads it, nothing checks it again."""

    target: str
    precision: str
    options: tuple[tuple[str, object], ...]

    @classmethod
    def checked(cls, subject: Subject, target: str, precision: str | None = None, **options) -> ExportRequest:
        """Every check of ``target``'s precision and options, so a multi-target export
        cannot stop half-way on a bad option."""
        spec = get_target(target)
        precision = precision or spec.default_precision
        spec.check_precision(precision)
        taken = _for_target(target, options)
        spec.implementation().check_options(subject, precision, **taken)
        return cls(target, precision, tuple(taken.items()))

    @property
    def kwargs(self) -> dict:
        return dict(self.options)


def warn_random_calibration(target: str) -> None:
    """A model's int8 calibrated on random inputs keeps ranges real images do not have
    (on the trained ViT-Ti: ONNX lost 3.4 points of agreement, ExecuTorch and LiteRT kept
    17%): said once, for every target, before the export."""
    from mobattn.errors import warn

    warn(
        f"{target}: int8 calibrated on random inputs: activation ranges of real images differ; "
        "give --calibration DIR (or a list of images) for a deployable model"
    )


def export(
    subject: Subject,
    target: str | ExportRequest,
    out_dir: Path,
    precision: str | None = None,
    force: bool = False,
    **options,
) -> ExportRecord:
    """Export ``subject`` as ``target`` asks (a checked :class:`ExportRequest`, or a target
    name with ``precision`` and ``options``, checked here); the record's status is ``ok``,
    ``unvalidated`` (kept, but nothing here could execute it), ``failed`` (outside
    tolerance: nothing kept) or ``error`` (the converter failed: nothing kept).
    User errors (bad options, an existing file without ``force``) raise MobattnError."""
    request = (
        target
        if isinstance(target, ExportRequest)
        else ExportRequest.checked(subject, target, precision, **options)
    )
    target, precision, options = request.target, request.precision, request.kwargs
    path = artifact_path(subject, target, Path(out_dir), precision, options)
    files.check_writable(path, force)
    subject_info = {
        "model": subject.model,
        "attention": subject.attention or subject.native,
        "size": subject.size,
        "input_shape": list(subject.input_shape),
    }
    record = ExportRecord(target, str(path), subject_info, precision, "error", environment=environment())
    if precision == "int8" and subject.is_model and not options.get("calibration"):
        warn_random_calibration(target)
    try:
        with files.staged(path, force) as tmp:
            result = TARGETS[target].implementation().export(subject, tmp, precision=precision, **options)
            agreement = result.validation
            record.validation = agreement.to_dict() if agreement else {}
            if agreement is not None and not agreement.passed:
                raise _OutsideToleranceError(agreement)
            record.size_bytes = files.size_bytes(tmp)
    except _OutsideToleranceError as exc:
        record.status = "failed"
        record.reason = refusal_reason(exc.agreement)
        return record
    except MobattnError:
        raise
    except Exception as exc:  # a converter failure is a row with its reason, not a crash
        record.reason = described(exc)
        return record
    # an artifact that could not be executed here is kept but never called validated
    unvalidated = result.details.get("unvalidated")
    record.status, record.reason = ("unvalidated", unvalidated) if unvalidated else ("ok", "")
    record.seconds = round(result.seconds, 2)
    record.op_count = result.op_count
    record.op_histogram = result.op_histogram
    record.details = result.details
    return record


def refusal_reason(a) -> str:
    """Why an export's validation refused it, in one line (the record's reason)."""
    if not np.isfinite(a.max_rel):
        return f"{a.note}; nothing written"
    if a.criterion == "top1_agreement":
        low, high = a.top1_interval
        return (
            f"top-1 agrees with torch on {a.top1_agreement:.1%} of {a.images} held-out images "
            f"(95% interval {low:.1%}-{high:.1%}, wholly under the {a.tolerance:.0%} floor, "
            f"--min-agreement); cosine {a.cosine:.4f}; nothing written"
        )
    if a.criterion == "cosine":
        return f"cosine similarity with torch {a.cosine:.4f} < {a.tolerance}; nothing written"
    bound = f"tolerance {a.tolerance:.0e}"
    return f"outputs differ from torch by {a.max_rel:.2e} relative ({bound}); nothing written"


class _OutsideToleranceError(Exception):
    def __init__(self, agreement):
        super().__init__("outside tolerance")
        self.agreement = agreement


def _for_target(target: str, options: dict) -> dict:
    """The options the user set that ``target`` takes (see formats.TARGETS)."""
    return {k: v for k, v in options.items() if v is not None and k in TARGETS[target].options}
