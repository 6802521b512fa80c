"""EfficientFormer's attention in the deployable form: per-head q/k/v sliced from the
interleaved projection, both products as rank-3 bmm, the cached position biases added
as a broadcast (no gather)."""

from __future__ import annotations

import torch

from mobattn.models.efficientformer import Attention

from .ops import Twin, twin_of


@twin_of(Attention, "xnnpack")
class DeployEfficientFormerAttention(Twin):
    def __init__(self, ref: Attention):
        super().__init__(ref)
        # the per-pair biases gathered once, at export time, from the same parameters
        self.register_buffer("bias", ref.attention_biases[:, ref.attention_bias_idxs].detach().clone())

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        ref = self.ref
        B, N, _ = x.shape
        heads, kd, d = ref.num_heads, ref.key_dim, ref.d
        per_head = ref.qkv(x).reshape(B, N, heads, 2 * kd + d).permute(0, 2, 1, 3)  # (B, h, N, .)
        q = per_head[..., :kd].reshape(B * heads, N, kd)
        k = per_head[..., kd : 2 * kd].reshape(B * heads, N, kd)
        v = per_head[..., 2 * kd :].reshape(B * heads, N, d)
        scores = (torch.bmm(q, k.transpose(1, 2)) * ref.scale).reshape(B, heads, N, N) + self.bias
        out = torch.bmm(scores.reshape(B * heads, N, N).softmax(dim=-1), v)
        return ref.proj(out.reshape(B, heads, N, d).permute(0, 2, 1, 3).reshape(B, N, ref.dh))
