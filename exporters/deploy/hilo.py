"""HiLo's deployable form: the official arithmetic with q, k and v sliced rather than
unbound and both attentions as rank-3 bmm (see :func:`.ops.attend`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobattn.attention.hilo import HiLo

from .ops import Twin, attend, attend_split, chunks_last, merge_heads, split_heads, twin_of


def pad_by_concat(x: torch.Tensor, pad_r: int, pad_b: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) map on the right and bottom with Concat (onnxruntime's
    Core ML provider has no Pad)."""
    B, H, W, C = x.shape
    if pad_r:
        x = torch.cat([x, torch.zeros(B, H, pad_r, C, dtype=x.dtype)], dim=2)
    if pad_b:
        x = torch.cat([x, torch.zeros(B, pad_b, W + pad_r, C, dtype=x.dtype)], dim=1)
    return x


@twin_of(HiLo, "xnnpack")
class DeployHiLo(Twin):
    concat_padding = False  # the mobile form sets it (see exporters.deploy.deployable)
    split_batch1_bmm = False  # the litert form sets it

    def __init__(self, ref: HiLo):
        super().__init__(ref)

    def hifi(self, x: torch.Tensor) -> torch.Tensor:
        """Window attention on a padded (B, H, W, C) map, windows folded into the batch."""
        ref = self.ref
        B, H, W, C = x.shape
        ws, heads, hdim = ref.ws, ref.h_heads, ref.h_dim
        hg, wg = H // ws, W // ws
        windows = x.reshape(B * hg, ws, wg, ws, C).transpose(1, 2).reshape(B * hg * wg, ws * ws, C)
        q, k, v = (split_heads(t, heads) for t in chunks_last(ref.h_qkv(windows), (hdim, hdim, hdim)))
        out = merge_heads(attend(q, k, v, ref.scale), heads)  # (B*groups, ws*ws, h_dim)
        out = out.reshape(B * hg, wg, ws, ws, hdim).transpose(1, 2).reshape(B, H, W, hdim)
        return ref.h_proj(out)

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        """Queries from every token, keys and values from the pooled map."""
        ref = self.ref
        B, H, W, C = x.shape
        heads, ld = ref.l_heads, ref.l_dim
        q = split_heads(ref.l_q(x).reshape(B, H * W, ld), heads)
        if ref.ws > 1:
            pooled = ref.sr(x.permute(0, 3, 1, 2)).reshape(B, C, -1).permute(0, 2, 1)
        else:
            pooled = x.reshape(B, H * W, C)
        k, v = (split_heads(t, heads) for t in chunks_last(ref.l_kv(pooled), (ld, ld)))
        split = self.split_batch1_bmm and q.shape[0] == 1 and (q.shape[1] % 2 == 0 or q.shape[-1] % 2 == 0)
        out = merge_heads((attend_split if split else attend)(q, k, v, ref.scale), heads)
        return ref.l_proj(out.reshape(B, H, W, ld))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        ref = self.ref
        B, N, C = x.shape
        H, W = hw
        x = x.reshape(B, H, W, C)
        pad_r, pad_b = (ref.ws - W % ref.ws) % ref.ws, (ref.ws - H % ref.ws) % ref.ws
        if pad_r or pad_b:
            x = (
                pad_by_concat(x, pad_r, pad_b)
                if self.concat_padding
                else F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            )
        parts = ([self.hifi(x)] if ref.h_heads else []) + ([self.lofi(x)] if ref.l_heads else [])
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if pad_r or pad_b:
            out = out[:, :H, :W, :]
        return out.reshape(B, N, C)


@twin_of(HiLo, "ane")
class AneHiLo(Twin):
    """HiLo stays in its reference form on (B, N, C) tokens (see ``CAVEATS``)."""

    caveat = (
        "left in its reference form: Hi-Fi's window partition interleaves both spatial axes, "
        "which needs transposes in any layout, and a partial rewrite (Lo-Fi in the (B, C, 1, N) layout) "
        "had more ops at risk and ran slower on CPU than the reference in swiftformer_s "
        "(BENCHMARKS.md, the ANE layout section)"
    )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)
        return self.ref(tokens, (H, W)).reshape(B, H, W, C).permute(0, 3, 1, 2)
