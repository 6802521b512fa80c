"""EAA's deployable form: the L2 norms through squares and a 4-D mean, the weighted
sum over tokens as one bmm."""

from __future__ import annotations

import torch

from .ops import Twin, l2_normalize_last


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
