"""``mobattn validate --divergence``: an .onnx export against a float twin exported here
(:mod:`.divergence` compares them; this module makes the twin, so the comparison itself
imports no exporter and the int8 search can use it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from .divergence import DIVERGENCE_INPUTS, DivergenceReport, divergence


def divergence_of_file(path: Path, subject, images: list[np.ndarray] | None) -> DivergenceReport:
    """``path`` (an .onnx export of ``subject``) against a float twin exported here, in the
    same form, on ``images`` (else on random inputs): ``mobattn validate --divergence``."""
    import tempfile

    from mobattn.errors import MobattnError

    from . import to_onnx

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise MobattnError(
            f"--divergence compares ONNX graphs layer by layer; {path.name} is not an .onnx file"
        )
    metadata = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    form = metadata.get("form", "reference")
    if images:
        inputs = [np.stack([image]).astype(np.float32) for image in images[:DIVERGENCE_INPUTS]]
    else:
        inputs = [subject.example_input(seed=100 + i).numpy() for i in range(3)]
    with tempfile.TemporaryDirectory(prefix="mobattn-divergence-") as tmp:
        twin = Path(tmp) / "fp32.onnx"
        to_onnx.export(subject, twin, precision="fp32", form=form if form in to_onnx.FORMS else "reference")
        return divergence(twin, path, inputs)
