"""Separable self-attention (MobileViTv2: Mehta & Rastegari, "Separable Self-attention
for Mobile Vision Transformers", TMLR 2023).

One query score per token, softmax over tokens, a single context vector (the
score-weighted sum of the keys) multiplied into ReLU'd values: linear in the number of
tokens. Parameter names follow timm's ``LinearSelfAttention`` (``qkv_proj`` makes the
1-channel query, the keys and the values in one projection; ``out_proj``); MobileViTv2
applies it to each of the 2x2 patch positions of a map, here it mixes the H*W tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobattn.errors import MobattnError

from .base import Cost, TokenMixer, check_positive, check_tokens, count_params
from .registry import register_attention


def separable_attention(qkv: torch.Tensor, dim: int, token_axis: int, channel_axis: int) -> torch.Tensor:
    """The mechanism on an already projected ``qkv`` (1 + 2 * dim channels along
    ``channel_axis``), tokens along ``token_axis``; shared with MobileViTv2's blocks."""
    query, key, value = qkv.split([1, dim, dim], dim=channel_axis)
    scores = F.softmax(query, dim=token_axis)
    context = (key * scores).sum(dim=token_axis, keepdim=True)
    return F.relu(value) * context


@register_attention("separable")
class SeparableSelfAttention(TokenMixer):
    """Cost leaves out: the softmax, the weighted sum over tokens, the ReLU and the
    products with the context vector."""

    summary = "MobileViTv2: one score per token, one context vector; linear in N"

    @classmethod
    def swap_kwargs(cls, dim: int) -> dict:
        return {"num_heads": 1}  # one context vector: no heads

    def __init__(self, dim: int, num_heads: int = 1):
        super().__init__()
        check_positive(dim=dim, num_heads=num_heads)
        if num_heads != 1:
            raise MobattnError("separable attention has one context vector: it takes no heads (num_heads=1)")
        self.dim = dim
        self.qkv_proj = nn.Linear(dim, 1 + 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        check_tokens(x, hw)
        return self.out_proj(separable_attention(self.qkv_proj(x), self.dim, token_axis=1, channel_axis=2))

    def cost(self, hw: tuple[int, int]) -> Cost:
        n = hw[0] * hw[1]
        return Cost(macs=n * (self.dim * (1 + 2 * self.dim) + self.dim * self.dim), params=count_params(self))
