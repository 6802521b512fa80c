"""MHSA's deployable form: explicit per-head matmul-softmax-matmul (no SDPA, so no mask
ops), heads folded into the batch of two bmm."""

from __future__ import annotations

import torch

from mobattn.attention.mhsa import MultiHeadSelfAttention
from mobattn.models import deit

from .ane import as_sequence, attention_heads, pointwise
from .ops import Twin, attend, chunks_last, merge_heads, split_heads, twin_of


@twin_of(MultiHeadSelfAttention, "xnnpack")
@twin_of(deit.Attention, "xnnpack")  # the same qkv / proj / num_heads / scale
class DeployMHSA(Twin):
    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        ref = self.ref
        C = x.shape[-1]
        q, k, v = (split_heads(t, ref.num_heads) for t in chunks_last(ref.qkv(x), (C, C, C)))
        return ref.proj(merge_heads(attend(q, k, v, ref.scale), ref.num_heads))


@twin_of(MultiHeadSelfAttention, "ane")
class AneMHSA(Twin):
    caveat = (
        "one transpose per layer, of the keys to (B, N, 1, C): Core ML's einsum contracts the "
        "last axis of one operand with axis -3 of the other, so one operand of q.k must hold its channels "
        "last (Apple's reference implementation transposes the keys the same way)"
    )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        C = x.shape[1]
        qkv = pointwise(ref.qkv, as_sequence(x))
        q, k, v = qkv[:, :C], qkv[:, C : 2 * C], qkv[:, 2 * C :]
        out = pointwise(ref.proj, attention_heads(q, k, v, ref.num_heads, ref.scale))
        return out.reshape(x.shape)
