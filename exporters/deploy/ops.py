"""The few building blocks every deployable form is written with.

Each one is the same arithmetic as the torch call it replaces, written with ops the
mobile runtimes take: XNNPACK (ExecuTorch) has no ``sum`` and no ``pow`` other than
squaring, reduces only 4-D tensors over their two innermost axes, runs ``softmax`` on
the last axis only and multiplies rank-3 batches (``bmm``); onnxruntime's NNAPI and
Core ML providers have no ``ReduceL2``/``ReduceSum`` (NNAPI) and no ``Gelu``/``Erf``
(NNAPI).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Twin(nn.Module):
    """A deployable form of a reference module: it holds the reference (so its parameters,
    under ``ref.``) and computes the same function with other ops."""

    caveat: str | None = None  # what this twin could not do in its form, copied into records

    def __init__(self, ref: nn.Module):
        super().__init__()
        self.ref = ref


# form ("xnnpack", "ane") -> reference class -> its twin in that form
TWINS: dict[str, dict[type[nn.Module], type[Twin]]] = {"xnnpack": {}, "ane": {}}


def twin_of(reference: type[nn.Module], form: str):
    """Class decorator: the decorated Twin is ``reference``'s deployable form ``form``.
    Each mechanism's twins stand in its own file (``exporters/deploy/<mechanism>.py``)."""

    def wrap(cls: type[Twin]) -> type[Twin]:
        if reference in TWINS[form]:
            raise RuntimeError(f"{reference.__name__} has two {form} twins")
        TWINS[form][reference] = cls
        return cls

    return wrap


def sum_last(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(-1, keepdim=True)`` as a mean over the two innermost axes of a 4-D
    view, times the axis length (XNNPACK's global average pooling; ONNX ReduceMean)."""
    *lead, n = x.shape
    rows = x.reshape(1, -1, n, 1).mean(dim=(2, 3), keepdim=True)
    return rows.reshape(*lead, 1) * float(n)  # a float: an int scalar becomes a cast constant


def l2_norm_last(x: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.vector_norm(x, dim=-1, keepdim=True)``."""
    return torch.sqrt(sum_last(x * x))


def l2_normalize_last(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x / max(||x||, eps)`` over the last axis (``F.normalize``)."""
    return x / torch.clamp(l2_norm_last(x), min=eps)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * d) -> (B * heads, N, d): heads folded into the batch of a bmm."""
    B, N, C = x.shape
    return x.reshape(B, N, heads, C // heads).permute(0, 2, 1, 3).reshape(B * heads, N, C // heads)


def merge_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B * heads, N, d) -> (B, N, heads * d), the inverse of :func:`split_heads`."""
    BH, N, d = x.shape
    return x.reshape(BH // heads, heads, N, d).permute(0, 2, 1, 3).reshape(BH // heads, N, heads * d)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` on rank-3 (batch, tokens, d) tensors, written as
    two ``bmm`` and a last-axis softmax: no mask ops, no broadcasting matmul. The scale
    multiplies the queries (tokens x d), not the scores (tokens x tokens): XNNPACK has no
    fused scaled matmul, and scaling the scores cost MHSA 2.6 of 20 ms at 56x56 tokens on
    ExecuTorch (onnxruntime folds it into FusedMatMul)."""
    scores = torch.bmm(q * scale, k.transpose(1, 2))
    return torch.bmm(scores.softmax(dim=-1), v)


def attend_split(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """:func:`attend` for a batch of one, written as batch-2 ``bmm``: LiteRT's converter
    writes a batch-1 ``q k^T`` as FULLY_CONNECTED with a computed weight, which its XNNPACK
    delegate leaves to LiteRT's own kernels (HiLo's single-head Lo-Fi branch).

    An even number of queries is split in two rows of a batch against the same keys and
    values (a free reshape, and a copy of the small pooled keys and values); otherwise the
    channels are split in halves whose scores are summed, which costs a slice and an add
    of the whole score map (measured 0.95 of 3.6 ms for HiLo dim 64 at 56x56)."""
    if q.shape[1] % 2 == 0:
        rows = q.shape[1] // 2
        out = attend(q.reshape(2, rows, q.shape[-1]), torch.cat([k, k]), torch.cat([v, v]), scale)
        return out.reshape(1, 2 * rows, v.shape[-1])
    half = q.shape[-1] // 2
    qs = torch.cat([q[..., :half], q[..., half:]], dim=0)
    ks = torch.cat([k[..., :half], k[..., half:]], dim=0)
    both = torch.bmm(qs * scale, ks.transpose(1, 2))
    scores = both[:1] + both[1:]
    return torch.bmm(scores.softmax(dim=-1), v)


def chunks_last(x: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """``x.split(sizes, -1)`` as plain slices (``unbind``/``split`` lower to ops
    XNNPACK leaves to the portable kernels)."""
    parts, start = [], 0
    for size in sizes:
        parts.append(x[..., start : start + size])
        start += size
    return parts


# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + ...)) exp(-z^2), t = 1 / (1 + p z),
# |error| <= 1.5e-7 for z >= 0.
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


class ErfFreeGELU(nn.Module):
    """Exact (erf) GELU without ``Erf`` or ``Gelu``: NNAPI has neither.

    ``gelu(x) = x Phi(x) = relu(x) - |x| erfc(|x| / sqrt 2) / 2`` (one formula for both
    signs, with no cancellation for negative x), ``|x| = 2 relu(x) - x`` and erfc from
    A&S 7.1.26 (absolute error <= 1.5e-7, so gelu's is <= 7.5e-8 |x|; in fp32, with
    rounding, 2.7e-7 |x| over [-12, 12] against float64, less than torch's own fp32 GELU,
    which cancels for negative x). Only Relu, Mul, Add, Sub, Div and Exp, which every
    mobile provider takes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positive = torch.relu(x)
        a = positive * 2.0 - x
        z = a * (1.0 / math.sqrt(2.0))
        t = torch.ones((), dtype=x.dtype) / (1.0 + _P * z)  # a Div: NNAPI has no Reciprocal
        erfc = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4])))) * torch.exp(z * (z * -1.0))
        return positive - a * erfc * 0.5
