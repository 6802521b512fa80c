"""Calibration images for post-training quantization: an ImageFolder's images with the
model's own preprocessing."""

from __future__ import annotations

import numpy as np

from mobattn.errors import MobattnError

from .subject import Subject

MAX_CALIBRATION_IMAGES = 128


MAX_HELD_OUT_IMAGES = 500  # an int8's predictions judged on at most this many held-out images
MIN_HELD_OUT_IMAGES = 8  # fewer images in a calibration source: nothing is held out


def calibration_images(
    subject: Subject, folder: str, option: str = "--calibration", limit: int = MAX_CALIBRATION_IMAGES
) -> list[np.ndarray]:
    """Up to ``limit`` images of ``folder`` (an ImageFolder root or a list of files, see
    :mod:`mobattn.image_sources`), preprocessed as the model expects, for int8
    calibration or validation (errors name ``option``)."""
    return _preprocessed(subject, _files(subject, folder, option)[:limit])


def _files(subject: Subject, folder: str, option: str) -> list:
    from mobattn.image_sources import read_source

    if not subject.is_model:
        raise MobattnError(f"{option} takes images, so it needs --model (a bare attention takes tokens)")
    return [path for path, _ in read_source(folder, option=option, labels=False).samples]  # labels unused


def _preprocessed(subject: Subject, paths: list) -> list[np.ndarray]:
    from mobattn.images import load_image, preprocess
    from mobattn.models import get_model_config

    config = get_model_config(subject.model)
    size = tuple(subject.input_shape[2:4])  # the export's own height and width
    return [
        preprocess(load_image(path), size, config.crop_pct, config.mean, config.std, config.interpolation)
        for path in paths
    ]


def split_images(
    subject: Subject, calibration: str, validation: str | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The images an int8 export calibrates on, and the held-out ones it is judged on.
    With ``validation`` (``--validation-images``): up to 128 of ``calibration`` and up to
    500 of ``validation``. Without it: the calibration source minus the images it
    calibrates on (a quarter of a source of up to 136 images, else all beyond the first
    128), so the judgement never sees an image the ranges were set on; a source of fewer
    than 32 images holds none out (validated on its calibration images, and said so)."""
    calibrating = _files(subject, calibration, "--calibration")
    if validation is not None:
        held_out = _files(subject, validation, "--validation-images")
        seen = set(map(str, calibrating[:MAX_CALIBRATION_IMAGES]))
        held_out = [p for p in held_out if str(p) not in seen]  # never judged on what it calibrated on
        if not held_out:
            raise MobattnError("--validation-images holds only images --calibration calibrates on")
    elif len(calibrating) > MAX_CALIBRATION_IMAGES + MIN_HELD_OUT_IMAGES:
        calibrating, held_out = calibrating[:MAX_CALIBRATION_IMAGES], calibrating[MAX_CALIBRATION_IMAGES:]
    elif len(calibrating) >= 4 * MIN_HELD_OUT_IMAGES:
        keep = len(calibrating) - len(calibrating) // 4
        calibrating, held_out = calibrating[:keep], calibrating[keep:]
    else:
        held_out = []
    return (
        _preprocessed(subject, calibrating[:MAX_CALIBRATION_IMAGES]),
        _preprocessed(subject, held_out[:MAX_HELD_OUT_IMAGES]),
    )


def stack_batches(subject: Subject, images: list[np.ndarray]) -> list[np.ndarray]:
    """Preprocessed images grouped into the subject's batch size (a partial last batch is
    dropped: the exported input shape is fixed)."""
    batch = subject.input_shape[0]
    return [np.stack(images[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]


# An int8 export calibrated on images is validated on this many of them, not on random
# inputs: a trained network fed noise leaves the ranges it was calibrated for (the trained
# ViT-Ti's int8 logits keep a cosine of 0.98 on real images and fall to 0.85 on noise).
VALIDATION_IMAGES = 4


def validation_inputs(
    subject: Subject, images: list[np.ndarray] | None, held_out: list[np.ndarray] | None = None
):
    """The inputs an int8 export is validated on, in the subject's batch size: the
    held-out images when there are any, else a few of its calibration images, else None
    (random inputs: it was calibrated on random inputs)."""
    import torch

    if held_out:
        batches = stack_batches(subject, list(held_out))
    elif images:
        batches = stack_batches(subject, list(images)[: VALIDATION_IMAGES * subject.input_shape[0]])
    else:
        return None
    return [torch.from_numpy(b) for b in batches] or None


def validation_note(inputs, held_out) -> str:
    """Where an int8's validation images came from, for its record."""
    images = sum(int(x.shape[0]) for x in inputs)
    if held_out:
        return f"judged on {images} held-out images (none calibrated on)"
    return f"on {images} of the calibration images (none held out: give --validation-images)"
