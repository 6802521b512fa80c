"""UFO's deployable form: XNorm's L2 norm through squares and a 4-D mean, the products
as rank-3 bmm (a rank-4 matmul lowers to broadcasting copies)."""

from __future__ import annotations

import torch

from mobattn.attention.ufo import UFOAttention

from .ane import as_sequence, heads_of, l2_norm, pointwise
from .ops import Twin, l2_norm_last, merge_heads, split_heads, twin_of


@twin_of(UFOAttention, "xnnpack")
class DeployUFO(Twin):
    def xnorm(self, x: torch.Tensor) -> torch.Tensor:
        """``gamma * x / ||x||`` with x of shape (B * heads, rows, d)."""
        BH, rows, d = x.shape
        heads = self.ref.num_heads
        scaled = (x.reshape(BH // heads, heads, rows, d) * self.ref.gamma).reshape(BH, rows, d)
        return scaled / l2_norm_last(x)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        ref = self.ref
        heads = ref.num_heads
        q = split_heads(ref.fc_q(x), heads)  # (B*h, N, d)
        k = split_heads(ref.fc_k(x), heads)
        v = split_heads(ref.fc_v(x), heads)
        kv = self.xnorm(torch.bmm(k.transpose(1, 2), v))  # (B*h, d, d)
        return ref.fc_o(merge_heads(torch.bmm(self.xnorm(q), kv), heads))


@twin_of(UFOAttention, "ane")
class AneUFO(Twin):
    caveat = "one transpose per layer, of the keys to (B, N, 1, C), for K^T V (as for mhsa)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        t = as_sequence(x)
        q, k, v = pointwise(ref.fc_q, t), pointwise(ref.fc_k, t), pointwise(ref.fc_v, t)
        gamma = ref.gamma.reshape(-1)
        heads = ref.num_heads
        keys = heads_of(k.transpose(1, 3), heads, axis=3)  # the layer's one transpose (see attention_heads)
        outs = []
        parts = zip(keys, heads_of(q, heads), heads_of(v, heads), strict=True)
        for i, (kh, qh, vh) in enumerate(parts):
            kv_t = torch.einsum("bchn,bnhe->bche", vh, kh)  # (K^T V)^T
            kv_t = kv_t * gamma[i] / l2_norm(kv_t, dim=1)  # XNorm over d_v
            qh = qh * gamma[i] / l2_norm(qh, dim=1)
            outs.append(torch.einsum("behc,bchn->behn", kv_t, qh))
        return pointwise(ref.fc_o, torch.cat(outs, dim=1)).reshape(x.shape)
