"""Separable self-attention's deployable form: the query scores' softmax on the last
axis, the weighted sum over tokens as a 4-D mean (XNNPACK has no ``sum``), q/k/v as
slices."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobattn.attention.separable import SeparableSelfAttention
from mobattn.models.mobilevit import LinearSelfAttention

from .ane import pointwise
from .ops import Twin, chunks_last, sum_last, twin_of


@twin_of(SeparableSelfAttention, "xnnpack")
class DeploySeparable(Twin):
    """The registered mechanism on (B, N, C) tokens."""

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        ref = self.ref
        B, N, C = x.shape
        query, key, value = chunks_last(ref.qkv_proj(x), (1, C, C))
        scores = query.reshape(B, 1, N).softmax(dim=-1)  # tokens on the last axis
        context = torch.bmm(scores, key)  # (B, 1, C): sum over tokens of score * key
        return ref.out_proj(F.relu(value) * context)


@twin_of(LinearSelfAttention, "xnnpack")
class DeployLinearSelfAttention(Twin):
    """MobileViTv2's form of it on (B, C, P, N) patches, tokens on the last axis. Worked
    on rank-3 views: XNNPACK keeps 4-D tensors channels-last inside a delegate, and
    slicing or broadcasting along their channel axis there gave wrong results."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        B, _, P, N = x.shape
        d = ref.dim
        qkv = ref.qkv_proj(x).reshape(B, 1 + 2 * d, P * N)
        query, key, value = qkv[:, :1], qkv[:, 1 : 1 + d], qkv[:, 1 + d :]
        scores = query.reshape(B, P, N).softmax(dim=-1).reshape(B, 1, P * N)
        context = sum_last((key * scores).reshape(B, d * P, N))  # (B, d*P, 1)
        out = F.relu(value).reshape(B, d * P, N) * context
        return ref.out_proj(out.reshape(B, d, P, N))


@twin_of(SeparableSelfAttention, "ane")
class AneSeparable(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        B, _, H, W = x.shape
        query, key, value = pointwise(ref.qkv_proj, x).split([1, ref.dim, ref.dim], dim=1)
        scores = query.reshape(B, 1, 1, H * W).softmax(dim=-1).reshape(B, 1, H, W)  # over tokens
        context = (key * scores).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return pointwise(ref.out_proj, F.relu(value) * context)
