"""Calibration images for post-training quantization: an ImageFolder's images with the
model's own preprocessing."""

from __future__ import annotations

import numpy as np

from mobattn.errors import MobattnError

from .subject import Subject

MAX_CALIBRATION_IMAGES = 128


def calibration_images(subject: Subject, folder: str, option: str = "--calibration") -> list[np.ndarray]:
    """Up to 128 images of ``folder`` (an ImageFolder root or a list of files, see
    :mod:`mobattn.image_sources`), preprocessed as the model expects, for int8
    calibration or validation (errors name ``option``)."""
    from mobattn.image_sources import read_source
    from mobattn.images import load_image, preprocess
    from mobattn.models import get_model_config

    if not subject.is_model:
        raise MobattnError(f"{option} takes images, so it needs --model (a bare attention takes tokens)")
    config = get_model_config(subject.model)
    size = tuple(subject.input_shape[2:4])  # the export's own height and width
    samples = read_source(folder, option=option, labels=False).samples  # labels unused
    return [
        preprocess(load_image(path), size, config.crop_pct, config.mean, config.std, config.interpolation)
        for path, _ in samples[:MAX_CALIBRATION_IMAGES]
    ]


def stack_batches(subject: Subject, images: list[np.ndarray]) -> list[np.ndarray]:
    """Preprocessed images grouped into the subject's batch size (a partial last batch is
    dropped: the exported input shape is fixed)."""
    batch = subject.input_shape[0]
    return [np.stack(images[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]


# An int8 export calibrated on images is validated on this many of them, not on random
# inputs: a trained network fed noise leaves the ranges it was calibrated for (the trained
# ViT-Ti's int8 logits keep a cosine of 0.98 on real images and fall to 0.85 on noise).
VALIDATION_IMAGES = 4


def validation_inputs(subject: Subject, images: list[np.ndarray] | None):
    """The inputs an int8 export is validated on: some of its calibration images in the
    subject's batch size, or None (random inputs) when it was calibrated on random inputs."""
    import torch

    if not images:
        return None
    batches = stack_batches(subject, list(images)[: VALIDATION_IMAGES * subject.input_shape[0]])
    return [torch.from_numpy(b) for b in batches] or None
