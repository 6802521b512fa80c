"""External Attention's deployable form: the softmax over tokens runs on the last axis
of the transposed scores (XNNPACK's softmax takes no other), the l1 sum over memory
units through a 4-D mean."""

from __future__ import annotations

import torch

from mobattn.attention.external import ExternalAttention

from .ane import FP16_TINY, as_sequence, pointwise
from .ops import Twin, merge_heads, split_heads, sum_last, twin_of


@twin_of(ExternalAttention, "xnnpack")
class DeployExternal(Twin):
    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        ref = self.ref
        x = split_heads(ref.trans_dims(x), ref.num_heads)  # (B*heads, N, d)
        attn = ref.linear_0(x).transpose(1, 2).softmax(dim=-1).transpose(1, 2)  # over tokens
        attn = attn / (1e-9 + sum_last(attn))  # l1 over memory units
        return ref.proj(merge_heads(ref.linear_1(attn), ref.num_heads))


@twin_of(ExternalAttention, "ane")
class AneExternal(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        heads, k = ref.num_heads, ref.k
        wide = pointwise(ref.trans_dims, as_sequence(x))  # (B, 4C, 1, N), heads on C
        attn = pointwise(ref.linear_0, wide).softmax(dim=-1)  # over tokens
        B, _, _, N = attn.shape
        grouped = attn.reshape(B, heads, k, N)
        grouped = grouped / (FP16_TINY + grouped.sum(dim=2, keepdim=True))  # l1 over memory units
        out = pointwise(ref.linear_1, grouped.reshape(B, heads * k, 1, N))
        return pointwise(ref.proj, out).reshape(x.shape)
