"""EAA's deployable form: the L2 norms through squares and a 4-D mean, the weighted
sum over tokens as one bmm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobattn.attention.eaa import EfficientAdditiveAttention

from .ane import l2_normalize, pointwise
from .ops import Twin, l2_normalize_last, twin_of


@twin_of(EfficientAdditiveAttention, "xnnpack")
class DeployEAA(Twin):
    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        ref = self.ref
        B, N, _ = x.shape
        query = l2_normalize_last(ref.to_query(x))
        key = l2_normalize_last(ref.to_key(x))
        scores = (query @ ref.w_g).reshape(B, 1, N) * ref.scale_factor  # tokens on the last axis
        if ref.score_norm == "l2":
            scores = l2_normalize_last(scores)
        else:
            scores = scores.softmax(dim=-1)
        global_query = torch.bmm(scores, query)  # (B, 1, D): sum over tokens of score * query
        return ref.final(ref.Proj(global_query * key) + query)


@twin_of(EfficientAdditiveAttention, "ane")
class AneEAA(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        query = l2_normalize(pointwise(ref.to_query, x), dim=1)
        key = l2_normalize(pointwise(ref.to_key, x), dim=1)
        scores = F.conv2d(query, ref.w_g_conv) * ref.scale_factor  # (B, 1, H, W)
        if ref.score_norm == "l2":
            scores = l2_normalize(scores, dim=(2, 3))
        else:
            B, _, H, W = scores.shape
            scores = scores.reshape(B, 1, 1, H * W).softmax(dim=-1).reshape(B, 1, H, W)
        global_query = (scores * query).sum(dim=(2, 3), keepdim=True)  # (B, D, 1, 1)
        return pointwise(ref.final, pointwise(ref.Proj, global_query * key) + query)
