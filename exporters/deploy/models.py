"""Each family's head in the deployable form: global pooling as a keepdim mean over
the two innermost axes of a 4-D tensor (XNNPACK's global average pooling), the class
token as a slice. Installed by swapping the model's class (same modules, same state)."""

from __future__ import annotations

import torch

from mobattn.errors import MobattnError
from mobattn.models.deit import VisionTransformer
from mobattn.models.efficientformer import EfficientFormer
from mobattn.models.mobilevit import MobileViT
from mobattn.models.swiftformer import SwiftFormer


def pool_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B, C): the mean over tokens."""
    B, N, C = x.shape
    return x.transpose(1, 2).reshape(B, C, N, 1).mean(dim=(2, 3), keepdim=True).reshape(B, C)


class DeploySwiftFormer(SwiftFormer):
    def forward(self, x: torch.Tensor):
        if self.dist:
            raise MobattnError("fold the two heads before taking the deployable form")
        return self.head(self.forward_features(x).mean(dim=(2, 3), keepdim=True).flatten(1))


class DeployEfficientFormer(EfficientFormer):
    def forward(self, x: torch.Tensor):
        pooled = pool_tokens(self.forward_features(x))
        if not self.dist:
            return self.head(pooled)
        return (self.head(pooled) + self.dist_head(pooled)) * 0.5  # a float: an int becomes a cast constant


class DeployMobileViT(MobileViT):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(self.stages(self.stem(x)))
        return self.head.fc(x.mean(dim=(2, 3), keepdim=True).flatten(1))


class DeployViT(VisionTransformer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token if x.shape[0] == 1 else self.cls_token.expand(x.shape[0], -1, -1)
        x = self.norm(self.blocks(torch.cat([cls, x], dim=1) + self.pos_embed))
        return self.head(x[:, :1].reshape(x.shape[0], -1))


MODELS = {
    SwiftFormer: DeploySwiftFormer,
    EfficientFormer: DeployEfficientFormer,
    MobileViT: DeployMobileViT,
    VisionTransformer: DeployViT,
}
