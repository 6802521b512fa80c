"""External Attention's deployable form: the softmax over tokens runs on the last axis
of the transposed scores (XNNPACK's softmax takes no other), the l1 sum over memory
units through a 4-D mean."""

from __future__ import annotations

import torch

from .ops import Twin, merge_heads, split_heads, sum_last


class DeployExternal(Twin):
    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        ref = self.ref
        x = split_heads(ref.trans_dims(x), ref.num_heads)  # (B*heads, N, d)
        attn = ref.linear_0(x).transpose(1, 2).softmax(dim=-1).transpose(1, 2)  # over tokens
        attn = attn / (1e-9 + sum_last(attn))  # l1 over memory units
        return ref.proj(merge_heads(ref.linear_1(attn), ref.num_heads))
