"""A straightforward port of the official SwiftFormer code (Amshaker/SwiftFormer), as
it would be written without an eye on deployment: ``einops.repeat`` becomes
``Tensor.repeat`` (same materialised copy), ``F.normalize`` as written, BatchNorm and the
two heads left as they are.

It exists only as the baseline of the export-speed comparison
(``benchmarks/onnx_vs_official.py``): same state_dict keys as ``mobattn``'s SwiftFormer,
so one set of weights drives both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobattn.models.swiftformer import DEPTHS, WIDTHS


def stem(in_chs, out_chs):
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs // 2, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(out_chs // 2),
        nn.ReLU(),
        nn.Conv2d(out_chs // 2, out_chs, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(),
    )


class Embedding(nn.Module):
    def __init__(self, in_chans, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(embed_dim)

    def forward(self, x):
        return self.norm(self.proj(x))


class ConvEncoder(nn.Module):
    def __init__(self, dim, hidden_dim=64, kernel_size=3):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.BatchNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, hidden_dim, kernel_size=1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden_dim, dim, kernel_size=1)
        self.layer_scale = nn.Parameter(torch.ones(dim).unsqueeze(-1).unsqueeze(-1), requires_grad=True)

    def forward(self, x):
        input = x
        x = self.dwconv(x)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = input + self.layer_scale * x
        return x


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_features, in_features, 1)

    def forward(self, x):
        x = self.norm1(x)
        x = self.fc1(x)
        x = self.act(x)
        x = self.fc2(x)
        return x


class EfficientAdditiveAttnetion(nn.Module):
    def __init__(self, in_dims=512, token_dim=256, num_heads=2):
        super().__init__()
        self.to_query = nn.Linear(in_dims, token_dim * num_heads)
        self.to_key = nn.Linear(in_dims, token_dim * num_heads)
        self.w_g = nn.Parameter(torch.randn(token_dim * num_heads, 1))
        self.scale_factor = token_dim**-0.5
        self.Proj = nn.Linear(token_dim * num_heads, token_dim * num_heads)
        self.final = nn.Linear(token_dim * num_heads, token_dim)

    def forward(self, x):
        query = self.to_query(x)
        key = self.to_key(x)
        query = F.normalize(query, dim=-1)
        key = F.normalize(key, dim=-1)
        query_weight = query @ self.w_g
        A = query_weight * self.scale_factor
        A = F.normalize(A, dim=1)
        G = torch.sum(A * query, dim=1)
        G = G.unsqueeze(1).repeat(1, key.shape[1], 1)  # einops.repeat(G, "b d -> b repeat d")
        out = self.Proj(G * key) + query
        out = self.final(out)
        return out


class SwiftFormerLocalRepresentation(ConvEncoder):
    def __init__(self, dim):
        super().__init__(dim, hidden_dim=dim)


class SwiftFormerEncoder(nn.Module):
    def __init__(self, dim, mlp_ratio=4.0, layer_scale_init_value=1e-5):
        super().__init__()
        self.local_representation = SwiftFormerLocalRepresentation(dim=dim)
        self.attn = EfficientAdditiveAttnetion(in_dims=dim, token_dim=dim, num_heads=1)
        self.linear = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(
            layer_scale_init_value * torch.ones(dim).unsqueeze(-1).unsqueeze(-1)
        )
        self.layer_scale_2 = nn.Parameter(
            layer_scale_init_value * torch.ones(dim).unsqueeze(-1).unsqueeze(-1)
        )

    def forward(self, x):
        x = self.local_representation(x)
        B, C, H, W = x.shape
        x = x + self.layer_scale_1 * self.attn(x.permute(0, 2, 3, 1).reshape(B, H * W, C)).reshape(
            B, H, W, C
        ).permute(0, 3, 1, 2)
        x = x + self.layer_scale_2 * self.linear(x)
        return x


def Stage(dim, index, layers, mlp_ratio=4.0, vit_num=1):  # noqa: N802 (official name)
    blocks = []
    for block_idx in range(layers[index]):
        if layers[index] - block_idx <= vit_num:
            blocks.append(SwiftFormerEncoder(dim, mlp_ratio=mlp_ratio))
        else:
            blocks.append(ConvEncoder(dim=dim, hidden_dim=int(mlp_ratio * dim), kernel_size=3))
    return nn.Sequential(*blocks)


class SwiftFormer(nn.Module):
    def __init__(self, layers, embed_dims, num_classes=1000):
        super().__init__()
        self.patch_embed = stem(3, embed_dims[0])
        network = []
        for i in range(len(layers)):
            network.append(Stage(embed_dims[i], i, layers))
            if i >= len(layers) - 1:
                break
            network.append(Embedding(embed_dims[i], embed_dims[i + 1]))
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.dist_head = nn.Linear(embed_dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for block in self.network:
            x = block(x)
        x = self.norm(x)
        cls_out = self.head(x.flatten(2).mean(-1)), self.dist_head(x.flatten(2).mean(-1))
        if not self.training:
            cls_out = (cls_out[0] + cls_out[1]) / 2
        return cls_out


def official_swiftformer(variant: str) -> SwiftFormer:
    """``variant`` in xs, s, l1, l3."""
    return SwiftFormer(DEPTHS[variant], WIDTHS[variant])
