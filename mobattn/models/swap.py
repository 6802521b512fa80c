"""The one rule that sets a swapped-in token mixer's settings from the block's width.

A controlled comparison needs every mechanism configured by the same rule, so it is
written down once here and shown by ``mobattn info``:

Each mechanism states its part of the rule next to its code (``swap_kwargs``):

- ``eaa`` keeps the official SwiftFormer setting: ``num_heads=1``.
- every other mechanism gets ``num_heads`` = the largest divisor of ``dim`` that is at
  most ``max(2, dim // 32)`` (heads of about 32 channels, at least two heads where
  ``dim`` is even, so HiLo always has both a Hi-Fi and a Lo-Fi head);
- ``hilo`` uses the LITv2 defaults ``window_size=2``, ``alpha=0.5``;
- ``separable`` has a single context vector: no heads.
"""

from __future__ import annotations

from mobattn.attention import get_attention_class, list_attentions
from mobattn.attention.base import HEAD_WIDTH, heads_for

__all__ = ["HEAD_WIDTH", "heads_for", "mixer_kwargs"]


def mixer_kwargs(attention: str, dim: int) -> dict:
    """Keyword arguments for ``create_attention(attention, dim, **kwargs)`` in a block:
    the mechanism's own ``swap_kwargs`` (each mechanism carries its settings). A family's
    own attention that is not a registered mechanism (EfficientFormer's) has none here."""
    if attention not in list_attentions():
        return {}
    return get_attention_class(attention).swap_kwargs(dim)
