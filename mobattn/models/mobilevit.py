"""MobileViT (Mehta & Rastegari, ICLR 2022) XS/S and MobileViTv2-1.0 (TMLR 2023), as
timm's ``mobilevit_xs``, ``mobilevit_s`` and ``mobilevitv2_100`` (timm's parameter names,
so timm checkpoints load with ``strict=True``).

Both are MobileNetV2-style inverted residual stages (1x1 conv, depth-wise 3x3, linear
1x1; SiLU; BatchNorm) with a MobileViT block after the inverted residual of stages 3-5.
A MobileViT block mixes locally (3x3 conv), projects, unfolds the map into 2x2 patches,
runs transformer blocks across patches for each of the 4 positions in a patch, folds back
and projects. v1's transformer is ViT's (LayerNorm, multi-head self-attention, MLP) and
its block ends with a 3x3 fusion of the input and the result; v2's is separable
self-attention (:mod:`mobattn.attention.separable`) with GroupNorm(1) and 1x1-conv MLPs.
No swap: their attention runs over the patches of one position, not an H x W grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobattn.attention.separable import separable_attention
from mobattn.errors import MobattnError

from .deit import Block as TransformerBlock
from .registry import Family, ModelConfig, Published, register_model

NO_SWAP = (
    "MobileViT's attention runs across 2x2 patches for each position inside a patch, not over an "
    "H x W grid of tokens, so there is no like-for-like swap"
)
V1_PAPER = (
    "MobileViT, Mehta & Rastegari, ICLR 2022 (Table 1; top-1 as in the paper, the model zoo lists 74.7/78.3)"
)
V2_PAPER = "MobileViTv2, Mehta & Rastegari, TMLR 2023 (top-1 of MobileViTv2-1.0)"


class ConvNormAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + SiLU (timm's ConvNormAct: ``conv`` and ``bn`` keys)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.SiLU() if act else nn.Identity()


class InvertedResidual(nn.Module):
    """timm's BottleneckBlock with ``bottle_in``, depth-wise middle and linear output;
    a residual only where the shape is kept."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expansion: float):
        super().__init__()
        mid = int(in_chs * expansion)
        self.conv1_1x1 = ConvNormAct(in_chs, mid, 1)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride, groups=mid)
        self.conv3_1x1 = ConvNormAct(mid, out_chs, 1, act=False)
        self.residual = in_chs == out_chs and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return x + y if self.residual else y


