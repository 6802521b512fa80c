"""A reference executor for Core ML ML Programs: runs an ``.mlpackage``'s ``main``
function on any OS, so every Core ML export is executed and compared with torch.

Core ML's own runtime exists on macOS only; coremltools' Linux wheel can still read an
ML Program and its weight blobs (``milproto.load``). This module walks the program's
operations in order and evaluates each with a small numpy/torch kernel written from the
MIL op definitions in coremltools (``converters/mil/mil/ops/defs``). Precision follows
the program: each op computes in float32 and rounds its outputs to their declared dtype
(so an fp16 program's rounding after every op, and its fp16 constants, are reproduced;
the Neural Engine's and GPU's internal accumulation precisions are not). Compressed
weights (``constexpr_*`` ops) are decompressed with coremltools' own definitions.

An op with no kernel here is never a pass: :func:`missing_kernels` names it and the
validation reports the artifact as unvalidated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mobattn.errors import MobattnError, first_line

from .coreml_kernels import KERNELS
from .coreml_shape_kernels import classify  # importing it registers the shape kernels
from .silence import quiet, quiet_native_stderr

# ----- the program ---------------------------------------------------------------------------

_NUMPY_DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float32,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "bool": np.bool_,
}


def _dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types

    dtype = var.dtype
    return types.builtin_to_string(dtype) if dtype is not None else "fp32"


def load_program(path: str | Path):
    """The MIL program of an ``.mlpackage`` (spec + weight blobs), or a one-line error."""
    path = Path(path)
    manifest = path / "Manifest.json"
    if not manifest.is_file():
        raise MobattnError(f"{path} is not an .mlpackage (no Manifest.json)")
    with quiet(), quiet_native_stderr():
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load

        try:
            spec = ct.utils.load_spec(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt package
            raise MobattnError(f"cannot read {path}: {first_line(exc)}") from None
        if spec.WhichOneof("Type") != "mlProgram":
            raise MobattnError(f"{path} holds a {spec.WhichOneof('Type')}, not an ML Program")
        weights = path / "Data" / "com.apple.CoreML" / "weights"
        try:
            program = load(
                spec, specification_version=spec.specificationVersion, file_weights_dir=str(weights)
            )
        except Exception as exc:  # noqa: BLE001
            raise MobattnError(f"cannot load the program of {path}: {first_line(exc)}") from None
    return spec, program


class ReferenceExecutor:
    """Runs the ``main`` function of an ML Program with the kernels above."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.spec, self.program = load_program(self.path)
        self.function = self.program.functions["main"]
        self.operations = list(self.function.operations)
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        self._constants: dict[str, np.ndarray] = {}

    def missing_kernels(self) -> list[str]:
        """Op types of this program that no kernel covers (sorted, each once)."""
        return sorted(
            {
                op.op_type
                for op in self.operations
                if op.op_type != "const"
                and not op.op_type.startswith("constexpr_")
                and op.op_type not in KERNELS
            }
        )

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs of ``main`` for ``feeds`` (input name -> array), as numpy arrays in their
        declared dtypes."""
        missing = self.missing_kernels()
        if missing:
            raise MobattnError(f"no reference kernel for {', '.join(missing)}")
        env: dict[str, np.ndarray] = {}
        for name, var in self.function.inputs.items():
            if name not in feeds:
                raise MobattnError(f"missing input '{name}'")
            env[name] = np.asarray(feeds[name]).astype(_NUMPY_DTYPES[_dtype_name(var)])
        for op in self.operations:
            self._run(op, env)
        return {name: env[name] for name in self.output_names}

    def _run(self, op, env: dict[str, np.ndarray]) -> None:
        if op.op_type == "classify":  # outputs a string and a dictionary, not tensors
            label, probabilities = classify(**{k: self._value(v, env) for k, v in op.inputs.items()})
            env[op.outputs[0].name], env[op.outputs[1].name] = label, probabilities
            return
        if op.op_type == "const" or op.op_type.startswith("constexpr_"):
            for out in op.outputs:
                env[out.name] = self._constant(op, out)
            return
        inputs = {}
        for name, value in op.inputs.items():
            if isinstance(value, list | tuple):
                inputs[name] = [self._value(v, env) for v in value]
            else:
                inputs[name] = self._value(value, env)
        result = KERNELS[op.op_type](**inputs)
        results = result if isinstance(result, list | tuple) else [result]
        for out, value in zip(op.outputs, results, strict=True):
            array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            env[out.name] = array.astype(_NUMPY_DTYPES[_dtype_name(out)])  # round to the declared dtype

    def _constant(self, op, out) -> np.ndarray:
        if out.name not in self._constants:
            value = out.val
            if value is None and hasattr(op, "materialized_val_inference"):
                value = op.materialized_val_inference()
            if value is None:
                raise MobattnError(f"no value for constant {out.name} ({op.op_type})")
            self._constants[out.name] = value
        return self._constants[out.name]

    @staticmethod
    def _value(var, env: dict[str, np.ndarray]):
        if var.name in env:
            value = env[var.name]
        elif var.val is not None:
            value = var.val
        else:
            raise MobattnError(f"the program reads {var.name} before it is computed")
        if isinstance(value, np.ndarray) and value.dtype.kind in "US":
            return str(value)
        return (
            value.item()
            if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biu"
            else value
        )
