"""Validate an existing artifact (any target's file) against the torch module it claims
to be: ``mobattn validate``. Each target's ``validate_file`` does the work.

The torch side is rebuilt from the same description as at export (model or bare
attention, resolution, ``--weights``; random weights come from a fixed seed, so an
export of random weights is rebuilt exactly). The criterion is the one the export used,
read from the artifact's metadata where it has some (precision, compression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError

from .agreement import Agreement
from .formats import target_for_file
from .probe import probe_file
from .subject import Subject


def validate_artifact(
    path: str | Path, subject: Subject, precision: str | None = None, images: list[np.ndarray] | None = None
) -> tuple[Agreement, dict]:
    """The artifact's agreement with ``subject`` on random inputs (plus ``images`` for
    models), and what was read from the artifact (its criterion, input shape, metadata)."""
    path = Path(path)
    target = target_for_file(path, "validate")
    probe_file(path, "validate")  # what the file is, and that loading it cannot crash this process
    inputs = [subject.example_input(seed=100 + i) for i in range(3)]
    if images:
        if not subject.is_model:
            raise MobattnError("--images needs --model (a bare attention takes tokens)")
        inputs += [torch.from_numpy(np.stack([image])) for image in images]
    return target.implementation().validate_file(path, subject, precision, inputs)