def unfold(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * patch^2, N, C): one sequence of N = H*W/patch^2 patches for
    each position inside a patch (timm's MobileVitBlock reshapes)."""
    B, C, H, W = x.shape
    nh, nw = H // patch, W // patch
    x = x.reshape(B * C * nh, patch, nw, patch).transpose(1, 2)
    return x.reshape(B, C, nh * nw, patch * patch).transpose(1, 3).reshape(B * patch * patch, nh * nw, C)


def fold(x: torch.Tensor, patch: int, shape: torch.Size) -> torch.Tensor:
    B, C, H, W = shape
    nh, nw = H // patch, W // patch
    x = x.reshape(B, patch * patch, nh * nw, C).transpose(1, 3).reshape(B * C * nh, nw, patch, patch)
    return x.transpose(1, 2).reshape(B, C, H, W)


def patch_multiple(x: torch.Tensor, patch: int) -> tuple[int, int]:
    """The map size rounded up to whole patches (timm resizes the map to it)."""
    H, W = x.shape[2:]
    return -(-H // patch) * patch, -(-W // patch) * patch


class MobileVitBlock(nn.Module):
    def __init__(
        self, chs: int, dim: int, depth: int, patch: int = 2, num_heads: int = 4, mlp_ratio: float = 2.0
    ):
        super().__init__()
        self.patch = patch
        self.conv_kxk = ConvNormAct(chs, chs, 3)
        self.conv_1x1 = nn.Conv2d(chs, dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[TransformerBlock(dim, num_heads, mlp_ratio, act=nn.SiLU, eps=1e-5) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvNormAct(dim, chs, 1)
        self.conv_fusion = ConvNormAct(2 * chs, chs, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_1x1(self.conv_kxk(x))
        size, whole = tuple(y.shape[2:]), patch_multiple(y, self.patch)
        if whole != size:  # timm: bilinear resize to whole patches and back
            y = F.interpolate(y, size=whole, mode="bilinear", align_corners=False)
        y = fold(self.norm(self.transformer(unfold(y, self.patch))), self.patch, y.shape)
        if whole != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.conv_fusion(torch.cat([x, self.conv_proj(y)], dim=1))


class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group: LayerNorm over (C, H, W)."""

    def __init__(self, channels: int):
        super().__init__(1, channels)


class LinearSelfAttention(nn.Module):
    """Separable self-attention on a (B, C, P, N) tensor of patches, over N."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(separable_attention(self.qkv_proj(x), self.dim, token_axis=-1, channel_axis=1))


class ConvMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LinearTransformerBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = GroupNorm1(dim)
        self.attn = LinearSelfAttention(dim)
        self.norm2 = GroupNorm1(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileVitV2Block(nn.Module):
    def __init__(self, chs: int, depth: int, patch: int = 2, bottle_ratio: float = 0.5):
        super().__init__()
        dim = int(chs * bottle_ratio)
        self.patch = patch
        self.conv_kxk = ConvNormAct(chs, chs, 3, groups=chs)
        self.conv_1x1 = nn.Conv2d(chs, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[LinearTransformerBlock(dim) for _ in range(depth)])
        self.norm = GroupNorm1(dim)
        self.conv_proj = ConvNormAct(dim, chs, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        whole = patch_multiple(x, self.patch)
        if whole != tuple(x.shape[2:]):  # timm: resized to whole patches, and kept at that size
            x = F.interpolate(x, size=whole, mode="bilinear", align_corners=True)
        x = self.conv_1x1(self.conv_kxk(x))
        B, C, H, W = x.shape
        p, nh, nw = self.patch, H // self.patch, W // self.patch
        # (B, C, H, W) -> (B, C, P, N): timm's rank-6 permutation, in rank-5 steps (Core ML's
        # limit): patch positions on P (row-major within a patch), patches on N
        x = x.reshape(B * C * nh, p, nw, p).permute(0, 1, 3, 2).reshape(B, C, nh, p * p, nw)
        x = x.permute(0, 1, 3, 2, 4).reshape(B, C, p * p, nh * nw)
        x = self.norm(self.transformer(x))
        x = x.reshape(B, C, p * p, nh, nw).permute(0, 1, 3, 2, 4).reshape(B * C * nh, p, p, nw)
        x = x.permute(0, 1, 3, 2).reshape(B, C, H, W)
        return self.conv_proj(x)


class MobileViT(nn.Module):
    """Stem, five stages (stages 3-5 end in a MobileViT block), optional 1x1 final conv,
    global average pooling and a linear head."""

    def __init__(
        self,
        stem_chs: int,
        stages: list[nn.Sequential],
        final_in: int,
        final_chs: int | None,
        num_classes: int,
        attention: str,
    ):
        super().__init__()
        self.attention = attention
        self.stem = ConvNormAct(3, stem_chs, 3, stride=2)
        self.stages = nn.Sequential(*stages)
        self.final_conv = ConvNormAct(final_in, final_chs, 1) if final_chs else nn.Identity()
        self.head = nn.Module()
        self.head.fc = nn.Linear(final_chs or final_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(self.stages(self.stem(x)))
        return self.head.fc(x.mean(dim=(2, 3)))


def _stages(stem_chs: int, plan, mobilevit_block) -> list[nn.Sequential]:
    """``plan``: (depth, channels, stride, expansion, block args or None) per stage."""
    stages, chs = [], stem_chs
    for depth, out, stride, expansion, block in plan:
        blocks: list[nn.Module] = []
        for i in range(depth):
            blocks.append(InvertedResidual(chs, out, stride if i == 0 else 1, expansion))
            chs = out
        if block is not None:
            blocks.append(mobilevit_block(out, *block))
        stages.append(nn.Sequential(*blocks))
    return stages


def _no_swap(attention: str | None) -> None:
    if attention is not None:
        raise MobattnError(f"--attention does not apply to MobileViT: {NO_SWAP}")


def _v1(channels, dims, final_chs: int, attention, num_classes: int = 1000) -> MobileViT:
    _no_swap(attention)
    plan = [
        (1, channels[0], 1, 4.0, None),
        (3, channels[1], 2, 4.0, None),
        (1, channels[2], 2, 4.0, (dims[0], 2)),
        (1, channels[3], 2, 4.0, (dims[1], 4)),
        (1, channels[4], 2, 4.0, (dims[2], 3)),
    ]
    return MobileViT(16, _stages(16, plan, MobileVitBlock), channels[4], final_chs, num_classes, "mobilevit")


MOBILEVIT = Family("MobileViT", "mobilevit_", "MViT-", "tab:red", 3, in_presets=True)
MOBILEVITV2 = Family("MobileViTv2", "mobilevitv2_", "MViTv2-", "tab:purple", 4, in_presets=True)


def _config(
    top1: float, params_m: float | None, gmacs: float | None, source: str, attention: str
) -> ModelConfig:
    return ModelConfig(
        input_size=(3, 256, 256),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        crop_pct=0.9,
        interpolation="bicubic",
        published=Published(top1, params_m, gmacs, None, None, source),
        native_attention=attention,
        no_swap=NO_SWAP,
        family=MOBILEVITV2 if attention == "separable" else MOBILEVIT,
    )


@register_model("mobilevit_xs", _config(74.8, 2.3, None, V1_PAPER, "mobilevit"))
def mobilevit_xs(attention: str | None = None, **kwargs) -> MobileViT:
    return _v1((32, 48, 64, 80, 96), (96, 120, 144), 384, attention, **kwargs)


@register_model("mobilevit_s", _config(78.4, 5.6, None, V1_PAPER, "mobilevit"))
def mobilevit_s(attention: str | None = None, **kwargs) -> MobileViT:
    return _v1((32, 64, 96, 128, 160), (144, 192, 240), 640, attention, **kwargs)


@register_model("mobilevitv2_100", _config(78.1, None, None, V2_PAPER, "separable"))
def mobilevitv2_100(attention: str | None = None, num_classes: int = 1000) -> MobileViT:
    _no_swap(attention)
    plan = [
        (1, 64, 1, 2.0, None),
        (2, 128, 2, 2.0, None),
        (1, 256, 2, 2.0, (2,)),
        (1, 384, 2, 2.0, (4,)),
        (1, 512, 2, 2.0, (3,)),
    ]
    return MobileViT(32, _stages(32, plan, MobileVitV2Block), 512, None, num_classes, "separable")
