"""Shape, layout and classifier kernels of the ML Program reference executor (see
:mod:`.coreml_kernels` for the rest)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .coreml_kernels import KERNELS, _axes, _ints, _t, kernel

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


@kernel("gather")
def _gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    """Entries of ``x`` along ``axis`` (a flexible-shape program gathers its input's
    height and width out of ``shape``); negative indices count from the end."""
    if int(batch_dims) != 0:
        raise ValueError("gather with batch_dims is not in the reference executor")
    return torch.from_numpy(np.ascontiguousarray(np.take(np.asarray(x), np.asarray(indices), axis=int(axis))))


@kernel("fill")
def _fill(shape, value=0.0):
    return torch.full(_ints(shape), float(value))


def classify(probabilities, classes):
    """MIL's classify: the top class's label, and the probabilities (kept as an array in
    the order of ``classes``; Core ML returns them as a label -> probability dictionary)."""
    probabilities = np.asarray(probabilities, np.float32)
    return np.array(classes[int(np.argmax(probabilities.ravel()))]), probabilities.reshape(1, -1)


KERNELS["classify"] = classify
