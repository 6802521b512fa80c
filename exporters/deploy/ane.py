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
- ``hilo`` stays in its reference form (see ``CAVEATS``).

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
from mobattn.attention.hilo import HiLo
from mobattn.attention.mhsa import MultiHeadSelfAttention
from mobattn.attention.separable import SeparableSelfAttention
from mobattn.attention.ufo import UFOAttention
from mobattn.models.swiftformer import SwiftFormerEncoder

from .ops import Twin

FP16_TINY = 2.0**-14  # the smallest normal fp16: an epsilon below it is flushed or subnormal

# What the ANE layout could not make transpose-free, per mechanism (copied into the record).
CAVEATS = {
    "mhsa": "one transpose per layer, of the keys to (B, N, 1, C): Core ML's einsum contracts the "
    "last axis of one operand with axis -3 of the other, so one operand of q.k must hold its channels "
    "last (Apple's reference implementation transposes the keys the same way)",
    "ufo": "one transpose per layer, of the keys to (B, N, 1, C), for K^T V (as for mhsa)",
    "hilo": "left in its reference form: Hi-Fi's window partition interleaves both spatial axes, "
    "which needs transposes in any layout, and a partial rewrite (Lo-Fi in the (B, C, 1, N) layout) "
    "measured worse than the reference in swiftformer_s (125 ops at risk instead of 109, 2.4x "
    "slower on CPU)",
}


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


class AneEAA(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        query = l2_normalize(pointwise(ref.to_query, x), dim=1)
        key = l2_normalize(pointwise(ref.to_key, x), dim=1)
        scores = F.conv2d(query, ref.w_g_conv) * ref.scale_factor  # (B, 1, H, W)
        if ref.score_norm == "l2":
            scores = l2_normalize(scores, dim=(2, 3))
        else:
            B, _, H, W = scores.shape
            scores = scores.reshape(B, 1, 1, H * W).softmax(dim=-1).reshape(B, 1, H, W)
        global_query = (scores * query).sum(dim=(2, 3), keepdim=True)  # (B, D, 1, 1)
        return pointwise(ref.final, pointwise(ref.Proj, global_query * key) + query)


class AneMHSA(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        C = x.shape[1]
        qkv = pointwise(ref.qkv, as_sequence(x))
        q, k, v = qkv[:, :C], qkv[:, C : 2 * C], qkv[:, 2 * C :]
        out = pointwise(ref.proj, attention_heads(q, k, v, ref.num_heads, ref.scale))
        return out.reshape(x.shape)


class AneUFO(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        t = as_sequence(x)
        q, k, v = pointwise(ref.fc_q, t), pointwise(ref.fc_k, t), pointwise(ref.fc_v, t)
        gamma = ref.gamma.reshape(-1)
        heads = ref.num_heads
        keys = heads_of(k.transpose(1, 3), heads, axis=3)  # the layer's one transpose (see attention_heads)
        outs = []
        parts = zip(keys, heads_of(q, heads), heads_of(v, heads), strict=True)
        for i, (kh, qh, vh) in enumerate(parts):
            kv_t = torch.einsum("bchn,bnhe->bche", vh, kh)  # (K^T V)^T
            kv_t = kv_t * gamma[i] / l2_norm(kv_t, dim=1)  # XNorm over d_v
            qh = qh * gamma[i] / l2_norm(qh, dim=1)
            outs.append(torch.einsum("behc,bchn->behn", kv_t, qh))
        return pointwise(ref.fc_o, torch.cat(outs, dim=1)).reshape(x.shape)


class AneExternal(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        heads, k = ref.num_heads, ref.k
        wide = pointwise(ref.trans_dims, as_sequence(x))  # (B, 4C, 1, N), heads on C
        attn = pointwise(ref.linear_0, wide).softmax(dim=-1)  # over tokens
        B, _, _, N = attn.shape
        grouped = attn.reshape(B, heads, k, N)
        grouped = grouped / (FP16_TINY + grouped.sum(dim=2, keepdim=True))  # l1 over memory units
        out = pointwise(ref.linear_1, grouped.reshape(B, heads * k, 1, N))
        return pointwise(ref.proj, out).reshape(x.shape)


class AneHiLo(Twin):
    """HiLo stays in its reference form on (B, N, C) tokens (see ``CAVEATS``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)
        return self.ref(tokens, (H, W)).reshape(B, H, W, C).permute(0, 3, 1, 2)


class AneSeparable(Twin):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.ref
        B, _, H, W = x.shape
        query, key, value = pointwise(ref.qkv_proj, x).split([1, ref.dim, ref.dim], dim=1)
        scores = query.reshape(B, 1, 1, H * W).softmax(dim=-1).reshape(B, 1, H, W)  # over tokens
        context = (key * scores).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return pointwise(ref.out_proj, F.relu(value) * context)


class AneSwiftFormerEncoder(SwiftFormerEncoder):
    """The encoder with its token mixer applied to the (B, C, H, W) map itself: no
    permute to (B, N, C) tokens and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        x = x + self.layer_scale_1 * self.attn(x)
        return x + self.layer_scale_2 * self.linear(x)


MIXERS: dict[type[nn.Module], type[nn.Module]] = {
    EfficientAdditiveAttention: AneEAA,
    MultiHeadSelfAttention: AneMHSA,
    UFOAttention: AneUFO,
    ExternalAttention: AneExternal,
    HiLo: AneHiLo,
    SeparableSelfAttention: AneSeparable,
}


def ane_layout(model: nn.Module) -> dict:
    """Rewrite every SwiftFormerEncoder of ``model`` (in place) for the ANE layout;
    returns what the record says about it."""
    mechanisms = set()
    for block in model.modules():
        if isinstance(block, SwiftFormerEncoder):
            block.__class__ = AneSwiftFormerEncoder
            prepare_pointwise(block.attn)
            block.attn = MIXERS[type(block.attn)](block.attn)
            mechanisms.add(type(block.attn.ref).__name__)
    caveats = {name: text for name, text in CAVEATS.items() if any(name in m.lower() for m in mechanisms)}
    return {"layout": "ane", "caveats": caveats}
