"""nn.Module -> .onnx, simplified, checked and validated against torch.

Path chosen: torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``) at
opset 20. Against the TorchScript exporter it gives the cleaner graph: its optimizer
folds every Conv+BatchNorm pair and drops cancelling transposes and identities, it
expresses dynamic H and W symbolically, and opset 20 keeps GELU one fused ``Gelu`` node
instead of five element-wise ones. Before export, :mod:`.fold` folds what the exporter
cannot (BatchNorms before linear maps, the two heads); after it, onnxsim constant-folds
and fuses what is left.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from mobattn import __version__
from mobattn.errors import MobattnError

from .deploy import deployable
from .fold import fold_for_inference
from .mobile_check import mobile_usability
from .silence import quiet
from .subject import Subject
from .validate import Agreement, agreement_on

DEFAULT_OPSET = 20
MODEL_VERSION = 1  # ONNX's integer model_version: bumped when an export of the same subject changes
VALIDATION_INPUTS = 3
FORMS = ("reference", "mobile")  # see exporters.deploy


def dynamic_shapes(subject: Subject) -> tuple[dict, ...]:
    """Batch always; H and W too for models (a bare mixer's grid is fixed)."""
    dims = {0: torch.export.Dim("batch", min=1, max=1024)}
    if subject.is_model:
        dims[2] = torch.export.Dim("height", min=32, max=4096)
        dims[3] = torch.export.Dim("width", min=32, max=4096)
    return (dims,)


def second_input_shape(subject: Subject) -> tuple[int, ...]:
    """Another valid shape for a dynamic artifact: batch + 1, and for models a
    different resolution."""
    shape = list(subject.input_shape)
    shape[0] += 1
    if subject.is_model:
        shape[2], shape[3] = shape[2] + 64, shape[3] + 32
    return tuple(shape)


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


def _torch_export(module: torch.nn.Module, subject: Subject, path: Path, opset: int, dynamic: bool) -> None:
    example = subject.example_input()
    if dynamic and example.shape[0] == 1:  # batch 1 would be specialised by torch.export
        example = subject.example_input(shape=(2, *subject.input_shape[1:]))
    with quiet():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=[subject.input_name],
            output_names=[subject.output_name],
            dynamic_shapes=dynamic_shapes(subject) if dynamic else None,
            optimize=True,
            external_data=False,
        )


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    with quiet():
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise MobattnError("onnxsim could not verify the simplified graph; try --no-simplify")
    return simplified


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxsim.onnx_simplifier import quantize_fp16

    return quantize_fp16(model, keep_io_types=True)


def _add_metadata(model: onnx.ModelProto, subject: Subject, precision: str, dynamic: bool) -> None:
    props = {
        **subject.metadata,
        "precision": precision,
        "dynamic": str(dynamic),
        "mobattn_version": __version__,
    }
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    model.producer_name, model.producer_version = "mobattn", __version__
    model.model_version = MODEL_VERSION
    model.doc_string = f"mobattn export of {subject.stem()}"


def ort_session(path: Path, threads: int = 1, providers: list[str] | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def validate_onnx(
    path: Path,
    module: torch.nn.Module,
    subject: Subject,
    precision: str,
    dynamic: bool = False,
    inputs: list[torch.Tensor] | None = None,
) -> Agreement:
    """onnxruntime against torch on random inputs (and, if dynamic, a second shape)."""
    session = ort_session(path)
    if inputs is None:
        shapes = [subject.input_shape] * VALIDATION_INPUTS
        if dynamic:
            shapes.append(second_input_shape(subject))
        inputs = [subject.example_input(seed=100 + seed, shape=shape) for seed, shape in enumerate(shapes)]
    name = session.get_inputs()[0].name
    agreement = agreement_on(
        lambda x: session.run(None, {name: x.numpy()})[0], module, inputs, precision, "onnxruntime"
    )
    shapes = dict.fromkeys(tuple(x.shape) for x in inputs)
    agreement.add_note("shapes: " + ", ".join("x".join(map(str, s)) for s in shapes))
    return agreement


# The opsets tested with the pinned torch exporter and onnxruntime (constraints.txt).
MIN_OPSET, MAX_OPSET = 17, 23


def check_options(
    subject: Subject,
    precision: str,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
    simplify: bool = True,
    calibration=None,
    form: str = "reference",
) -> None:
    if form not in FORMS:
        raise MobattnError(f"--form must be {' or '.join(FORMS)} for ONNX, got '{form}'")
    if precision == "int8" and dynamic:
        raise MobattnError("--precision int8 calibrates at one input shape; drop --dynamic")
    if calibration is not None and precision != "int8":
        raise MobattnError("--calibration applies to --precision int8")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise MobattnError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")


def export_onnx(
    subject: Subject,
    path: Path,
    precision: str = "fp32",
    dynamic: bool = False,
    simplify: bool = True,
    opset: int = DEFAULT_OPSET,
    calibration: list[np.ndarray] | None = None,
    form: str = "reference",
) -> dict:
    """Write ``path`` and return the facts of the export (the caller stages the path).

    ``form="mobile"`` exports the deployable form onnxruntime's NNAPI and Core ML
    providers take whole (see :mod:`.deploy`); it is validated against the reference
    module like any export. Every record carries onnxruntime's mobile usability verdict."""
    check_options(subject, precision, opset=opset, dynamic=dynamic, calibration=calibration, form=form)
    start = time.perf_counter()
    module = deployable(fold_for_inference(subject.module), form)
    raw = path.with_suffix(".raw.onnx")
    _torch_export(module, subject, raw, opset, dynamic)
    model = onnx.load(str(raw))
    raw.unlink()
    written_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written_opset != opset:  # the record states what the file is, read back from it
        raise MobattnError(
            f"the exporter wrote opset {written_opset}, not the asked {opset}; "
            f"ask for --opset {written_opset}"
        )
    nodes_before = len(model.graph.node)
    if simplify:
        model = _simplify(model)
    quantization = None
    if precision == "fp16":
        model = _to_fp16(model)
    elif precision == "int8":
        from .quantize_onnx import quantize_int8

        model, quantization = quantize_int8(model, subject, calibration, path.parent)
    _add_metadata(model, subject, precision, dynamic)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    seconds = time.perf_counter() - start
    agreement = validate_onnx(path, subject.module, subject, precision, dynamic)
    histogram = op_histogram(model)
    return {
        "seconds": seconds,
        "op_histogram": histogram,
        "op_count": sum(histogram.values()),
        "validation": agreement,
        "details": {
            "form": form,
            "mobile_usability": mobile_usability(path),
            "opset": written_opset,
            "simplified": simplify,
            "dynamic": dynamic,
            "nodes_before_simplify": nodes_before,
            **({"quantization": quantization} if quantization else {}),
        },
    }


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    session = ort_session(path, threads)
    return session.run(None, {session.get_inputs()[0].name: x})[0]
