"""External Attention (EANet, "Beyond Self-attention: External Attention using Two
Linear Layers for Visual Tasks", TPAMI 2022).

Attention against two small learnable memories shared by all samples, so the cost is
linear in the number of tokens. Parameter names follow the official code.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Cost, TokenMixer, check_divisible, check_positive, check_tokens, count_params
from .registry import register_attention


@register_attention("external")
class ExternalAttention(TokenMixer):
    """Official multi-head External Attention on (B, N, C) tokens.

    Channels are expanded by ``coef = 4`` (``trans_dims``), split into
    ``4 * num_heads`` heads, each attending to ``256 // coef = 64`` memory units
    (``linear_0`` is the key memory, ``linear_1`` the value memory). The double
    normalisation is the official one: softmax over tokens, then l1 over memory units.

    Cost leaves out: the softmax, the l1 normalisation and the bias adds.
    """

    summary = "EANet: attention to two learned memories; linear in N"

    coef = 4

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__()
        check_divisible(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads * self.coef
        self.k = 256 // self.coef
        head_dim = dim * self.coef // self.num_heads
        self.trans_dims = nn.Linear(dim, dim * self.coef)
        self.linear_0 = nn.Linear(head_dim, self.k)
        self.linear_1 = nn.Linear(self.k, head_dim)
        self.proj = nn.Linear(dim * self.coef, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C, _, _ = check_tokens(x, hw)
        x = self.trans_dims(x).reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        attn = self.linear_0(x).softmax(dim=-2)  # over tokens
        attn = attn / (1e-9 + attn.sum(dim=-1, keepdim=True))  # l1 over memory units
        x = self.linear_1(attn).permute(0, 2, 1, 3).reshape(B, N, -1)
        return self.proj(x)

    def cost(self, hw: tuple[int, int]) -> Cost:
        n = hw[0] * hw[1]
        wide = self.dim * self.coef
        macs = n * (self.dim * wide + 2 * wide * self.k + wide * self.dim)
        return Cost(macs=macs, params=count_params(self))


class ExternalAttentionBlock(nn.Module):
    """Seed 003's spatial block on (B, C, H, W): 1x1 conv in, single-head External
    Attention with ``k`` memory units, 1x1 conv + BatchNorm out, residual, ReLU.

    Not a token mixer (it works on feature maps and carries its own residual), so it
    is not in the attention registry.
    """

    def __init__(self, channels: int, k: int = 64):
        super().__init__()
        check_positive(channels=channels, k=k)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.k = k
        self.linear_0 = nn.Conv1d(channels, k, 1, bias=False)
        self.linear_1 = nn.Conv1d(k, channels, 1, bias=False)
        # Tie the initial value memory to the key memory, as the authors do.
        with torch.no_grad():
            self.linear_1.weight.copy_(self.linear_0.weight.permute(1, 0, 2))
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        x = self.conv1(x)
        b, c, h, w = x.shape
        attn = self.linear_0(x.reshape(b, c, h * w)).softmax(dim=-1)  # (b, k, n) over tokens
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))  # l1 over memory units
        x = self.linear_1(attn).reshape(b, c, h, w)
        return self.relu(self.conv2(x) + identity)
