"""HiLo attention (LITv2, "Fast Vision Transformers with HiLo Attention", NeurIPS 2022).

Heads are split in two groups: Hi-Fi heads attend inside non-overlapping
``window_size`` windows (local, high frequencies); Lo-Fi heads take queries from
every token and keys/values from the average-pooled map (global, low frequencies).
Parameter names follow the official ``HiLo`` module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobattn.errors import MobattnError

from .base import Cost, TokenMixer, check_divisible, check_positive, check_tokens, count_params, heads_for
from .registry import register_attention


@register_attention("hilo")
class HiLo(TokenMixer):
    """HiLo attention on (B, N, C) tokens of an H x W map.

    H and W that are not multiples of ``window_size`` are zero-padded up to the next
    multiple and the output cropped back (a variant from a published paper walkthrough; identical to the
    official code when no padding is needed). ``alpha`` is the share of heads given
    to Lo-Fi; ``window_size=1`` makes every head a Lo-Fi head, i.e. standard MHSA,
    exactly as the official code does.

    Cost leaves out: the average pooling, softmax, scaling, padding and concatenation.
    """

    summary = "LITv2: window attention (Hi-Fi) + attention to pooled keys (Lo-Fi)"

    @classmethod
    def swap_kwargs(cls, dim: int) -> dict:
        return {"num_heads": heads_for(dim), "window_size": 2, "alpha": 0.5}  # LITv2's defaults

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        window_size: int = 2,
        alpha: float = 0.5,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
    ):
        super().__init__()
        check_divisible(dim, num_heads)
        check_positive(window_size=window_size)
        if not 0.0 <= alpha <= 1.0:
            raise MobattnError(f"alpha must lie in [0, 1], got {alpha}")
        head_dim = dim // num_heads
        self.dim, self.num_heads, self.ws, self.alpha = dim, num_heads, window_size, alpha
        self.l_heads = int(num_heads * alpha)
        self.h_heads = num_heads - self.l_heads
        if window_size == 1:  # every head is global: standard MHSA
            self.l_heads, self.h_heads = num_heads, 0
        self.l_dim = self.l_heads * head_dim
        self.h_dim = self.h_heads * head_dim
        self.head_dim = head_dim
        self.scale = qk_scale or head_dim**-0.5

        if self.l_heads > 0:
            if self.ws != 1:
                self.sr = nn.AvgPool2d(kernel_size=window_size, stride=window_size)
            self.l_q = nn.Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(dim, self.l_dim * 2, bias=qkv_bias)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads > 0:
            self.h_qkv = nn.Linear(dim, self.h_dim * 3, bias=qkv_bias)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    def hifi(self, x: torch.Tensor) -> torch.Tensor:
        """Window attention on a padded (B, H, W, C) map.

        Windows are folded into the batch so no tensor exceeds rank 5 (Core ML's
        limit); the arithmetic is the official code's.
        """
        B, H, W, C = x.shape
        ws, heads = self.ws, self.h_heads
        h_groups, w_groups = H // ws, W // ws
        windows = x.reshape(B * h_groups, ws, w_groups, ws, C).transpose(1, 2)
        windows = windows.reshape(B * h_groups * w_groups, ws * ws, C)
        qkv = self.h_qkv(windows).reshape(-1, ws * ws, 3, heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B*groups, heads, ws*ws, hd)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B * h_groups, w_groups, ws, ws, self.h_dim)
        out = out.transpose(1, 2).reshape(B, H, W, self.h_dim)
        return self.h_proj(out)

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        """Queries from every token, keys and values from the pooled map."""
        B, H, W, C = x.shape
        heads = self.l_heads
        q = self.l_q(x).reshape(B, H * W, heads, self.head_dim).permute(0, 2, 1, 3)
        if self.ws > 1:
            pooled = self.sr(x.permute(0, 3, 1, 2)).reshape(B, C, -1).permute(0, 2, 1)
        else:
            pooled = x.reshape(B, H * W, C)
        kv = self.l_kv(pooled).reshape(B, -1, 2, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, H, W, self.l_dim)
        return self.l_proj(out)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C, H, W = check_tokens(x, hw)
        x = x.reshape(B, H, W, C)
        pad_r = (self.ws - W % self.ws) % self.ws
        pad_b = (self.ws - H % self.ws) % self.ws
        # Concrete sizes skip a no-op pad; symbolic ones (dynamic export) always pad.
        needs_pad = not (isinstance(pad_r, int) and isinstance(pad_b, int)) or pad_r or pad_b
        if needs_pad:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        parts = []
        if self.h_heads > 0:
            parts.append(self.hifi(x))
        if self.l_heads > 0:
            parts.append(self.lofi(x))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if needs_pad:
            out = out[:, :H, :W, :]
        return out.reshape(B, N, C)

    def cost(self, hw: tuple[int, int]) -> Cost:
        ws = self.ws
        hp, wp = -(-hw[0] // ws) * ws, -(-hw[1] // ws) * ws  # padded map
        n = hp * wp
        macs = 0
        if self.l_heads > 0:
            n_kv = n // (ws * ws)
            macs += n * self.dim * self.l_dim  # l_q
            macs += n_kv * self.dim * 2 * self.l_dim  # l_kv
            macs += 2 * n * n_kv * self.l_dim  # q @ k^T and attn @ v
            macs += n * self.l_dim * self.l_dim  # l_proj
        if self.h_heads > 0:
            macs += n * self.dim * 3 * self.h_dim  # h_qkv
            macs += 2 * n * ws * ws * self.h_dim  # window attention
            macs += n * self.h_dim * self.h_dim  # h_proj
        return Cost(macs=macs, params=count_params(self))
