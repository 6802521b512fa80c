"""Standard multi-head self-attention (ViT), the quadratic baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Cost, TokenMixer, check_divisible, check_tokens, count_params
from .registry import register_attention


@register_attention("mhsa")
class MultiHeadSelfAttention(TokenMixer):
    """``softmax(Q K^T / sqrt(d)) V`` over all N tokens, through PyTorch's
    ``scaled_dot_product_attention`` (fused kernels where the backend has them).

    Parameter names (``qkv``, ``proj``) follow the ViT/LITv2 ``Attention`` module.

    Cost leaves out: the softmax, the scaling and the bias add of ``proj``.
    """

    summary = "ViT: softmax(QK^T)V over all tokens; quadratic in N"

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: float | None = None):
        super().__init__()
        check_divisible(dim, num_heads)
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C, _, _ = check_tokens(x, hw)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def cost(self, hw: tuple[int, int]) -> Cost:
        n = hw[0] * hw[1]
        macs = 4 * n * self.dim * self.dim + 2 * n * n * self.dim
        return Cost(macs=macs, params=count_params(self))
