"""EfficientFormer (Li et al., "EfficientFormer: Vision Transformers at MobileNet
Speed", NeurIPS 2022), L1/L3/L7.

Module and parameter names follow snap-research/EfficientFormer's
``models/efficientformer.py``, so its checkpoints load with ``strict=True``: a conv stem,
four stages of MetaFormer blocks — 4-D ``Meta4D`` blocks (average-pooling token mixer,
1x1-conv MLP with BatchNorms) and, at the end of the last stage, ``vit_num`` 3-D
``Meta3D`` blocks (LayerNorm, multi-head attention with learned relative-position
biases, linear MLP) after a ``Flat`` that turns the map into tokens —, a LayerNorm, and
two heads averaged in eval mode.

``attention=`` swaps every Meta3D token mixer for a registered mechanism configured by
the SwiftFormer swap rule (:mod:`.swap`); the paper's first experiment is
``efficientformer_l1`` with ``eaa``. The native attention's biases are learned for a 7x7
map, so the native model runs at 224x224 (any input whose last map is 7x7).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from mobattn.attention import create_attention
from mobattn.errors import MobattnError

from .registry import Family, ModelConfig, Published, register_model
from .swap import mixer_kwargs
from .swiftformer import Embedding, distilled_heads, stem  # the same stem and downsampling, the same names

WIDTHS = {"l1": (48, 96, 224, 448), "l3": (64, 128, 320, 512), "l7": (96, 192, 384, 768)}
DEPTHS = {"l1": (3, 2, 6, 4), "l3": (4, 4, 12, 6), "l7": (6, 6, 18, 8)}
VIT_NUM = {"l1": 1, "l3": 4, "l7": 8}
PAPER = "EfficientFormer, Li et al., NeurIPS 2022 (abstract and Table 1; iPhone 12, compiled with Core ML)"
NATIVE = "efficientformer"  # the attention EfficientFormer ships with (not a registered mechanism)


class Attention(nn.Module):
    """Multi-head self-attention with a learned bias per head and relative offset on a
    ``resolution`` x ``resolution`` map (LeViT's attention bias). Keys and queries have
    ``key_dim`` channels per head, values ``attn_ratio * key_dim``."""

    def __init__(
        self, dim: int = 384, key_dim: int = 32, num_heads: int = 8, attn_ratio: int = 4, resolution: int = 7
    ):
        super().__init__()
        self.num_heads, self.key_dim, self.scale = num_heads, key_dim, key_dim**-0.5
        self.d = attn_ratio * key_dim
        self.dh = self.d * num_heads
        self.resolution = resolution
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(len(points), len(points)))

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        B, N, _ = x.shape
        if N != self.resolution**2:
            raise MobattnError(
                "EfficientFormer's attention biases are learned for a "
                f"{self.resolution}x{self.resolution} map (224x224 input); this input gives {N} tokens"
            )
        q, k, v = (
            self.qkv(x)
            .reshape(B, N, self.num_heads, -1)
            .permute(0, 2, 1, 3)
            .split([self.key_dim, self.key_dim, self.d], dim=3)
        )
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (heads, N, N)
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, self.dh))


class Flat(nn.Module):
    """(B, C, H, W) map -> (B, H*W, C) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class Pooling(nn.Module):
    """PoolFormer's token mixer: average pooling minus the input."""

    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class Mlp(nn.Module):
    """1x1-conv MLP with a BatchNorm after each conv."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.norm2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.fc2(self.act(self.norm1(self.fc1(x)))))


class LinearMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Meta4D(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4.0, layer_scale_init: float = 1e-5):
        super().__init__()
        self.token_mixer = Pooling(3)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1[:, None, None] * self.token_mixer(x)
        return x + self.layer_scale_2[:, None, None] * self.mlp(x)


class Meta3D(nn.Module):
    """LayerNorm, token mixer, LayerNorm, MLP on (B, N, C) tokens, layer-scaled."""

    def __init__(
        self, dim: int, attention: str | None = None, mlp_ratio: float = 4.0, layer_scale_init: float = 1e-5
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        if attention is None:
            self.token_mixer = Attention(dim)
        else:
            self.token_mixer = create_attention(attention, dim, **mixer_kwargs(attention, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = LinearMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.layer_scale_1 * self.token_mixer(self.norm1(x), hw)
        return x + self.layer_scale_2 * self.mlp(self.norm2(x))


def meta_blocks(dim: int, depth: int, vit_num: int, attention: str | None) -> nn.Sequential:
    """A stage: Meta4D blocks, then (last stage) Flat and ``vit_num`` Meta3D blocks."""
    blocks: list[nn.Module] = []
    if vit_num and vit_num == depth:
        blocks.append(Flat())
    for i in range(depth):
        if depth - i <= vit_num:
            blocks.append(Meta3D(dim, attention))
        else:
            blocks.append(Meta4D(dim))
            if vit_num and depth - i - 1 == vit_num:
                blocks.append(Flat())
    return nn.Sequential(*blocks)


class EfficientFormer(nn.Module):
    def __init__(
        self,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        vit_num: int,
        attention: str | None = None,
        num_classes: int = 1000,
        distillation: bool = True,
    ):
        super().__init__()
        self.widths, self.depths, self.attention = widths, depths, attention or NATIVE
        self.patch_embed = stem(3, widths[0])
        network: list[nn.Module] = []
        for i, (dim, depth) in enumerate(zip(widths, depths, strict=True)):
            last = i == len(widths) - 1
            network.append(meta_blocks(dim, depth, vit_num if last else 0, attention))
            if not last:
                network.append(Embedding(dim, widths[i + 1]))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        self.dist = distillation
        if distillation:
            self.dist_head = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        hw = x.shape[2:]
        for stage in self.network:
            for block in stage if isinstance(stage, nn.Sequential) else [stage]:
                if isinstance(block, Flat):
                    hw = (x.shape[2], x.shape[3])
                x = block(x, hw) if isinstance(block, Meta3D) else block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor):
        return distilled_heads(self, self.forward_features(x).mean(-2))


FAMILY = Family("EfficientFormer", "efficientformer_", "EF-", "tab:orange", 1, in_presets=True)


def _config(top1: float, latency_ms: float | None) -> ModelConfig:
    """Only figures checked against the paper: its abstract gives L1's and L7's top-1 and
    iPhone 12 latency; params and GMACs are left to the measured columns."""
    device = "iPhone 12 (Core ML)" if latency_ms else None
    return ModelConfig(
        published=Published(top1, None, None, latency_ms, device, PAPER),
        native_attention=NATIVE,
        native_resolutions=(224,),
        family=FAMILY,
    )


def _build(variant: str, attention: str | None, **kwargs) -> EfficientFormer:
    return EfficientFormer(WIDTHS[variant], DEPTHS[variant], VIT_NUM[variant], attention=attention, **kwargs)


@register_model("efficientformer_l1", _config(79.2, 1.6))
def efficientformer_l1(attention: str | None = None, **kwargs) -> EfficientFormer:
    return _build("l1", attention, **kwargs)


@register_model("efficientformer_l3", _config(82.4, None))
def efficientformer_l3(attention: str | None = None, **kwargs) -> EfficientFormer:
    return _build("l3", attention, **kwargs)


@register_model("efficientformer_l7", _config(83.3, 7.0))
def efficientformer_l7(attention: str | None = None, **kwargs) -> EfficientFormer:
    return _build("l7", attention, **kwargs)
