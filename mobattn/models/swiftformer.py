"""SwiftFormer (Shaker et al., "SwiftFormer: Efficient Additive Attention for
Transformer-based Real-time Mobile Vision Applications", ICCV 2023).

Module and parameter names follow the official code, so official checkpoints load
with ``strict=True``. ``attention=`` swaps the token mixer of every
SwiftFormerEncoder (the last block of each stage) for another registered mechanism,
configured by :mod:`mobattn.models.swap`; everything else stays identical.

Any input of at least 1x1 pixels runs (every downsampling is a padded stride-2
conv); the network's stride is 32, so 32x32 is the smallest input at which the last
stage still sees a genuine 1x1 map; below that, stages repeat a single token.
"""

from __future__ import annotations

import torch
from torch import nn

from mobattn.attention import create_attention

from .registry import Family, ModelConfig, Published, register_model
from .swap import mixer_kwargs

WIDTHS = {
    "xs": (48, 56, 112, 220),
    "s": (48, 64, 168, 224),
    "l1": (48, 96, 192, 384),
    "l3": (64, 128, 320, 512),
}
DEPTHS = {
    "xs": (3, 3, 6, 4),
    "s": (3, 3, 9, 6),
    "l1": (4, 3, 10, 5),
    "l3": (4, 4, 12, 6),
}
PAPER = "SwiftFormer, Shaker et al., ICCV 2023 (Table 1; iPhone 14 Neural Engine, iOS 16)"


def stem(in_chs: int, out_chs: int) -> nn.Sequential:
    """Two stride-2 3x3 convs with BatchNorm and ReLU: /4 resolution."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs // 2, 3, stride=2, padding=1),
        nn.BatchNorm2d(out_chs // 2),
        nn.ReLU(),
        nn.Conv2d(out_chs // 2, out_chs, 3, stride=2, padding=1),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(),
    )


class Embedding(nn.Module):
    """Downsampling between stages: stride-2 3x3 conv + BatchNorm."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ConvEncoder(nn.Module):
    """Depth-wise 3x3 conv, BatchNorm, point-wise MLP, layer-scaled residual."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.BatchNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden_dim, dim, 1)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.layer_scale * y


class SwiftFormerLocalRepresentation(ConvEncoder):
    """The ConvEncoder at expansion 1 that opens each SwiftFormerEncoder."""

    def __init__(self, dim: int):
        super().__init__(dim, hidden_dim=dim)


class Mlp(nn.Module):
    """BatchNorm then a 1x1-conv MLP (the official ``Mlp`` of SwiftFormer)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm1(x))))


class SwiftFormerEncoder(nn.Module):
    """Local representation, token mixer over all H*W tokens, MLP; layer-scaled."""

    def __init__(
        self, dim: int, attention: str = "eaa", mlp_ratio: float = 4.0, layer_scale_init: float = 1e-5
    ):
        super().__init__()
        self.local_representation = SwiftFormerLocalRepresentation(dim)
        self.attn = create_attention(attention, dim, **mixer_kwargs(attention, dim))
        self.linear = Mlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init * torch.ones(dim, 1, 1))
        self.layer_scale_2 = nn.Parameter(layer_scale_init * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        B, C, H, W = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)
        mixed = self.attn(tokens, (H, W)).reshape(B, H, W, C).permute(0, 3, 1, 2)
        x = x + self.layer_scale_1 * mixed
        return x + self.layer_scale_2 * self.linear(x)


def distilled_heads(model: nn.Module, pooled: torch.Tensor):
    """The classification and distillation heads of a DeiT-style distilled model
    (SwiftFormer, EfficientFormer): both logits in training, their average in eval."""
    if not model.dist:
        return model.head(pooled)
    logits, dist_logits = model.head(pooled), model.dist_head(pooled)
    if model.training:
        return logits, dist_logits
    return (logits + dist_logits) / 2


def make_stage(dim: int, depth: int, attention: str, mlp_ratio: float = 4.0) -> nn.Sequential:
    """``depth - 1`` ConvEncoders followed by one SwiftFormerEncoder."""
    blocks: list[nn.Module] = [ConvEncoder(dim, int(mlp_ratio * dim)) for _ in range(depth - 1)]
    blocks.append(SwiftFormerEncoder(dim, attention=attention, mlp_ratio=mlp_ratio))
    return nn.Sequential(*blocks)


class SwiftFormer(nn.Module):
    """Stem, four stages with downsampling between them, BatchNorm, two heads.

    In eval mode the classification and distillation heads are averaged, as in the
    official code; in training mode both logits are returned.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        attention: str = "eaa",
        num_classes: int = 1000,
        distillation: bool = True,
    ):
        super().__init__()
        self.widths, self.depths, self.attention = widths, depths, attention
        self.num_classes = num_classes
        self.patch_embed = stem(3, widths[0])
        network: list[nn.Module] = []
        for i, (dim, depth) in enumerate(zip(widths, depths, strict=True)):
            network.append(make_stage(dim, depth, attention))
            if i + 1 < len(widths):
                network.append(Embedding(dim, widths[i + 1]))
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        self.dist = distillation
        if distillation:
            self.dist_head = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.network:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor):
        return distilled_heads(self, self.forward_features(x).flatten(2).mean(-1))


FAMILY = Family("SwiftFormer", "swiftformer_", "SF-", "tab:blue", 0, in_presets=True)


def _config(top1: float, params_m: float, gmacs: float, latency_ms: float) -> ModelConfig:
    published = Published(top1, params_m, gmacs, latency_ms, "iPhone 14 Neural Engine (iOS 16)", PAPER)
    return ModelConfig(published=published, family=FAMILY)


def _build(variant: str, attention: str | None, **kwargs) -> SwiftFormer:
    return SwiftFormer(WIDTHS[variant], DEPTHS[variant], attention=attention or "eaa", **kwargs)


@register_model("swiftformer_xs", _config(75.7, 3.5, 0.6, 0.7))
def swiftformer_xs(attention: str | None = None, **kwargs) -> SwiftFormer:
    return _build("xs", attention, **kwargs)


@register_model("swiftformer_s", _config(78.5, 6.1, 1.0, 0.8))
def swiftformer_s(attention: str | None = None, **kwargs) -> SwiftFormer:
    return _build("s", attention, **kwargs)


@register_model("swiftformer_l1", _config(80.9, 12.1, 1.6, 1.1))
def swiftformer_l1(attention: str | None = None, **kwargs) -> SwiftFormer:
    return _build("l1", attention, **kwargs)


@register_model("swiftformer_l3", _config(83.0, 28.5, 4.0, 1.9))
def swiftformer_l3(attention: str | None = None, **kwargs) -> SwiftFormer:
    return _build("l3", attention, **kwargs)
