"""UFO attention (UFO-ViT: "High Performance Linear Vision Transformer without
Softmax", 2021).

Softmax is replaced by XNorm, an L2 normalisation scaled by a learnable per-head
``gamma``; without the softmax, keys and values are multiplied first, so the cost is
linear in the number of tokens. Parameter names follow the code of a published walkthrough
of the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Cost, TokenMixer, check_divisible, check_tokens, count_params
from .registry import register_attention


def xnorm(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``gamma * x / ||x||_2`` over the last dimension."""
    return x * gamma / torch.norm(x, p=2, dim=-1, keepdim=True)


@register_attention("ufo")
class UFOAttention(TokenMixer):
    """UFO attention with ``d_k = d_v = dim // num_heads``.

    ``kv = K^T V`` is (heads, d_k, d_v); XNorm is applied to it and to the queries
    with the same ``gamma``, then ``out = XNorm(Q) @ XNorm(K^T V)``.

    Cost leaves out: the two XNorms and the bias adds.
    """

    summary = "UFO-ViT: XNorm instead of softmax, K^T V first; linear in N"

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__()
        check_divisible(dim, num_heads)
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.fc_q = nn.Linear(dim, dim)
        self.fc_k = nn.Linear(dim, dim)
        self.fc_v = nn.Linear(dim, dim)
        self.fc_o = nn.Linear(dim, dim)
        self.gamma = nn.Parameter(torch.randn(1, num_heads, 1, 1))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C, _, _ = check_tokens(x, hw)
        heads, hd = self.num_heads, self.head_dim
        q = self.fc_q(x).reshape(B, N, heads, hd).permute(0, 2, 1, 3)  # (B, h, N, d)
        k = self.fc_k(x).reshape(B, N, heads, hd).permute(0, 2, 3, 1)  # (B, h, d, N)
        v = self.fc_v(x).reshape(B, N, heads, hd).permute(0, 2, 1, 3)  # (B, h, N, d)
        kv = xnorm(k @ v, self.gamma)  # (B, h, d, d)
        out = xnorm(q, self.gamma) @ kv
        return self.fc_o(out.permute(0, 2, 1, 3).reshape(B, N, C))

    def cost(self, hw: tuple[int, int]) -> Cost:
        n = hw[0] * hw[1]
        macs = 4 * n * self.dim * self.dim + 2 * n * self.dim * self.head_dim
        return Cost(macs=macs, params=count_params(self))
