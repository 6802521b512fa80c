"""Kernels of the ML Program reference executor, one per MIL op type, written from the op
definitions in coremltools (``converters/mil/mil/ops/defs``): element-wise, activations,
reductions and norms, linear algebra, convolution and pooling. Each takes the op's inputs by
name and computes in float32; the executor rounds the result to the declared dtype.
Shape ops are in :mod:`.coreml_shape_kernels`."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mobattn.errors import MobattnError

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


@kernel("relu6")
def _relu6(x):
    return torch.clamp(_t(x), 0.0, 6.0)


@kernel("elu")
def _elu(x, alpha=1.0):
    return F.elu(_t(x), float(alpha))


@kernel("softplus")
def _softplus(x):
    return F.softplus(_t(x))


@kernel("sigmoid_hard")
def _sigmoid_hard(x, alpha=0.2, beta=0.5):
    return torch.clamp(float(alpha) * _t(x) + float(beta), 0.0, 1.0)


@kernel("thresholded_relu")
def _thresholded_relu(x, alpha=1.0):
    x = _t(x)
    return torch.where(x > float(alpha), x, torch.zeros_like(x))


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


def _prod(x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    for axis in sorted(dims, reverse=True):  # last axis first, so the others keep their index
        x = x.prod(axis, keepdim=keep)
    return x


KERNELS["reduce_prod"] = _reduce(_prod)
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


@kernel("einsum")
def _einsum(values, equation):
    """MIL's einsum: "nchw,nwhu->nchu" (and "chw,whu->chu") with broadcasting over the
    batch axes of size 1; torch.einsum broadcasts the same way."""
    a, b = (_t(v) for v in values)
    return torch.einsum(str(equation), a, b)


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
