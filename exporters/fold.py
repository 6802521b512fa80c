"""Inference-time folding that is exact in real arithmetic.

The ONNX exporter already folds every BatchNorm that follows a convolution. What it
leaves are the BatchNorms that come *before* a linear map (SwiftFormer's MLP norm
before its first 1x1 conv, and the final norm before pooling and the heads), and the
two classifier heads that eval mode averages. All of them fold into the linear map
after them, so the exported graph carries no BatchNorm and one head.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mobattn.models.swiftformer import Mlp, SwiftFormer


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm in eval mode as ``scale * x + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _absorb_affine(layer: nn.Conv2d | nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make ``layer(x)`` compute ``layer(scale * x + shift)`` (1x1 convs and linears)."""
    weight = layer.weight.reshape(layer.weight.shape[0], -1)  # (out, in)
    layer.bias.copy_(layer.bias + weight @ shift)
    layer.weight.copy_((weight * scale).reshape(layer.weight.shape))


@torch.no_grad()
def _fold_mlp(mlp: Mlp) -> None:
    if isinstance(mlp.norm1, nn.BatchNorm2d) and mlp.fc1.kernel_size == (1, 1):
        _absorb_affine(mlp.fc1, *_bn_affine(mlp.norm1))
        mlp.norm1 = nn.Identity()


@torch.no_grad()
def _fold_head(model: SwiftFormer) -> None:
    """Average the two heads into one, then absorb the final norm (it commutes with
    the global mean pooling, both being per-channel affine)."""
    if model.dist:
        head = copy.deepcopy(model.head)
        head.weight.copy_((model.head.weight + model.dist_head.weight) / 2)
        head.bias.copy_((model.head.bias + model.dist_head.bias) / 2)
        model.head, model.dist = head, False
        del model.dist_head
    if isinstance(model.norm, nn.BatchNorm2d):
        _absorb_affine(model.head, *_bn_affine(model.norm))
        model.norm = nn.Identity()


def fold_for_inference(module: nn.Module) -> nn.Module:
    """A folded copy of ``module`` in eval mode (the original is left untouched)."""
    folded = copy.deepcopy(module).eval()
    for sub in folded.modules():
        if isinstance(sub, Mlp):
            _fold_mlp(sub)
    for sub in folded.modules():
        if isinstance(sub, SwiftFormer):
            _fold_head(sub)
    return folded
