"""One artifact for several input sizes (``mobattn export --sizes 224,256,320``), and
ONNX's ``--dynamic`` axes.

Each runtime has its own way, so each target says what it writes:

- ONNX and ExecuTorch: height and width are symbolic dimensions of ``torch.export``,
  bounded by the smallest and largest size (in steps of 32 where every size is a multiple
  of 32, the stride of the zoo's backbones): onnxruntime takes symbolic dimensions,
  XNNPACK takes dynamic shapes up to the upper bound.
- LiteRT: one signature per size in one file (``size_224``, ...), sharing the weights.
  litert-torch's converter cannot lower a reshape whose size depends on a symbolic
  dimension (its JAX bridge needs concrete shapes), and the Android API picks a signature
  by name.

Whatever the runtime could take, the artifact promises the listed sizes only: it is
validated against torch at each of them, its metadata lists them (``sizes``), and
``bench FILE --resolution`` times it at any of them.
"""

from __future__ import annotations

import math

import torch

from mobattn.errors import MobattnError

from .subject import Subject

STRIDE = 32


def check_sizes(
    subject: Subject, sizes: tuple[int, ...] | None, precision: str = "fp32"
) -> tuple[int, ...] | None:
    """The sizes, sorted, of a model whose example resolution is one of them; one line
    otherwise (a bare attention's token grid is fixed by its module; int8 calibrates at
    one input shape)."""
    if sizes is None:
        return None
    if precision == "int8":
        raise MobattnError("--precision int8 calibrates at one input shape; drop --sizes")
    if not subject.is_model:
        raise MobattnError("--sizes lists model input sizes; a bare attention's token grid is fixed (--hw)")
    from mobattn.catalogue import check_resolution_for

    ordered = tuple(sorted(set(sizes)))
    if len(ordered) < 2:
        raise MobattnError(f"--sizes needs two sizes or more, got {','.join(map(str, sizes))}")
    for size in ordered:
        check_resolution_for(subject.model, subject.attention, (size, size))
    height, width = subject.input_shape[2:]
    if height != width or height not in ordered:
        raise MobattnError(
            f"--sizes {','.join(map(str, ordered))} must include the example resolution "
            f"{height}x{width} (--resolution): it is what the artifact is traced at"
        )
    return ordered


def torch_dims(sizes: tuple[int, ...]) -> dict[int, torch.export.Dim]:
    """Height and width (axes 2 and 3) as symbolic dimensions bounded by the sizes."""
    step = STRIDE if all(s % STRIDE == 0 for s in sizes) else math.gcd(*sizes)
    low, high = min(sizes) // step, max(sizes) // step
    return {
        2: step * torch.export.Dim("height_steps", min=low, max=high),
        3: step * torch.export.Dim("width_steps", min=low, max=high),
    }


def dynamic_shapes(subject: Subject, dynamic: bool, sizes: tuple[int, ...] | None = None) -> tuple | None:
    """``--dynamic``: batch always, and H and W too for models (a bare mixer's grid is
    fixed); ``--sizes``: H and W bounded by the smallest and largest size."""
    dims = {}
    if dynamic:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
        if subject.is_model:
            dims[2] = torch.export.Dim("height", min=32, max=4096)
            dims[3] = torch.export.Dim("width", min=32, max=4096)
    if sizes:
        dims.update(torch_dims(sizes))
    return (dims,) if dims else None


def second_input_shape(subject: Subject) -> tuple[int, ...]:
    """Another valid shape for a dynamic artifact: batch + 1, and for models a
    different resolution."""
    shape = list(subject.input_shape)
    shape[0] += 1
    if subject.is_model:
        shape[2], shape[3] = shape[2] + 64, shape[3] + 32
    return tuple(shape)


def shapes(subject: Subject, sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The input shape at each size (the subject's batch and channels)."""
    batch, channels = subject.input_shape[:2]
    return [(batch, channels, s, s) for s in sizes]


def text(sizes: tuple[int, ...]) -> str:
    """The metadata and record form: ``224,256,320``."""
    return ",".join(map(str, sizes))


def sizes_fact(sizes: tuple[int, ...] | None) -> dict[str, str]:
    """The metadata pair of a file of several sizes (``sizes: 224,256,320``); none otherwise."""
    return {"sizes": text(sizes)} if sizes else {}


def parse_metadata(value: str | None) -> tuple[int, ...] | None:
    """The sizes a file's metadata promises, or None (a file of one size)."""
    if not value:
        return None
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        return None


def signature(size: int) -> str:
    """LiteRT's signature key for one size."""
    return f"size_{size}"


def validation_set(subject: Subject, sizes: tuple[int, ...] | None, count: int = 3) -> list[torch.Tensor]:
    """``count`` random inputs at the example shape, and one at every other promised size."""
    inputs = [subject.example_input(seed=100 + seed) for seed in range(count)]
    example = tuple(subject.input_shape)
    others = [shape for shape in shapes(subject, sizes or ()) if shape != example]
    return inputs + [subject.example_input(seed=200 + i, shape=shape) for i, shape in enumerate(others)]


def flexible_shape(shape: list, sizes: tuple[int, ...] | None) -> list:
    """A runner's input shape with height and width named, not numbered, when the file
    promises several sizes (a dynamic dimension is a str)."""
    return [*shape[:2], "height", "width"] if sizes else list(shape)


def shapes_note(inputs: list[torch.Tensor]) -> str:
    """``shapes: 1x3x224x224, 1x3x256x256``: the shapes a validation ran at."""
    distinct = dict.fromkeys(tuple(x.shape) for x in inputs)
    return "shapes: " + ", ".join("x".join(map(str, s)) for s in distinct)


def with_sizes(subject: Subject, inputs: list[torch.Tensor] | None, sizes: tuple[int, ...] | None):
    """``inputs`` (a caller's, at the example shape) and one more at every other promised
    size: a file of several sizes is validated at each, whoever asks."""
    if not inputs or not sizes:
        return inputs
    return inputs + validation_set(subject, sizes, count=0)
