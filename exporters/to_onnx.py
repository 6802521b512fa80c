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
from mobattn.errors import MobattnError, first_line

from .agreement import Agreement, agreement_on, judged_as
from .calibration import validation_inputs, validation_note
from .deploy import deployable
from .fold import fold_for_inference
from .int8_recipe import DEFAULT_RECIPE, STATIC_RECIPES, check_recipe, check_target
from .int8_search import search
from .mobile_check import mobile_usability
from .onnx_profile import onnxruntime_op_profile
from .onnx_session import RUNTIME_OPTIONS, ort_session, providers_for  # noqa: F401  (re-exported)
from .record import ExportResult, Runner, check_runtime_options
from .silence import quiet
from .sizes import (
    check_sizes,
    dynamic_shapes,
    parse_metadata,
    second_input_shape,
    shapes_note,
    sizes_fact,
    validation_set,
    with_sizes,
)
from .subject import Subject, artifact_metadata

DEFAULT_OPSET = 20
MODEL_VERSION = 1  # ONNX's integer model_version: bumped when an export of the same subject changes
VALIDATION_INPUTS = 3
FORMS = ("reference", "mobile")  # see exporters.deploy


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


def _torch_export(
    module: torch.nn.Module, subject: Subject, path: Path, opset: int, dynamic: bool, sizes=None
) -> None:
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
            dynamic_shapes=dynamic_shapes(subject, dynamic, sizes),
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
    """Weights and compute in fp16, inputs and outputs kept fp32. The converter leaves
    every fp32 initializer in the file beside its fp16 copy; those no node reads are
    dropped, or an fp16 file would be larger than the fp32 one."""
    from onnxsim.onnx_simplifier import quantize_fp16

    return drop_unused_initializers(quantize_fp16(model, keep_io_types=True))


def drop_unused_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove the initializers no node (nor subgraph, nor output) reads."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {
        name
        for node in model.graph.node
        for attr in node.attribute
        if attr.g
        for n in attr.g.node
        for name in n.input
    }
    used |= {output.name for output in model.graph.output}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def _add_metadata(
    model: onnx.ModelProto,
    subject: Subject,
    precision: str,
    dynamic: bool,
    form: str = "reference",
    sizes=None,
) -> None:
    props = artifact_metadata(subject, precision, form, dynamic=dynamic, **sizes_fact(sizes))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    model.producer_name, model.producer_version = "mobattn", __version__
    model.model_version = MODEL_VERSION
    model.doc_string = f"mobattn export of {subject.stem()}"


def validate_onnx(
    path: Path,
    module: torch.nn.Module,
    subject: Subject,
    precision: str,
    dynamic: bool = False,
    inputs: list[torch.Tensor] | None = None,
    run=None,
    sizes: tuple[int, ...] | None = None,
) -> Agreement:
    """onnxruntime against torch on random inputs (and, if dynamic, a second shape);
    ``run`` is an already loaded session's (a Runner's ``run``), else one is made here."""
    if run is None:
        session = ort_session(path)
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x.numpy()})[0]

    criterion = judged_as(precision, inputs is not None)
    if inputs is None:
        inputs = validation_set(subject, sizes, VALIDATION_INPUTS)
        if dynamic:
            inputs.append(subject.example_input(seed=150, shape=second_input_shape(subject)))
    agreement = agreement_on(run, module, inputs, criterion, "onnxruntime")
    agreement.add_note(shapes_note(inputs))
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
    int8_recipe: str | None = None,
    validation_images=None,
    int8_target: float | None = None,
    sizes: tuple[int, ...] | None = None,
) -> None:
    if form not in FORMS:
        raise MobattnError(f"--form must be {' or '.join(FORMS)} for ONNX, got '{form}'")
    if precision == "int8" and dynamic:
        raise MobattnError("--precision int8 calibrates at one input shape; drop --dynamic")
    check_sizes(subject, sizes, precision)
    check_recipe(precision, calibration, int8_recipe, STATIC_RECIPES)
    check_target(precision, calibration, int8_target)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise MobattnError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")


def export(
    subject: Subject,
    path: Path,
    precision: str = "fp32",
    dynamic: bool = False,
    simplify: bool = True,
    opset: int = DEFAULT_OPSET,
    calibration: list[np.ndarray] | None = None,
    form: str = "reference",
    int8_recipe: str | None = None,
    validation_images: list[np.ndarray] | None = None,
    int8_target: float | None = None,
    sizes: tuple[int, ...] | None = None,
) -> ExportResult:
    """Write ``path`` and return the facts of the export (the caller stages the path).

    ``form="mobile"`` exports the deployable form onnxruntime's NNAPI and Core ML
    providers take whole (see :mod:`.deploy`); it is validated against the reference
    module like any export. Every record carries onnxruntime's mobile usability verdict."""
    check_options(
        subject,
        precision,
        opset=opset,
        dynamic=dynamic,
        calibration=calibration,
        form=form,
        int8_recipe=int8_recipe,
        sizes=sizes,
    )
    sizes = check_sizes(subject, sizes)
    start = time.perf_counter()
    module = deployable(fold_for_inference(subject.module), form)
    raw = path.with_suffix(".raw.onnx")
    _torch_export(module, subject, raw, opset, dynamic, sizes)
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

        recipe = int8_recipe or DEFAULT_RECIPE
        if int8_target is None:
            model, quantization = quantize_int8(model, subject, calibration, path.parent, recipe)
        else:
            held_out = validation_images
            model, quantization = search(
                model, subject, calibration, held_out, path.parent, recipe, int8_target
            )
    _add_metadata(model, subject, precision, dynamic, form, sizes)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    seconds = time.perf_counter() - start
    inputs = validation_inputs(subject, calibration, validation_images) if precision == "int8" else None
    agreement = validate_onnx(path, subject.module, subject, precision, dynamic, inputs, sizes=sizes)
    if inputs:
        agreement.add_note(validation_note(inputs, validation_images))
    histogram = op_histogram(model)
    return ExportResult(
        seconds,
        histogram,
        agreement,
        {
            "form": form,
            "mobile_usability": mobile_usability(path),
            "opset": written_opset,
            "simplified": simplify,
            "dynamic": dynamic,
            **({"sizes": list(sizes)} if sizes else {}),
            "nodes_before_simplify": nodes_before,
            **({"quantization": quantization} if quantization else {}),
        },
    )


