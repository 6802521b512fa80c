"""DeiT (Touvron et al., "Training data-efficient image transformers & distillation
through attention", ICML 2021): the plain ViT of timm's ``deit_tiny_patch16_224`` and
``deit_small_patch16_224``, whose state_dict format DeiT's released weights use.

16x16 patches, a class token, learned position embeddings for 14x14 patches (224x224
input), pre-norm blocks (LayerNorm eps 1e-6, multi-head self-attention with a qkv bias,
GELU MLP), the class token's features to the head. No swap: the class token attends
with the patches, and the other mechanisms are token mixers over an H x W grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobattn.errors import MobattnError

from .registry import Family, ModelConfig, Published, register_model

PAPER = "DeiT, Touvron et al., ICML 2021 (Table 1: params rounded to 5M / 22M)"
NO_SWAP = (
    "DeiT's attention runs over a class token plus the patches; the other mechanisms are token "
    "mixers over an H x W grid of patches only, so there is no like-for-like swap"
)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """timm's pre-norm ViT block (also MobileViT's transformer, with SiLU and eps 1e-5)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        act: type[nn.Module] = nn.GELU,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        num_classes: int = 1000,
        img_size: int = 224,
        patch_size: int = 16,
    ):
        super().__init__()
        self.img_size, self.attention = img_size, "mhsa"
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (self.img_size, self.img_size):
            raise MobattnError(
                f"DeiT's position embeddings are learned for {self.img_size}x{self.img_size} inputs, "
                f"got {x.shape[2]}x{x.shape[3]}"
            )
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


FAMILY = Family("DeiT", "deit_", "DeiT-", "tab:green", 2, in_presets=True)


def _config(top1: float, params_m: float) -> ModelConfig:
    published = Published(top1, params_m, None, None, None, PAPER)
    return ModelConfig(
        published=published,
        crop_pct=0.875,
        native_attention="mhsa",
        no_swap=NO_SWAP,
        native_resolutions=(224,),
        family=FAMILY,
    )


def _build(dim: int, heads: int, attention: str | None, **kwargs) -> VisionTransformer:
    if attention is not None:
        raise MobattnError(f"--attention does not apply to DeiT: {NO_SWAP}")
    return VisionTransformer(dim, 12, heads, **kwargs)


@register_model("deit_tiny", _config(72.2, 5.0))
def deit_tiny(attention: str | None = None, **kwargs) -> VisionTransformer:
    return _build(192, 3, attention, **kwargs)


# Google's AugReg ViT-Ti/16 (ImageNet-21k, fine-tuned on 1k): DeiT-tiny's module, its own
# preprocessing. The figures are timm's evaluation of these weights, not a paper's table.
VIT = Family("ViT", "vit_", "ViT-", "tab:olive", 5)  # deit_tiny's cost, measured there
AUGREG_SOURCE = (
    "timm's results/results-imagenet.csv (huggingface/pytorch-image-models), "
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
)


@register_model(
    "vit_tiny_patch16_224",
    ModelConfig(
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=0.9,
        interpolation="bicubic",
        published=Published(75.454, 5.72, None, None, None, AUGREG_SOURCE),
        native_attention="mhsa",
        no_swap=NO_SWAP,
        native_resolutions=(224,),
        family=VIT,
    ),
)
def vit_tiny_patch16_224(attention: str | None = None, **kwargs) -> VisionTransformer:
    """The trained network of ``../shared/real`` (AugReg weights load into it strictly)."""
    return _build(192, 3, attention, **kwargs)


@register_model("deit_small", _config(79.8, 22.0))
def deit_small(attention: str | None = None, **kwargs) -> VisionTransformer:
    return _build(384, 6, attention, **kwargs)
