"""LiteRT (formerly TensorFlow Lite), the runtime most Android apps ship: Google's
``litert-torch`` converter writes the ``.tflite``; ``ai-edge-litert``'s interpreter with
its XNNPACK delegate (the CPU path Android uses) runs it.

Optional: ``pip install 'mobattn[litert]'`` (``make`` installs it); without it, asking for
LiteRT is one line that says how to get it.

The module converted is the ``litert`` deployable form (:mod:`.deploy`): the ``xnnpack`` form
ExecuTorch uses, with no batch-1 ``bmm``; int8 ops XNNPACK takes only in float are computed in
float between int8 tensors (:mod:`.litert_float_ops`). The record counts the ops the delegate
took and names every op left on LiteRT's default kernels (:func:`delegation`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError, first_line

from .agreement import Agreement, agreement_on, judged_as
from .calibration import validation_inputs, validation_note
from .deploy import deployable
from .fold import fold_for_inference
from .int8_recipe import DEFAULT_RECIPE, check_recipe, check_target
from .litert_dynamic import DynamicFile
from .litert_float_ops import float_between_file
from .litert_metadata import read_metadata, write_metadata
from .litert_profile import litert_op_profile
from .pt2e_dynamic import litert_quant_config
from .pt2e_int8 import calibration_inputs, described_inputs
from .pt2e_search import quantize_for_target
from .record import ExportResult, Runner, check_runtime_options
from .silence import quiet, quiet_native_stderr
from .sizes import (
    check_sizes,
    flexible_shape,
    parse_metadata,
    shapes_note,
    signature,
    sizes_fact,
    text,
    validation_set,
    with_sizes,
)
from .subject import Subject, artifact_metadata

INSTALL_HINT = "LiteRT export needs litert-torch and ai-edge-litert: pip install 'mobattn[litert]'"
FORM = "litert"
VALIDATION_INPUTS = 3
RUNTIME_OPTIONS: dict = {}  # what a benchmark backend may set for its runner: nothing yet


def require_litert() -> None:
    """One line, naming the extra, when the converter or the interpreter is missing."""
    try:
        with quiet(), quiet_native_stderr():
            import ai_edge_litert.interpreter  # noqa: F401
            import litert_torch  # noqa: F401
    except ImportError:
        raise MobattnError(INSTALL_HINT) from None


def require_interpreter() -> None:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        raise MobattnError("running a .tflite needs ai-edge-litert: pip install 'mobattn[litert]'") from None


def interpreter(path: Path, threads: int = 1):
    """The file in LiteRT's interpreter, tensors allocated; XNNPACK (applied by default)
    sized to ``threads``."""
    require_interpreter()
    from ai_edge_litert.interpreter import Interpreter

    try:
        with quiet_native_stderr():
            loaded = Interpreter(model_path=str(path), num_threads=threads)
            loaded.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - any load failure is a corrupt artifact
        raise MobattnError(f"{path} is not a valid LiteRT model: {first_line(exc)}") from None
    return loaded


def delegation(loaded) -> dict:
    """How much of the graph XNNPACK took. LiteRT lists the original ops and, after them,
    one ``DELEGATE`` node per partition; a partition is every op between the delegate
    node's inputs and its outputs, so an op outside every partition runs on LiteRT's
    default kernels."""
    ops = loaded._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in originals for t in op["outputs"]}
    by_index = {op["index"]: op for op in originals}
    taken: set[int] = set()
    for node in delegates:
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            index = producer.get(tensor)
            if tensor in boundary or index is None or index in taken:
                continue
            taken.add(index)
            stack += [int(t) for t in by_index[index]["inputs"] if t >= 0]
    left = Counter(op["op_name"] for op in originals if op["index"] not in taken)
    return {
        "delegated_subgraphs": len(delegates),
        "delegated_ops": len(taken),
        "not_delegated_ops": sum(left.values()),
        "not_delegated": dict(left.most_common()),
    }


def op_histogram(loaded) -> dict[str, int]:
    return dict(Counter(op["op_name"] for op in loaded._get_ops_details() if op["op_name"] != "DELEGATE"))


def _to_input(detail: dict, x) -> np.ndarray:
    """``x`` as the model's input tensor: a quantized (int8) input is quantized with the
    scale and zero point the file carries, as an app feeding a full-int8 model does."""
    x = np.asarray(x, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale) + zero_point, info.min, info.max)
    return np.ascontiguousarray(x.astype(detail["dtype"]))


def _from_output(detail: dict, y: np.ndarray) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        return (y.astype(np.float32) - zero_point) * scale
    return y.copy()


def _run_function(loaded):
    """Input -> first output in float, for one interpreter (not thread-safe, as LiteRT's is not)."""
    inp, out = loaded.get_input_details()[0], loaded.get_output_details()[0]

    def run(x):
        loaded.set_tensor(inp["index"], _to_input(inp, x))
        loaded.invoke()
        return _from_output(out, loaded.get_tensor(out["index"]))

    return run


def _signature_runners(loaded, sizes: tuple[int, ...]) -> dict[int, tuple]:
    """A file of several sizes: per size, its signature's runner and input name."""
    runners = {}
    for size in sizes:
        runner = loaded.get_signature_runner(signature(size))
        runners[size] = (runner, next(iter(runner.get_input_details())))
    return runners


def _sized_run_function(loaded, sizes: tuple[int, ...]):
    """Input -> first output through the signature of the input's size; an input of
    another size is one line naming the sizes the file takes."""
    runners = _signature_runners(loaded, sizes)

    def bind(x):
        size = np.shape(x)[-1]
        if size not in runners:
            raise MobattnError(f"this file takes sizes {text(sizes)}, not {size}")
        runner, name = runners[size]
        feed = {name: np.ascontiguousarray(np.asarray(x, dtype=np.float32))}
        return lambda: next(iter(runner(**feed).values()))

    return bind, lambda x: bind(x)()


def validate_tflite(
    path: Path,
    subject: Subject,
    precision: str,
    inputs: list[torch.Tensor] | None = None,
    run=None,
    sizes: tuple[int, ...] | None = None,
) -> Agreement:
    """LiteRT's interpreter (XNNPACK) against torch on random inputs at every size (or ``inputs``)."""
    if run is None:
        run = _run_function(interpreter(path))
    criterion = judged_as(precision, bool(inputs))
    inputs = inputs or validation_set(subject, sizes, VALIDATION_INPUTS)
    agreement = agreement_on(lambda x: run(x.numpy()), subject.module, inputs, criterion, "litert")
    agreement.add_note("LiteRT interpreter (XNNPACK) vs torch")
    if sizes:
        agreement.add_note(f"{shapes_note(inputs)} (one signature per size)")
    return agreement


def check_options(
    subject: Subject,
    precision: str,
    calibration=None,
    int8_recipe: str | None = None,
    int8_target: float | None = None,
    sizes: tuple[int, ...] | None = None,
    **_,
) -> None:
    require_litert()
    if precision not in ("fp32", "int8"):
        raise MobattnError(f"--to litert takes --precision fp32 or int8, not '{precision}'")
    check_recipe(precision, calibration, int8_recipe)
    check_target(precision, calibration, int8_target)
    check_sizes(subject, sizes, precision)
    if precision == "int8":
        try:
            import executorch.backends.xnnpack.quantizer  # noqa: F401
        except ImportError:
            raise MobattnError(
                "LiteRT int8 quantizes with ExecuTorch's XNNPACK quantizer: pip install 'mobattn[executorch]'"
            ) from None


def _quantized(module, subject: Subject, calibration, recipe: str | None, target=None, validation=None):
    """The module quantized in pt2e (:mod:`.pt2e_int8`, weights' quantize ops kept for the
    converter) and the converter's quant config; for the ``dynamic`` recipe, the file
    itself (:class:`.litert_dynamic.DynamicFile`) and no config."""
    inputs = calibration_inputs(subject, calibration)
    held_out = calibration_inputs(subject, validation) if validation else None
    chosen = dict(target=target, held_out=held_out, runtime="litert", recipe_given=recipe is not None)
    quantized, facts = quantize_for_target(
        module, subject.example_input(), inputs, recipe or DEFAULT_RECIPE, False, **chosen
    )
    dynamic = facts.get("recipe") == "dynamic"
    config = None if dynamic else litert_quant_config()  # a dynamic result is a file already
    facts = {
        "calibration": described_inputs(calibration, inputs),
        **facts,
        "io": "float (each layer quantizes its input)" if dynamic else "int8 (scale, zero point in the file)",
    }
    return quantized, config, facts


def export(
    subject: Subject,
    path: Path,
    precision: str = "fp32",
    calibration: Iterable[np.ndarray] | None = None,
    int8_recipe: str | None = None,
    validation_images: list[np.ndarray] | None = None,
    int8_target: float | None = None,
    sizes: tuple[int, ...] | None = None,
) -> ExportResult:
    """Write ``path`` (.tflite) and return the facts of the export. int8 is full integer:
    its input and output are int8 too, quantized and dequantized by the runner. With
    ``sizes``, one signature per size (:mod:`.sizes`)."""
    options = dict(calibration=calibration, int8_recipe=int8_recipe, int8_target=int8_target, sizes=sizes)
    check_options(subject, precision, **options)
    sizes = check_sizes(subject, sizes)
    calibration = list(calibration) if calibration is not None else None
    import litert_torch

    start = time.perf_counter()
    module = deployable(fold_for_inference(subject.module), FORM).eval()
    example = subject.example_input()
    quantization = None
    with quiet(), quiet_native_stderr(), torch.no_grad():
        options = {}
        if precision == "int8":
            module, options["quant_config"], quantization = _quantized(
                module, subject, calibration, int8_recipe, int8_target, validation_images
            )
        if isinstance(module, DynamicFile):  # quantized on the float file (.litert_dynamic)
            path.write_bytes(module.content)
        else:
            edge = _signatures(litert_torch, module, subject, sizes) if sizes else None
            edge = edge or litert_torch.convert(module, (example,), **options)
            edge.export(str(path))
            if quantization:  # int8 GELUs and the like: computed in float on XNNPACK
                quantization["float_between_int8"] = float_between_file(path)
        write_metadata(path, artifact_metadata(subject, precision, FORM, **sizes_fact(sizes)))
    seconds = time.perf_counter() - start
    loaded = interpreter(path)
    report = delegation(loaded)  # of the first signature, where a file has several
    images = validation_inputs(subject, calibration, validation_images) if precision == "int8" else None
    run = _sized_run_function(loaded, sizes)[1] if sizes else _run_function(loaded)
    agreement = validate_tflite(path, subject, precision, images, run=run, sizes=sizes)
    if images:
        agreement.add_note(validation_note(images, validation_images))
    histogram = {"delegated": report["delegated_ops"], **report["not_delegated"]}
    details = {"backend": "XNNPACK", "form": FORM, **report}
    if sizes:
        details["sizes"] = list(sizes)
    if quantization:
        details["quantization"] = quantization
    return ExportResult(seconds, histogram, agreement, details)


def signature_sizes(loaded) -> tuple[int, ...] | None:
    """The sizes of a file of one signature per size (``size_224``, ...), read from the
    loaded interpreter; None for a file of one size."""
    keys = list(loaded.get_signature_list())
    if len(keys) < 2 or not all(k.startswith("size_") and k[5:].isdigit() for k in keys):
        return None
    return tuple(sorted(int(k[5:]) for k in keys))


def _signatures(litert_torch, module, subject: Subject, sizes: tuple[int, ...]):
    """One signature per size, converted together (the weights are stored once)."""
    converter = litert_torch
    for size in sizes:
        x = subject.example_input(shape=(*subject.input_shape[:2], size, size))
        converter = converter.signature(signature(size), module, (x,))
    return converter.convert()


def load_runner(path: Path, threads: int = 1, device: str = "cpu", **options) -> Runner:
    """The model in LiteRT's interpreter, XNNPACK sized to ``threads`` (no runtime options
    yet)."""
    check_runtime_options("litert", options, RUNTIME_OPTIONS)
    if device != "cpu":
        raise MobattnError(f"LiteRT runs on cpu here, not {device}")
    loaded = interpreter(path, threads)
    detail = loaded.get_input_details()[0]
    sizes = signature_sizes(loaded)  # from the loaded file: no second read for the row's load time
    run = _run_function(loaded)

    def bind(x):
        array = _to_input(detail, x)
        index, out = detail["index"], loaded.get_output_details()[0]["index"]

        def call():
            loaded.set_tensor(index, array)
            loaded.invoke()
            return loaded.get_tensor(out)

        return call

    def op_profile(x):
        at = sizes.index(np.shape(x)[-1]) if sizes and np.shape(x)[-1] in sizes else 0
        return litert_op_profile(path, _to_input(detail, x), threads, signature_index=at)

    if sizes:  # a signature per size: the input's size picks it
        bind, run = _sized_run_function(loaded, sizes)
    return Runner(
        input_name=detail["name"],
        input_shape=flexible_shape([int(d) for d in detail["shape"]], sizes),
        input_dtype=np.dtype(detail["dtype"]).name,
        bind=bind,
        run=run,
        details={"runtime": "LiteRT (XNNPACK)"},
        keep=[loaded],
        op_profile=op_profile,
    )


def precision_of(loaded) -> str:
    """What the file is, read from its tensors (never from metadata): int8 when any
    tensor holds int8 values."""
    kinds = {np.dtype(t["dtype"]).name for t in loaded.get_tensor_details()}
    return "int8" if "int8" in kinds else "fp32"


def file_precision(path: Path) -> str:
    """What the file's tensors hold (:func:`precision_of`)."""
    return precision_of(interpreter(path))


def validate_file(path: Path, subject: Subject, precision: str | None, inputs) -> tuple[Agreement, dict]:
    """An existing .tflite against ``subject`` (``mobattn validate``), judged as what its
    tensors are unless ``precision`` says otherwise."""
    runner = load_runner(path)
    metadata = read_metadata(path)
    subject.check_artifact(path, runner.input_shape, metadata)
    content = precision_of(runner.keep[0])
    criterion = precision or content
    sizes = parse_metadata(metadata.get("sizes"))
    inputs = with_sizes(subject, inputs, sizes)
    agreement = validate_tflite(path, subject, criterion, inputs=inputs, run=runner.run, sizes=sizes)
    facts = {"criterion": criterion, "content": content, "delegation": delegation(runner.keep[0])}
    return agreement, facts


def inspect(path: Path, compute_plan: bool = False):
    """The model's ops, and which of them XNNPACK's delegate leaves to LiteRT's kernels."""
    from .inspection import Inspection

    loaded = interpreter(path)
    ops = op_histogram(loaded)
    return Inspection(
        path=str(path),
        format="litert",
        op_histogram=ops,
        ops_total=sum(ops.values()),
        delegation=delegation(loaded),
    )


def file_metadata(path: Path) -> dict:
    """The pairs mobattn wrote into the flatbuffer's ``mobattn`` metadata entry (its subject)."""
    return read_metadata(path)
