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

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mobattn.errors import MobattnError

from .silence import quiet, quiet_native_stderr

Kernel = Callable[..., object]
KERNELS: dict[str, Kernel] = {}


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    """Register a kernel for one or more MIL op types."""

    def register(fn: Kernel) -> Kernel:
        for name in names:
            KERNELS[name] = fn
        return fn

    return register


def _t(x) -> torch.Tensor:
    """An op input as a float32 (or integer) torch tensor."""
    array = np.asarray(x)
    if array.dtype == np.float16 or array.dtype == np.float64:
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


def _ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x).ravel()]


def _axes(axes, rank: int) -> list[int] | None:
    return None if axes is None else [a % rank for a in _ints(axes)]


# ----- elementwise ----------------------------------------------------------------------

_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "real_div": torch.div,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "pow": torch.pow,
    "equal": torch.eq,
    "not_equal": torch.ne,
    "greater": torch.gt,
    "greater_equal": torch.ge,
    "less": torch.lt,
    "less_equal": torch.le,
    "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
}
for _name, _fn in _BINARY.items():
    KERNELS[_name] = lambda x, y, _fn=_fn: _fn(_t(x), _t(y))


@kernel("floor_div")
def _floor_div(x, y):
    return torch.div(_t(x), _t(y), rounding_mode="floor")


_UNARY = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "sqrt": torch.sqrt,
    "exp": torch.exp,
    "abs": torch.abs,
    "erf": torch.erf,
    "sin": torch.sin,
    "cos": torch.cos,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "round": torch.round,
    "sign": torch.sign,
    "square": torch.square,
    "logical_not": torch.logical_not,
}
for _name, _fn in _UNARY.items():
    KERNELS[_name] = lambda x, _fn=_fn: _fn(_t(x))


@kernel("identity")
def _identity(x):
    return _t(x)


@kernel("rsqrt")
def _rsqrt(x, epsilon=1e-12):
    return torch.rsqrt(_t(x) + float(epsilon))


@kernel("inverse")
def _inverse(x, epsilon=1e-4):
    return 1.0 / (_t(x) + float(epsilon))


@kernel("log")
def _log(x, epsilon=1e-45):
    return torch.log(_t(x) + float(epsilon))


@kernel("clip")
def _clip(x, alpha, beta):
    return torch.clamp(_t(x), float(alpha), float(beta))


@kernel("gelu")
def _gelu(x, mode="EXACT"):
    x = _t(x)
    if mode == "EXACT":
        return F.gelu(x)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise MobattnError(f"gelu mode {mode!r} is not in the MIL spec")


@kernel("silu")
def _silu(x):
    return F.silu(_t(x))


@kernel("leaky_relu")
def _leaky_relu(x, alpha=0.01):
    return F.leaky_relu(_t(x), float(alpha))


@kernel("select")
def _select(cond, a, b):
    return torch.where(_t(cond).bool(), _t(a), _t(b))


@kernel("cast")
def _cast(x, dtype):
    return _t(x).to(
        {
            "fp16": torch.float16,
            "fp32": torch.float32,
            "int32": torch.int32,
            "bool": torch.bool,
            "int16": torch.int16,
            "int8": torch.int8,
            "uint8": torch.uint8,
        }[dtype]
    )


# ----- reductions and normalisation -------------------------------------------------------


def _reduce(fn: Callable[[torch.Tensor, list[int], bool], torch.Tensor]) -> Kernel:
    def run(x, axes=None, keep_dims=False):
        x = _t(x)
        dims = _axes(axes, x.dim()) or list(range(x.dim()))
        return fn(x, dims, bool(keep_dims))

    return run


KERNELS["reduce_sum"] = _reduce(lambda x, d, k: x.sum(d, keepdim=k))
KERNELS["reduce_mean"] = _reduce(lambda x, d, k: x.mean(d, keepdim=k))
KERNELS["reduce_max"] = _reduce(lambda x, d, k: x.amax(d, keepdim=k))
KERNELS["reduce_min"] = _reduce(lambda x, d, k: x.amin(d, keepdim=k))
KERNELS["reduce_prod"] = _reduce(lambda x, d, k: torch.prod(x.flatten(0), 0) if len(d) == x.dim() else x)
KERNELS["reduce_l2_norm"] = _reduce(lambda x, d, k: x.square().sum(d, keepdim=k).sqrt())
KERNELS["reduce_l1_norm"] = _reduce(lambda x, d, k: x.abs().sum(d, keepdim=k))
KERNELS["reduce_sum_square"] = _reduce(lambda x, d, k: x.square().sum(d, keepdim=k))
KERNELS["reduce_log_sum_exp"] = _reduce(lambda x, d, k: torch.logsumexp(x, d, keepdim=k))


@kernel("softmax")
def _softmax(x, axis=-1):
    return torch.softmax(_t(x), int(axis))


