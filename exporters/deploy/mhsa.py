"""MHSA's deployable form: explicit per-head matmul-softmax-matmul (no SDPA, so no mask
ops), heads folded into the batch of two bmm."""

from __future__ import annotations

import torch

from .ops import Twin, attend, chunks_last, merge_heads, split_heads


class DeployMHSA(Twin):
    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        ref = self.ref
        C = x.shape[-1]
        q, k, v = (split_heads(t, ref.num_heads) for t in chunks_last(ref.qkv(x), (C, C, C)))
        return ref.proj(merge_heads(attend(q, k, v, ref.scale), ref.num_heads))
