"""nn.Module -> Core ML ML Program (.mlpackage), checked and, on macOS, validated.

Conversion goes through ``torch.export`` (coremltools' supported path for new
PyTorch; its TorchScript frontend fails on this torch's shape arithmetic). Weight
compression uses coremltools' optimize API. Every package is checked as a spec (ML
Program, input and output names and shapes) and executed against torch: by Core ML on
macOS, by mobattn's reference executor for ML Programs elsewhere (``coreml_reference``).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobattn.errors import MobattnError
from mobattn.models import imagenet_classes

from .ane_rules import analyze
from .coreml_artifact import (  # noqa: F401  (the target's file side)
    RUNTIME_OPTIONS,
    file_metadata,
    file_precision,
    inspect,
    load_runner,
    validate_file,
)
from .coreml_package import (  # noqa: F401  (check_package: the target's package check)
    LABEL_OUTPUT,
    PROBABILITIES_OUTPUT,
    check_package,
    fp16_subnormals,
    make_readable,
    remove_side_files,
    set_metadata,
)
from .coreml_validation import (  # noqa: F401  (re-exported: what scripts and tests call)
    Probabilities,
    Unvalidated,
    can_predict,
    coremltools,
    criterion_for,
    is_classifier,
    random_images,
    to_pixels,
    validate_coreml,
)
from .deploy import deployable
from .fold import fold_for_inference
from .record import ExportResult
from .silence import quiet
from .sizes import check_sizes, shapes, shapes_note, torch_dims, validation_set
from .subject import Subject

TARGETS = ("iOS16", "iOS17", "iOS18", "iOS26")
DEFAULT_MIN_TARGET = "iOS16"
COMPRESSIONS = ("int8", "palettize4", "palettize6", "palettize8")


class ChannelScale(nn.Module):
    """Per-channel multiplier in front of a model: what is left of std normalisation
    once its average is folded into the Core ML image input's scalar scale."""

    def __init__(self, factors: tuple[float, ...], module: nn.Module):
        super().__init__()
        self.register_buffer("factors", torch.tensor(factors).reshape(1, -1, 1, 1))
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x * self.factors)


def image_input(subject: Subject, module: nn.Module):
    """An ImageType taking 0..255 RGB with mean/std folded into its scale and bias.

    Core ML's image preprocessing is ``scale * pixel + bias[c]`` with one scalar scale.
    With s = mean(std): scale = 1 / (255 s), bias[c] = -mean[c] / s, and the model
    multiplies channel c by s / std[c], which gives exactly (pixel/255 - mean) / std.
    """
    ct = coremltools()
    avg = float(np.mean(subject.std))
    kind = ct.ImageType(
        name=subject.input_name,
        shape=subject.input_shape,
        scale=1.0 / (255.0 * avg),
        bias=[-m / avg for m in subject.mean],
        color_layout=ct.colorlayout.RGB,
    )
    return kind, ChannelScale(tuple(avg / s for s in subject.std), module).eval()


def _compress(mlmodel, compress: str):
    import coremltools.optimize.coreml as cto

    if compress == "int8":
        op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=512)
        config = cto.OptimizationConfig(global_config=op_config)
        return cto.linear_quantize_weights(mlmodel, config)
    nbits = int(compress.removeprefix("palettize"))
    op_config = cto.OpPalettizerConfig(nbits=nbits, mode="kmeans", weight_threshold=512)
    return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=op_config))


def _main_block(spec):
    main = spec.mlProgram.functions["main"]
    return main.block_specializations[main.opset]


def op_histogram(spec) -> dict[str, int]:
    return dict(Counter(op.type for op in _main_block(spec).operations if op.type != "const").most_common())


