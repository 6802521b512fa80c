"""The one rule that sets a swapped-in token mixer's settings from the block's width.

A controlled comparison needs every mechanism configured by the same rule, so it is
written down once here and shown by ``mobattn info``:

- ``eaa`` keeps the official SwiftFormer setting: ``num_heads=1``.
- every other mechanism gets ``num_heads`` = the largest divisor of ``dim`` that is at
  most ``max(2, dim // 32)`` (heads of about 32 channels, at least two heads where
  ``dim`` is even, so HiLo always has both a Hi-Fi and a Lo-Fi head);
- ``hilo`` uses the LITv2 defaults ``window_size=2``, ``alpha=0.5``;
- ``separable`` has a single context vector: no heads.
"""

from __future__ import annotations

HEAD_WIDTH = 32


def heads_for(dim: int) -> int:
    """Largest divisor of ``dim`` not above ``max(2, dim // HEAD_WIDTH)``."""
    limit = max(2, dim // HEAD_WIDTH)
    return max(h for h in range(1, limit + 1) if dim % h == 0)


def mixer_kwargs(attention: str, dim: int) -> dict:
    """Keyword arguments for ``create_attention(attention, dim, **kwargs)`` in a block."""
    if attention in ("eaa", "separable"):
        return {"num_heads": 1}
    kwargs = {"num_heads": heads_for(dim)}
    if attention == "hilo":
        kwargs.update(window_size=2, alpha=0.5)
    return kwargs
