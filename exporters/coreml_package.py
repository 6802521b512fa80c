"""The .mlpackage as an iOS developer receives it: what Xcode shows (author, license,
descriptions, preview type, whether normalisation is the app's job), nothing but
Manifest.json and Data/, readable files, and a report of fp16 subnormal constants."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from mobattn import __version__
from mobattn.errors import MobattnError

from .sizes import sizes_fact
from .subject import Subject

LABEL_OUTPUT, PROBABILITIES_OUTPUT = "classLabel", "classLabel_probs"  # coremltools names the second


def set_metadata(
    mlmodel,
    subject: Subject,
    precision: str,
    compress: str | None,
    target: str,
    image: bool,
    classifier: bool,
    sizes: tuple[int, ...] | None = None,
) -> None:
    """What an iOS developer reads in Xcode: author, license, descriptions of every input
    and output, the preview type, and whether normalisation is still the app's job."""
    mlmodel.author = "mobattn"
    mlmodel.license = LICENSE
    mlmodel.version = __version__
    mlmodel.short_description = f"{subject.stem()} exported by mobattn {__version__}"
    h, w = subject.input_shape[-2:] if subject.is_model else (None, None)
    if image:
        mlmodel.input_description[subject.input_name] = (
            f"RGB image, {h}x{w}; normalisation is inside the model"
        )
    elif subject.is_model:
        mlmodel.input_description[subject.input_name] = (
            f"Float image tensor 1x3x{h}x{w}, normalised with the mean and std in the metadata"
        )
    else:
        mlmodel.input_description[subject.input_name] = "Tokens (batch, H*W, channels)"
    if classifier:
        mlmodel.output_description[LABEL_OUTPUT] = "The most probable ImageNet-1k class"
        mlmodel.output_description[PROBABILITIES_OUTPUT] = "Probability of each ImageNet-1k class"
    else:
        mlmodel.output_description[subject.output_name] = "Logits" if subject.is_model else "Mixed tokens"
    meta = {
        **subject.metadata,
        "precision": precision,
        "compression": compress or "none",
        "min_target": target,
        "normalization": "folded into the image input: pass raw RGB" if image else "apply mean/std below",
        **sizes_fact(sizes),
    }
    if image:  # an app must not normalise twice
        meta.pop("mean", None)
        meta.pop("std", None)
    if classifier:
        meta["com.apple.coreml.model.preview.type"] = "imageClassifier"
    for key, value in meta.items():
        mlmodel.user_defined_metadata[key] = str(value)


LICENSE = "MIT (mobattn); weights: see the checkpoint's own license (random init if none given)"


def make_readable(path: Path) -> None:
    """coremltools writes model.mlmodel 0600 and folders 0700; a package is shared with
    Xcode and a build system, so make it readable like any file this process writes."""
    umask = os.umask(0)
    os.umask(umask)
    for entry in [path, *path.rglob("*")]:
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)


PACKAGE_ENTRIES = {"Manifest.json", "Data"}


def remove_side_files(path: Path) -> None:
    """Keep only what an .mlpackage holds (Manifest.json and Data/): the converter leaves
    ExecuTorch's ``executorch_debug_handle_mapping.json`` beside them, which no Core ML
    tool reads and which would ship inside an app."""
    for entry in path.iterdir():
        if entry.name not in PACKAGE_ENTRIES:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def subnormal_constants(program) -> dict[str, list[float]]:
    """Small fp16 constants (epsilons, at most 16 values) holding subnormals
    (0 < |v| < 6.1e-5), by constant name, with those values: e.g. F.normalize's 1e-12,
    stored as 5.96e-8."""
    found = {}
    for op in program.functions["main"].operations:
        value = op.outputs[0].val if op.op_type == "const" else None
        if isinstance(value, np.ndarray | np.floating) and np.asarray(value).dtype == np.float16:
            array = np.abs(np.asarray(value, np.float32)).ravel()
            tiny = array[(array > 0) & (array < np.finfo(np.float16).tiny)]
            if array.size <= 16 and tiny.size:
                found[op.outputs[0].name] = [float(v) for v in tiny]
    return found


def fp16_subnormals(program) -> dict | None:
    """What hardware that flushes subnormals to zero would change (the reference executor
    keeps them, as IEEE fp16 does): see :func:`subnormal_constants`."""
    found = subnormal_constants(program)
    if not found:
        return None
    values = sorted({v for tiny in found.values() for v in tiny})
    return {"count": len(found), "values": values, "first": next(iter(found))}


def check_package(path: Path) -> None:
    """Every item ``Manifest.json`` names lies inside the package's ``Data`` folder: a
    manifest that points elsewhere (``../../model.mlmodel``) would have Core ML load a
    model from outside the package."""
    manifest = path / "Manifest.json"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["itemInfoEntries"]
        items = [entry["path"] for entry in entries.values()]
    except FileNotFoundError:
        raise MobattnError(f"{path} is not an .mlpackage (no Manifest.json)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise MobattnError(f"{path}: its Manifest.json is not a Core ML package manifest") from None
    data = (path / "Data").resolve()
    for item in items:
        if not isinstance(item, str) or not (data / item).resolve().is_relative_to(data):
            raise MobattnError(f"{path}: its manifest names {item!r}, outside the package; not loaded")
