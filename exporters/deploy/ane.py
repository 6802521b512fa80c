"""The Neural Engine's layout (``mobattn export --to coreml --layout ane``).

Apple's guidance for transformers on the ANE (apple/ml-ane-transformers and the article
"Deploying Transformers on the Apple Neural Engine"): 4-D channels-first tensors,
1x1 convs instead of linears on channels-last tokens, heads split on C, no transposes,
as few reshapes as possible, epsilons that survive fp16. Here every token mixer of a
SwiftFormer backbone takes the (B, C, H, W) map the convolutions already produce:

- ``eaa`` needs only 1x1 convs and reductions over the two token axes: no reshape at all;
- ``mhsa``, ``ufo`` and ``external`` contract over tokens, so they view the map as
  (B, C, 1, N) (one 4-D reshape in, one out) and run each head's products as einsums;
- ``separable`` needs its token scores' softmax on one axis: one reshape there and back;
- ``hilo`` stays in its reference form (its twin's ``caveat`` says why).

Each mechanism's ANE twin stands beside its XNNPACK twin in ``exporters/deploy/<name>.py``
(``@twin_of(Reference, "ane")``); this module holds what they share.

Projections are the reference Linear layers' own weights, reshaped at export time into
1x1 conv kernels held by the exported copy (:func:`prepare_pointwise`): a checkpoint keeps
its names and needs no conversion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobattn.attention.eaa import EfficientAdditiveAttention
from mobattn.attention.external import ExternalAttention
from mobattn.errors import MobattnError
from mobattn.models.swiftformer import SwiftFormerEncoder

from .ops import TWINS, Twin

FP16_TINY = 2.0**-14  # the smallest normal fp16: an epsilon below it is flushed or subnormal


def prepare_pointwise(mixer: nn.Module) -> None:
    """Give every Linear of ``mixer`` its 1x1-conv kernel as a buffer (External's per-head
    Linears repeated per head): reshaped once, at export time, so the exported conv has
    constant weights (XNNPACK delegates no conv whose weights are computed in the graph)."""
    groups_of = {}
    if isinstance(mixer, EfficientAdditiveAttention):  # the score vector, as a 1-output 1x1 conv
        mixer.register_buffer("w_g_conv", mixer.w_g.detach().t().reshape(1, -1, 1, 1))
    if isinstance(mixer, ExternalAttention):
        groups_of = {mixer.linear_0: mixer.num_heads, mixer.linear_1: mixer.num_heads}
    for linear in [m for m in mixer.modules() if isinstance(m, nn.Linear)]:
        groups = groups_of.get(linear, 1)
        weight = linear.weight.detach().reshape(*linear.weight.shape, 1, 1).repeat(groups, 1, 1, 1)
        bias = None if linear.bias is None else linear.bias.detach().repeat(groups)
        linear.register_buffer("conv_weight", weight)
        linear.register_buffer("conv_bias", bias)
        linear.conv_groups = groups


def pointwise(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``linear`` as a 1x1 conv on a (B, C, ., .) map, with the kernel
    :func:`prepare_pointwise` made from its parameters."""
    return F.conv2d(x, linear.conv_weight, linear.conv_bias, groups=linear.conv_groups)


def l2_normalize(x: torch.Tensor, dim, eps: float = FP16_TINY) -> torch.Tensor:
    """``x / max(||x||, eps)`` over ``dim`` (an fp16-normal epsilon)."""
    return x / torch.clamp(l2_norm(x, dim), min=eps)


def l2_norm(x: torch.Tensor, dim) -> torch.Tensor:
    """Core ML's own ``reduce_l2_norm``: squaring first would overflow fp16 past |x| = 256."""
    return torch.linalg.vector_norm(x, dim=dim, keepdim=True)


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 1, N): a 4-D reshape, no data movement."""
    B, C, H, W = x.shape
    return x.reshape(B, C, 1, H * W)


def heads_of(x: torch.Tensor, heads: int, axis: int = 1) -> list[torch.Tensor]:
    """Split ``axis`` (the channels) into ``heads`` equal chunks, as slices; one head is
    the tensor itself (a full slice exports as an alias Core ML does not convert)."""
    if heads == 1:
        return [x]
    return list(x.split(x.shape[axis] // heads, dim=axis))


def attention_heads(q, k, v, heads: int, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v per head on (B, C, 1, N) tensors, as Apple writes it.

    Core ML's einsum contracts the last axis of its first operand with axis -3 of its
    second ("nchw,nwhu->nchu"), so the keys are transposed once, to (B, N, 1, C); the
    scores then hold the keys on the channel axis and the softmax runs over it."""
    keys = heads_of(k.transpose(1, 3), heads, axis=3)  # the layer's one transpose
    outs = []
    for kh, qh, vh in zip(keys, heads_of(q, heads), heads_of(v, heads), strict=True):
        scores = torch.einsum("bkhc,bchq->bkhq", kh, qh) * scale
        outs.append(torch.einsum("bchk,bkhq->bchq", vh, scores.softmax(dim=1)))
    return torch.cat(outs, dim=1)


class AneSwiftFormerEncoder(SwiftFormerEncoder):
    """The encoder with its token mixer applied to the (B, C, H, W) map itself: no
    permute to (B, N, C) tokens and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        x = x + self.layer_scale_1 * self.attn(x)
        return x + self.layer_scale_2 * self.linear(x)


def ane_layout(model: nn.Module) -> dict:
    """Rewrite every SwiftFormerEncoder of ``model`` (in place) for the ANE layout;
    returns what the record says about it."""
    caveats = {}
    for block in model.modules():
        if isinstance(block, SwiftFormerEncoder):
            block.__class__ = AneSwiftFormerEncoder
            prepare_pointwise(block.attn)
            block.attn = ane_twin(type(block.attn))(block.attn)
            if block.attn.caveat:
                caveats[block.attn.ref.registry_name] = block.attn.caveat
    return {"layout": "ane", "caveats": caveats}


def ane_twin(mixer: type[nn.Module]) -> type[Twin]:
    """The ANE twin of the token mixer class ``mixer``: one clear line for a mechanism
    that has none yet."""
    twin = TWINS["ane"].get(mixer)
    if twin is None:
        name = getattr(mixer, "registry_name", mixer.__name__)
        raise MobattnError(
            f"--layout ane: {name} has no Neural Engine form yet (add one to exporters/deploy/{name}.py)"
        )
    return twin
