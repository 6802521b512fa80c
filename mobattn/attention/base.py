"""What every token mixer shares: the shape contract and the cost record."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mobattn.errors import MobattnError
from mobattn.flops import count_params  # noqa: F401  (re-exported for the modules)


@dataclass(frozen=True)
class Cost:
    """Analytic cost of one forward pass at batch 1.

    ``macs`` counts the multiply-accumulates of the matrix products (linear layers,
    matmuls, attention products). Element-wise work (normalisation, softmax, pooling,
    bias adds) is not counted; each module's docstring names what it leaves out.
    """

    macs: int
    params: int


def check_positive(**sizes: int) -> None:
    """Raise a user error naming the first size that is not a positive integer."""
    for name, value in sizes.items():
        if not isinstance(value, int) or value <= 0:
            raise MobattnError(f"{name} must be a positive integer, got {value!r}")


def check_divisible(dim: int, num_heads: int) -> None:
    check_positive(dim=dim, num_heads=num_heads)
    if dim % num_heads:
        raise MobattnError(f"dim {dim} is not divisible by num_heads {num_heads}")


def check_tokens(x: torch.Tensor, hw: tuple[int, int]) -> tuple[int, int, int, int, int]:
    """Validate ``x`` of shape (B, N, C) against ``hw``; return B, N, C, H, W."""
    if x.dim() != 3:
        raise MobattnError(f"expected x of shape (B, N, C), got {tuple(x.shape)}")
    B, N, C = x.shape
    H, W = hw
    # Under tracing/export the sizes may be symbolic: only check concrete ints.
    if not torch.jit.is_tracing() and isinstance(N, int) and isinstance(H, int) and N != H * W:
        raise MobattnError(f"x has {N} tokens but hw={H}x{W} needs {H * W}")
    return B, N, C, H, W


HEAD_WIDTH = 32  # the swap rule's channels per head


def heads_for(dim: int) -> int:
    """Largest divisor of ``dim`` not above ``max(2, dim // HEAD_WIDTH)``: heads of about
    32 channels, at least two where ``dim`` is even."""
    limit = max(2, dim // HEAD_WIDTH)
    return max(h for h in range(1, limit + 1) if dim % h == 0)


class TokenMixer(nn.Module):
    """Base class: ``forward(x, hw)`` maps (B, N, C) to (B, N, C)."""

    summary = ""  # one line for listings

    @classmethod
    def swap_kwargs(cls, dim: int) -> dict:
        """This mechanism's settings when swapped into a block of width ``dim`` (the swap
        rule of :mod:`mobattn.models.swap`): ``num_heads`` from :func:`heads_for`. A
        mechanism with other settings overrides this, next to its own code."""
        return {"num_heads": heads_for(dim)}

    def cost(self, hw: tuple[int, int]) -> Cost:  # pragma: no cover - abstract
        raise NotImplementedError
