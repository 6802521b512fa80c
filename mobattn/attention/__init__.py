"""Token mixers: one file per mechanism, all registered by name."""

from .base import Cost, TokenMixer
from .eaa import EfficientAdditiveAttention
from .external import ExternalAttention, ExternalAttentionBlock
from .hilo import HiLo
from .mhsa import MultiHeadSelfAttention
from .registry import create_attention, get_attention_class, list_attentions, register_attention
from .separable import SeparableSelfAttention
from .ufo import UFOAttention

__all__ = [
    "Cost",
    "TokenMixer",
    "EfficientAdditiveAttention",
    "ExternalAttention",
    "ExternalAttentionBlock",
    "HiLo",
    "MultiHeadSelfAttention",
    "SeparableSelfAttention",
    "UFOAttention",
    "create_attention",
    "get_attention_class",
    "list_attentions",
    "register_attention",
]
