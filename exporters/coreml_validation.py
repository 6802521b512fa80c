"""Running a Core ML package against torch: in Core ML on macOS, in mobattn's reference
executor for ML Programs elsewhere (:mod:`.coreml_reference`). Shared by the exporter
(:mod:`.to_coreml`) and the file side (:mod:`.coreml_artifact`), so neither imports the
other's module for it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobattn.models import get_model_config, imagenet_classes

from .agreement import Agreement, agreement_on
from .coreml_package import PROBABILITIES_OUTPUT
from .silence import quiet
from .subject import Subject


def coremltools():
    """Import coremltools with its import-time chatter silenced."""
    with quiet():
        import coremltools as ct
    return ct


def can_predict() -> bool:
    """Core ML runs models on macOS only."""
    return sys.platform == "darwin"


class Probabilities(nn.Module):
    """Softmax over the model's logits: an app's image classifier reports probabilities."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.module(x), dim=1)


def is_classifier(subject: Subject, image: bool) -> bool:
    """Image-input exports of ImageNet-1k models become Core ML classifiers (class labels,
    probabilities, the top class), the form Xcode previews and Vision consumes; tensor-input
    exports keep raw logits for numerical work."""
    return (
        image and subject.is_model and get_model_config(subject.model).num_classes == len(imagenet_classes())
    )


def to_pixels(x: torch.Tensor, subject: Subject) -> np.ndarray:
    """The 0..255 RGB image (C, H, W, float) whose normalisation is ``x``: what an image
    input takes."""
    mean = torch.tensor(subject.mean)[:, None, None]
    std = torch.tensor(subject.std)[:, None, None]
    return ((x[0] * std + mean) * 255).numpy().astype(np.float32)


def random_images(subject: Subject, count: int = 3) -> list[torch.Tensor]:
    """Random RGB images (whole pixel values), normalised as the model expects."""
    h, w = subject.input_shape[2], subject.input_shape[3]
    images = []
    for seed in range(count):
        pixels = np.random.default_rng(seed).integers(0, 256, (3, h, w)).astype(np.float32)
        mean = torch.tensor(subject.mean)[:, None, None]
        std = torch.tensor(subject.std)[:, None, None]
        images.append(((torch.from_numpy(pixels) / 255 - mean) / std)[None])
    return images


def validate_coreml(
    path: Path, subject: Subject, criterion: str, image: bool, inputs: list[torch.Tensor] | None = None
) -> Agreement:
    """Run the package against torch: in Core ML on macOS, in the reference executor for
    ML Programs elsewhere (:mod:`.coreml_reference`). An op without a reference kernel
    makes the artifact unvalidated, never passed."""
    from .coreml_reference import ReferenceExecutor

    if inputs is None:
        inputs = random_images(subject) if image else [subject.example_input(seed=100 + i) for i in range(3)]
    classifier = is_classifier(subject, image)
    output = PROBABILITIES_OUTPUT if classifier else subject.output_name
    reference_module = Probabilities(subject.module).eval() if classifier else subject.module
    labels = imagenet_classes() if classifier else None
    if can_predict():
        mlmodel = coremltools().models.MLModel(str(path))
        executor = "coreml"

        def run(x: torch.Tensor):
            from PIL import Image

            feed = (
                Image.fromarray(to_pixels(x, subject).round().astype(np.uint8).transpose(1, 2, 0))
                if image
                else x.numpy()
            )
            value = mlmodel.predict({subject.input_name: feed})[output]
            return np.array([[value[label] for label in labels]]) if classifier else value
    else:
        reference = ReferenceExecutor(path)
        missing = reference.missing_kernels()
        if missing:
            raise Unvalidated(f"unvalidated: no reference kernel for {', '.join(missing)}")
        executor = "reference"

        def run(x: torch.Tensor):
            feed = to_pixels(x, subject)[None] if image else x.numpy()
            return reference.predict({subject.input_name: feed})[output]

    agreement = agreement_on(run, reference_module, inputs, criterion, executor)
    agreement.add_note(
        "Core ML predictions on macOS" if can_predict() else "mobattn's ML Program reference executor"
    )
    return agreement


class Unvalidated(Exception):  # noqa: N818 - a verdict, not an error
    """The package could not be executed here: no verdict, and never a pass."""


def criterion_for(precision: str, compress: str | None) -> str:
    """The validation criterion's key (see validate.TOLERANCE / COSINE_FLOOR)."""
    if compress:
        return f"coreml-{compress}"
    return "fp32" if precision == "fp32" else "coreml-fp16"