@kernel("l2_norm")
def _l2_norm(x, epsilon=1e-6):
    """MIL's l2_norm: over the last three axes, x / sqrt(sum(x^2) + epsilon)."""
    x = _t(x)
    return x / torch.sqrt(x.square().sum([-3, -2, -1], keepdim=True) + float(epsilon))


@kernel("layer_norm")
def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    x = _t(x)
    dims = _axes(axes, x.dim()) or list(range(x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = (x - mean).square().mean(dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + float(epsilon))
    if gamma is not None:
        y = y * _t(gamma)
    if beta is not None:
        y = y + _t(beta)
    return y


@kernel("batch_norm")
def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = _t(x)
    shape = [1, -1] + [1] * (x.dim() - 2)
    y = (x - _t(mean).reshape(shape)) / torch.sqrt(_t(variance).reshape(shape) + float(epsilon))
    if gamma is not None:
        y = y * _t(gamma).reshape(shape)
    if beta is not None:
        y = y + _t(beta).reshape(shape)
    return y


# ----- linear algebra and convolution -------------------------------------------------------


@kernel("linear")
def _linear(x, weight, bias=None):
    return F.linear(_t(x), _t(weight), None if bias is None else _t(bias))


@kernel("matmul")
def _matmul(x, y, transpose_x=False, transpose_y=False):
    a, b = _t(x), _t(y)
    if transpose_x:
        a = a.transpose(-1, -2)
    if transpose_y:
        b = b.transpose(-1, -2)
    return torch.matmul(a, b)


def _same_padding(size: int, kernel_size: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    """MIL's ``same`` padding: output = ceil(size / stride); the odd pixel goes after the
    input (``same``) or before it (``same_lower``)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    before = total - total // 2 if lower else total // 2
    return before, total - before


def _spatial_padding(x, kernel_sizes, strides, dilations, pad_type, pad) -> list[int]:
    """Padding per spatial axis as [(before, after), ...] in the input's axis order."""
    spatial = x.dim() - 2
    if pad_type == "valid":
        return [(0, 0)] * spatial
    if pad_type == "custom":
        values = _ints(pad)
        return [(values[2 * i], values[2 * i + 1]) for i in range(spatial)]
    if pad_type in ("same", "same_lower"):
        return [
            _same_padding(x.shape[2 + i], kernel_sizes[i], strides[i], dilations[i], pad_type == "same_lower")
            for i in range(spatial)
        ]
    raise MobattnError(f"pad_type {pad_type!r} is not in the MIL spec")


def _pad_spatial(x: torch.Tensor, pads: list[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    flat = [p for before_after in reversed(pads) for p in before_after]  # F.pad: last axis first
    return F.pad(x, flat, value=value) if any(flat) else x


@kernel("conv")
def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, w = _t(x), _t(weight)
    spatial = x.dim() - 2
    strides = _ints(strides) if strides is not None else [1] * spatial
    dilations = _ints(dilations) if dilations is not None else [1] * spatial
    pads = _spatial_padding(x, list(w.shape[2:]), strides, dilations, pad_type, pad)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    b = None if bias is None else _t(bias)
    return conv(_pad_spatial(x, pads), w, b, stride=strides, dilation=dilations, groups=int(groups))


def _pool_geometry(x: torch.Tensor, kernel_sizes, strides, pad_type, pad):
    """(kernel sizes, strides, padding per spatial axis) of a MIL pooling op."""
    spatial = x.dim() - 2
    kernel_sizes = _ints(kernel_sizes)
    strides = _ints(strides) if strides is not None else [1] * spatial
    return kernel_sizes, strides, _spatial_padding(x, kernel_sizes, strides, [1] * spatial, pad_type, pad)


@kernel("avg_pool")
def _avg_pool(
    x,
    kernel_sizes,
    strides=None,
    pad_type="valid",
    pad=None,
    exclude_padding_from_average=False,
    ceil_mode=False,
):
    x = _t(x)
    kernel_sizes, strides, pads = _pool_geometry(x, kernel_sizes, strides, pad_type, pad)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[x.dim() - 2]
    area = math.prod(kernel_sizes)
    summed = pool(_pad_spatial(x, pads), kernel_sizes, strides, ceil_mode=bool(ceil_mode)) * area
    if exclude_padding_from_average:
        ones = _pad_spatial(torch.ones_like(x[:1, :1]), pads)
        return summed / (pool(ones, kernel_sizes, strides, ceil_mode=bool(ceil_mode)) * area)
    return summed / area


@kernel("max_pool")
def _max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    x = _t(x)
    kernel_sizes, strides, pads = _pool_geometry(x, kernel_sizes, strides, pad_type, pad)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[x.dim() - 2]
    return pool(_pad_spatial(x, pads, float("-inf")), kernel_sizes, strides, ceil_mode=bool(ceil_mode))


# ----- shapes -------------------------------------------------------------------------------


@kernel("reshape")
def _reshape(x, shape):
    return _t(x).reshape(_ints(shape))


@kernel("transpose")
def _transpose(x, perm):
    return _t(x).permute(_ints(perm))


@kernel("squeeze")
def _squeeze(x, axes=None):
    x = _t(x)
    if axes is None:
        return x.squeeze()
    for axis in sorted(_axes(axes, x.dim()), reverse=True):
        x = x.squeeze(axis)
    return x


@kernel("expand_dims")
def _expand_dims(x, axes):
    x = _t(x)
    rank = x.dim() + len(_ints(axes))
    for axis in sorted(a % rank for a in _ints(axes)):
        x = x.unsqueeze(axis)
    return x


@kernel("split")
def _split(x, num_splits=None, split_sizes=None, axis=0):
    x = _t(x)
    axis = int(axis) % x.dim()
    if split_sizes is not None:
        return list(torch.split(x, _ints(split_sizes), dim=axis))
    return list(torch.chunk(x, int(num_splits), dim=axis))


@kernel("concat")
def _concat(values, axis, interleave=False):
    tensors = [_t(v) for v in values]
    axis = int(axis) % tensors[0].dim()
    if interleave:
        return torch.stack(tensors, axis + 1).flatten(axis, axis + 1)
    return torch.cat(tensors, axis)


@kernel("stack")
def _stack(values, axis):
    return torch.stack([_t(v) for v in values], int(axis))


@kernel("tile")
def _tile(x, reps):
    return _t(x).repeat(_ints(reps))


@kernel("slice_by_index")
def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = _t(x)
    rank = x.dim()
    begin, end = _ints(begin), _ints(end)
    stride = _ints(stride) if stride is not None else [1] * rank
    begin_mask = (
        [bool(v) for v in np.asarray(begin_mask).ravel()] if begin_mask is not None else [False] * rank
    )
    end_mask = [bool(v) for v in np.asarray(end_mask).ravel()] if end_mask is not None else [False] * rank
    squeeze = (
        [bool(v) for v in np.asarray(squeeze_mask).ravel()] if squeeze_mask is not None else [False] * rank
    )
    index = []
    for axis in range(rank):
        if squeeze[axis]:
            index.append(begin[axis])
            continue
        start = None if begin_mask[axis] else begin[axis]
        stop = None if end_mask[axis] else end[axis]
        index.append(slice(start, stop, stride[axis]))
    return torch.from_numpy(np.ascontiguousarray(x.numpy()[tuple(index)]))


@kernel("slice_by_size")
def _slice_by_size(x, begin, size):
    x = _t(x)
    index = tuple(
        slice(b, None if s == -1 else b + s) for b, s in zip(_ints(begin), _ints(size), strict=True)
    )
    return x[index]


@kernel("pad")
def _pad(x, pad, mode="constant", constant_val=0.0):
    x = _t(x)
    pairs = _ints(pad)
    flat = []
    for i in range(len(pairs) // 2 - 1, -1, -1):  # F.pad wants the last axis first
        flat += [pairs[2 * i], pairs[2 * i + 1]]
    if mode == "constant":
        return F.pad(x, flat, value=float(constant_val))
    return F.pad(x, flat, mode={"reflect": "reflect", "replicate": "replicate"}[mode])


@kernel("shape")
def _shape(x):
    return torch.tensor(list(np.asarray(x).shape), dtype=torch.int32)


@kernel("fill")
def _fill(shape, value=0.0):
    return torch.full(_ints(shape), float(value))


def _classify(probabilities, classes):
    """MIL's classify: the top class's label, and the probabilities (kept as an array in
    the order of ``classes``; Core ML returns them as a label -> probability dictionary)."""
    probabilities = np.asarray(probabilities, np.float32)
    return np.array(classes[int(np.argmax(probabilities.ravel()))]), probabilities.reshape(1, -1)


KERNELS["classify"] = _classify


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
            raise MobattnError(f"cannot read {path}: {str(exc).strip().splitlines()[0][:160]}") from None
        if spec.WhichOneof("Type") != "mlProgram":
            raise MobattnError(f"{path} holds a {spec.WhichOneof('Type')}, not an ML Program")
        weights = path / "Data" / "com.apple.CoreML" / "weights"
        try:
            program = load(
                spec, specification_version=spec.specificationVersion, file_weights_dir=str(weights)
            )
        except Exception as exc:  # noqa: BLE001
            raise MobattnError(
                f"cannot load the program of {path}: {str(exc).strip().splitlines()[0][:160]}"
            ) from None
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

    def op_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.operations:
            counts[op.op_type] = counts.get(op.op_type, 0) + 1
        return counts

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
            label, probabilities = _classify(**{k: self._value(v, env) for k, v in op.inputs.items()})
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
