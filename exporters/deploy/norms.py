"""LayerNorm and GroupNorm(1) as ops XNNPACK delegates (it has no normalisation kernel
but batch norm) and NNAPI takes: means as 4-D global average pooling, sqrt, div, mul, add."""

from __future__ import annotations

import torch
from torch import nn

from mobattn.models.mobilevit import GroupNorm1

from .ops import Twin, sum_last, twin_of


def mean_last(x: torch.Tensor) -> torch.Tensor:
    return sum_last(x) * (1.0 / x.shape[-1])


def std(variance: torch.Tensor, eps: float) -> torch.Tensor:
    """``sqrt(variance + eps)``, clamped at ``sqrt(eps)``: a no-op that keeps the ONNX
    exporter from rewriting ``x / sqrt(v)`` into ``x * Reciprocal(Sqrt(v))`` (NNAPI has
    no Reciprocal)."""
    return torch.clamp(torch.sqrt(variance + eps), min=eps**0.5)


def normalize_last(x: torch.Tensor, eps: float) -> torch.Tensor:
    centered = x - mean_last(x)
    return centered / std(mean_last(centered * centered), eps)


@twin_of(nn.LayerNorm, "xnnpack")
class DeployLayerNorm(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_last(x, self.ref.eps) * self.ref.weight + self.ref.bias


@twin_of(GroupNorm1, "xnnpack")
class DeployGroupNorm1(Twin):
    """GroupNorm with one group on (B, C, ...): statistics over everything but B."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = normalize_last(x.reshape(x.shape[0], 1, -1), self.ref.eps).reshape(x.shape)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return normed * self.ref.weight.reshape(shape) + self.ref.bias.reshape(shape)
