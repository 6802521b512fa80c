"""UFO's deployable form: XNorm's L2 norm through squares and a 4-D mean, the products
as rank-3 bmm (a rank-4 matmul lowers to broadcasting copies)."""

from __future__ import annotations

import torch

from .ops import Twin, l2_norm_last, merge_heads, split_heads


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
