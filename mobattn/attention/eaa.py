"""Efficient Additive Attention (SwiftFormer, ICCV 2023).

Parameter names follow the official ``EfficientAdditiveAttnetion`` so official
SwiftFormer checkpoints load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from mobattn.errors import MobattnError

from .base import Cost, TokenMixer, check_positive, check_tokens, count_params
from .registry import register_attention


def l2_normalize(x: torch.Tensor, dim: int, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize`` by broadcasting: F.normalize expands the norm to the input's
    shape first, which exports as a materialised Expand node."""
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(eps)


@register_attention("eaa")
class EfficientAdditiveAttention(TokenMixer):
    """Global query pooled from token scores, multiplied into the keys, projected.

    ``score_norm="l2"`` (default) is the official code: the query scores are
    L2-normalised over tokens. ``score_norm="softmax"`` is the paper's equation
    (softmax over tokens). Both L2-normalise query and key rows first, as the code does.

    The global query is broadcast over tokens instead of repeated, so no (B, N, D)
    copy is materialised (and none appears in an exported graph).

    Cost leaves out: the L2 normalisations, score normalisation, the weighted sum
    over tokens, the element-wise product with the keys and the residual add.
    """

    summary = "SwiftFormer: global query from token scores, times keys; linear in N"

    @classmethod
    def swap_kwargs(cls, dim: int) -> dict:
        return {"num_heads": 1}  # the official SwiftFormer setting

    def __init__(self, dim: int, num_heads: int = 1, score_norm: str = "l2"):
        super().__init__()
        check_positive(dim=dim, num_heads=num_heads)
        if score_norm not in ("l2", "softmax"):
            raise MobattnError(f"score_norm must be 'l2' or 'softmax', got {score_norm!r}")
        inner = dim * num_heads
        self.dim, self.num_heads, self.score_norm = dim, num_heads, score_norm
        self.to_query = nn.Linear(dim, inner)
        self.to_key = nn.Linear(dim, inner)
        self.w_g = nn.Parameter(torch.randn(inner, 1))
        self.scale_factor = dim**-0.5
        self.Proj = nn.Linear(inner, inner)
        self.final = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        check_tokens(x, hw)
        query = l2_normalize(self.to_query(x), dim=-1)
        key = l2_normalize(self.to_key(x), dim=-1)
        scores = (query @ self.w_g) * self.scale_factor  # (B, N, 1)
        if self.score_norm == "l2":
            scores = l2_normalize(scores, dim=1)
        else:
            scores = scores.softmax(dim=1)
        global_query = torch.sum(scores * query, dim=1, keepdim=True)  # (B, 1, D)
        out = self.Proj(global_query * key) + query
        return self.final(out)

    def cost(self, hw: tuple[int, int]) -> Cost:
        n = hw[0] * hw[1]
        c, d = self.dim, self.dim * self.num_heads
        macs = n * (2 * c * d + d + d * d + d * c)
        return Cost(macs=macs, params=count_params(self))