def check_spec(path: Path, subject: Subject, image: bool, sizes=None) -> tuple[dict, list[str]]:
    """Load the saved package as a spec; return (op histogram, problems)."""
    ct = coremltools()
    spec = ct.utils.load_spec(str(path))
    problems = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"not an ML Program but {spec.WhichOneof('Type')}")
    inputs = {i.name: i for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    if list(inputs) != [subject.input_name]:
        problems.append(f"inputs {list(inputs)} != ['{subject.input_name}']")
    else:
        kind = inputs[subject.input_name].type
        if image:
            got = (kind.imageType.height, kind.imageType.width)
            if kind.WhichOneof("Type") != "imageType" or got != tuple(subject.input_shape[2:]):
                problems.append(f"image input is {kind.WhichOneof('Type')} {got}")
        elif tuple(kind.multiArrayType.shape) != tuple(subject.input_shape):
            problems.append(f"input shape {tuple(kind.multiArrayType.shape)} != {subject.input_shape}")
        elif sizes:
            listed = {tuple(e.shape) for e in kind.multiArrayType.enumeratedShapes.shapes}
            if listed != set(shapes(subject, sizes)):
                problems.append(f"enumerated shapes {sorted(listed)} != the sizes {list(sizes)}")
    expected = (
        [LABEL_OUTPUT, PROBABILITIES_OUTPUT] if is_classifier(subject, image) else [subject.output_name]
    )
    if sorted(outputs) != sorted(expected):
        problems.append(f"outputs {outputs} != {expected}")
    return op_histogram(spec), problems


LAYOUTS = ("default", "ane")


def ane_caveats(subject: Subject, layout: str) -> dict:
    """What ``--layout ane`` could not make transpose-free for this subject's mechanism
    (its ANE twin's ``caveat``); a mechanism without an ANE twin is one clear line."""
    if layout != "ane":
        return {}
    from mobattn.attention import get_attention_class

    from .deploy.ane import ane_twin

    mechanism = subject.attention or subject.native
    caveat = ane_twin(get_attention_class(mechanism)).caveat
    return {mechanism: caveat} if caveat else {}


def check_options(
    subject: Subject,
    precision: str,
    min_target: str = DEFAULT_MIN_TARGET,
    image: bool = False,
    compress: str | None = None,
    layout: str = "default",
    sizes: tuple[int, ...] | None = None,
) -> None:
    if sizes and (image or layout == "ane"):
        raise MobattnError(
            "--sizes takes a tensor input in the default layout: drop --image-input or --layout ane"
        )
    check_sizes(subject, sizes)
    if layout not in LAYOUTS:
        raise MobattnError(f"--layout must be {' or '.join(LAYOUTS)}, got '{layout}'")
    if layout == "ane" and not subject.is_model:
        raise MobattnError("--layout ane needs a model (it rewrites the SwiftFormer backbone's token mixers)")
    if layout == "ane" and not subject.model.startswith("swiftformer"):
        raise MobattnError(f"--layout ane rewrites the SwiftFormer backbone; {subject.model} is not one")
    ane_caveats(subject, layout)  # a mechanism without an ANE twin: refused before anything is built
    if min_target not in TARGETS:
        raise MobattnError(f"--min-target must be one of {', '.join(TARGETS)}, got '{min_target}'")
    if compress is not None and compress not in COMPRESSIONS:
        raise MobattnError(f"--compress must be one of {', '.join(COMPRESSIONS)}, got '{compress}'")
    if image and not subject.is_model:
        raise MobattnError("--image-input needs a model (a bare attention takes tokens, not an image)")


def export(
    subject: Subject,
    path: Path,
    precision: str = "fp16",
    min_target: str = DEFAULT_MIN_TARGET,
    image: bool = False,
    compress: str | None = None,
    layout: str = "default",
    sizes: tuple[int, ...] | None = None,
) -> ExportResult:
    """Write ``path`` (.mlpackage) and return the facts of the export.

    ``layout="ane"`` exports the Neural Engine layout of :mod:`.deploy.ane`, validated
    against the reference module like any export. ``sizes``: Core ML's enumerated shapes
    (:mod:`.sizes`), validated at each."""
    options = dict(min_target=min_target, image=image, compress=compress, layout=layout, sizes=sizes)
    check_options(subject, precision, **options)
    sizes = check_sizes(subject, sizes)
    ct = coremltools()
    start = time.perf_counter()
    module = fold_for_inference(subject.module)
    if layout == "ane":
        module = deployable(module, "ane")
    classifier = is_classifier(subject, image)
    if image:
        input_type, module = image_input(subject, module)
    elif sizes:  # the Neural Engine prefers enumerated shapes to ranges
        enumerated = ct.EnumeratedShapes(shapes=shapes(subject, sizes), default=subject.input_shape)
        input_type = ct.TensorType(name=subject.input_name, shape=enumerated)
    else:
        input_type = ct.TensorType(name=subject.input_name, shape=subject.input_shape)
    extra = {}
    if classifier:
        module = Probabilities(module).eval()
        extra["classifier_config"] = ct.ClassifierConfig(
            imagenet_classes(),
            predicted_feature_name=LABEL_OUTPUT,
        )
    output_name = "probabilities" if classifier else subject.output_name
    with quiet(), torch.no_grad():
        dims = (torch_dims(sizes),) if sizes else None
        program = torch.export.export(module, (subject.example_input(),), dynamic_shapes=dims)
        program = program.run_decompositions({})
        mlmodel = ct.convert(
            program,
            inputs=[input_type],
            outputs=[ct.TensorType(name=output_name)],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, min_target),
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            **extra,
        )
        if compress:
            mlmodel = _compress(mlmodel, compress)
    set_metadata(mlmodel, subject, precision, compress, min_target, image, classifier, sizes)
    with quiet():
        mlmodel.save(str(path))
    seconds = time.perf_counter() - start
    remove_side_files(path)
    make_readable(path)
    histogram, problems = check_spec(path, subject, image, sizes)
    if problems:
        raise MobattnError(f"Core ML package failed its spec check: {'; '.join(problems)}")
    unvalidated = None
    try:
        inputs = validation_set(subject, sizes) if sizes else None
        agreement = validate_coreml(path, subject, criterion_for(precision, compress), image, inputs)
        if sizes:
            agreement.add_note(f"{shapes_note(inputs)} (enumerated shapes)")
    except Unvalidated as exc:
        agreement, unvalidated = None, str(exc)
    from .coreml_reference import load_program

    spec, program = load_program(path)  # once, for the Neural Engine rules and the epsilons
    return ExportResult(
        seconds,
        histogram,
        agreement,
        {
            "layout": layout,
            **({"sizes": list(sizes)} if sizes else {}),
            **({"layout_caveats": caveats} if (caveats := ane_caveats(subject, layout)) else {}),
            "ane": analyze(program, spec)["summary"],
            "min_target": min_target,
            "image_input": image,
            "classifier": classifier,
            "compression": compress,
            "spec_check": "ML Program; input/output names and shapes as expected",
            "executor": "coreml" if can_predict() else "reference",
            **({"unvalidated": unvalidated} if unvalidated else {}),
            **({"fp16_subnormal_constants": subnormal} if (subnormal := fp16_subnormals(program)) else {}),
        },
    )
