"""Validate an existing artifact (``.onnx``, ``.mlpackage``, ``.pte``) against the torch
module it claims to be: ``mobattn validate``.

The torch side is rebuilt from the same description as at export (model or bare
attention, resolution, ``--weights``; random weights come from a fixed seed, so an
export of random weights is rebuilt exactly). The criterion is the one the export used,
read from the artifact's metadata where it has some (precision, compression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError, first_line

from .subject import Subject
from .validate import Agreement

SUFFIXES = (".onnx", ".mlpackage", ".pte")


def validate_artifact(
    path: str | Path, subject: Subject, precision: str | None = None, images: list[np.ndarray] | None = None
) -> tuple[Agreement, dict]:
    """The artifact's agreement with ``subject`` on random inputs (plus ``images`` for
    models), and what was read from the artifact (its criterion, input shape, metadata)."""
    path = Path(path)
    if path.suffix not in SUFFIXES or not path.exists():
        if not path.exists():
            raise MobattnError(f"artifact not found: {path}")
        raise MobattnError(f"cannot validate {path.name}: give an {', '.join(SUFFIXES)} artifact")
    inputs = [subject.example_input(seed=100 + i) for i in range(3)]
    if images:
        if not subject.is_model:
            raise MobattnError("--images needs --model (a bare attention takes tokens)")
        inputs += [torch.from_numpy(np.stack([image])) for image in images]
    if path.suffix == ".onnx":
        return _onnx(path, subject, precision, inputs)
    if path.suffix == ".pte":
        return _pte(path, subject, precision or "fp32", inputs)
    return _coreml(path, subject, precision, inputs)


def _check_shape(path: Path, shape, subject: Subject) -> None:
    expected = list(subject.input_shape)
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(fixed) != len(expected) or any(
        f is not None and f != e for f, e in zip(fixed, expected, strict=False)
    ):
        raise MobattnError(
            f"{path.name} takes input {'x'.join(str(d) for d in shape)}, but the subject given takes "
            f"{'x'.join(map(str, expected))}; describe the subject it was exported from"
        )


def _check_metadata(path: Path, meta: dict, subject: Subject) -> None:
    """An artifact whose metadata names another subject is a wrong description, not a
    failed validation."""
    said = {k: meta.get(k) for k in ("model", "attention") if meta.get(k)}
    mine = {k: v for k, v in subject.metadata.items() if k in said}
    if said != mine:
        what = ", ".join(f"{k} {v}" for k, v in said.items())
        raise MobattnError(f"{path.name} is an export of {what}; describe that subject to validate it")


def _onnx(path: Path, subject: Subject, precision: str | None, inputs) -> tuple[Agreement, dict]:
    from .to_onnx import ort_session, validate_onnx

    try:
        session = ort_session(path)
    except Exception as exc:  # noqa: BLE001 - any load failure is a corrupt artifact
        raise MobattnError(f"cannot load {path}: {first_line(exc)}") from None
    _check_shape(path, session.get_inputs()[0].shape, subject)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    _check_metadata(path, meta, subject)
    criterion = precision or meta.get("precision", "fp32")
    return validate_onnx(path, subject.module, subject, criterion, inputs=inputs), {
        "criterion": criterion,
        "metadata": meta,
    }


def _pte(path: Path, subject: Subject, precision: str, inputs) -> tuple[Agreement, dict]:
    from .to_executorch import input_shape, load_method, validate_pte

    try:
        shape, _ = input_shape(load_method(path))
    except MobattnError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MobattnError(f"{path} is not a valid ExecuTorch program: {str(exc).strip()[:160]}") from None
    _check_shape(path, shape, subject)
    return validate_pte(path, subject, precision, inputs=inputs), {"criterion": precision}


def _coreml(path: Path, subject: Subject, precision: str | None, inputs) -> tuple[Agreement, dict]:
    from .coreml_reference import load_program
    from .to_coreml import Unvalidated, criterion_for, validate_coreml

    spec, _ = load_program(path)
    description = spec.description.input[0]
    image = description.type.WhichOneof("Type") == "imageType"
    if image:
        shape = [1, 3, description.type.imageType.height, description.type.imageType.width]
    else:
        shape = list(description.type.multiArrayType.shape)
    _check_shape(path, shape, subject)
    meta = dict(spec.description.metadata.userDefined)
    _check_metadata(path, meta, subject)
    compression = meta.get("compression", "none")
    criterion = criterion_for(
        precision or meta.get("precision", "fp16"), None if compression == "none" else compression
    )
    if image and not subject.is_model:
        raise MobattnError(f"{path.name} takes an image; describe it with --model")
    try:
        agreement = validate_coreml(path, subject, criterion, image, inputs=inputs)
    except Unvalidated as exc:
        raise MobattnError(str(exc)) from None
    return agreement, {"criterion": criterion, "metadata": meta}