def load_runner(path: Path, threads: int = 1, device: str = "cpu", **options) -> Runner:
    """An onnxruntime session for ``path`` (``threads`` intra-op threads, one inter-op;
    ``options``: a backend's runtime options, :data:`.onnx_session.RUNTIME_OPTIONS`)."""
    check_runtime_options("onnx", options, RUNTIME_OPTIONS)
    try:
        session = ort_session(path, threads, providers_for(device), **options)
    except MobattnError:
        raise
    except Exception as exc:  # noqa: BLE001 - any load failure is a corrupt artifact
        raise MobattnError(f"{path} is not a valid ONNX model: {first_line(exc, 200)}") from None
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else (d or None) for d in spec.shape]
    dtype = "float16" if "float16" in spec.type else "float32"

    def feed(x) -> dict:
        return {spec.name: np.asarray(x, dtype=dtype)}

    def bind(x):
        fixed = feed(x)  # built once: the timed call converts nothing
        return lambda: session.run(None, fixed)

    return Runner(
        input_name=spec.name,
        input_shape=shape,
        input_dtype=dtype,
        bind=bind,
        run=lambda x: session.run(None, feed(x))[0],
        details={"providers": session.get_providers(), **({"runtime_options": options} if options else {})},
        metadata=dict(session.get_modelmeta().custom_metadata_map),
        op_profile=lambda x: onnxruntime_op_profile(path, feed(x), threads, **options),
        keep=[session],
    )


def precision_of(model: onnx.ModelProto) -> str:
    """What the graph is: ``int8`` with quantize/dequantize nodes or 8-bit initializers,
    ``fp16`` with half-precision initializers, else ``fp32``."""
    ops = {node.op_type for node in model.graph.node}
    types = {init.data_type for init in model.graph.initializer}
    if ops & {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
    } or types & {
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
    }:
        return "int8"
    return "fp16" if onnx.TensorProto.FLOAT16 in types else "fp32"


def file_precision(path: Path) -> str:
    """What the file's graph holds (:func:`precision_of`)."""
    try:
        return precision_of(onnx.load(str(path), load_external_data=False))
    except Exception as exc:  # noqa: BLE001 - an unreadable graph is a corrupt artifact
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None


def file_metadata(path: Path) -> dict:
    """The file's metadata properties (mobattn's exports name their subject there)."""
    try:
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:  # noqa: BLE001 - an unreadable graph is a corrupt artifact
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None


def validate_file(path: Path, subject: Subject, precision: str | None, inputs) -> tuple[Agreement, dict]:
    """An existing .onnx against ``subject`` (``mobattn validate``). The criterion is the
    one for what the graph is (or what the user states), never the file's own metadata,
    which is editable text; a claim that disagrees with the content is reported."""
    runner = load_runner(path)
    subject.check_artifact(path, runner.input_shape, runner.metadata)
    content = file_precision(path)
    criterion = precision or content
    facts = {"criterion": criterion, "content": content, "metadata": runner.metadata}
    claimed = runner.metadata.get("precision")
    if claimed is not None and claimed != content:
        facts["claim_disagrees"] = f"its metadata says {claimed!r}, its graph is {content}"
    sizes = parse_metadata(runner.metadata.get("sizes"))
    inputs, run = with_sizes(subject, inputs, sizes), runner.run
    agreement = validate_onnx(path, subject.module, subject, criterion, inputs=inputs, run=run, sizes=sizes)
    return agreement, facts


def inspect(path: Path, compute_plan: bool = False):
    """The graph's ops and ranks (after ONNX shape inference) and onnxruntime's mobile
    usability verdict (:mod:`.mobile_check`)."""
    from .inspection import Inspection, rank_histogram

    try:
        model = onnx.load(str(path))
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's input
        raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None
    rank_of = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in list(inferred.graph.value_info) + list(inferred.graph.output)
        if v.type.tensor_type.HasField("shape")
    }
    nodes = list(model.graph.node)
    ranks = [rank_of[n.output[0]] for n in nodes if n.output and n.output[0] in rank_of]
    return Inspection(
        path=str(path),
        format="onnx",
        op_histogram=dict(Counter(n.op_type for n in nodes).most_common()),
        ops_total=len(nodes),
        ranks=rank_histogram(ranks),
        mobile_usability=mobile_usability(path),
    )
