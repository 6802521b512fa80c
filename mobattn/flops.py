"""Measured cost through torch's own FLOP counter.

The counter has no formula for the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to on CPU, so we lend it the formula it
already uses for the CUDA kernels; without it MHSA would count as free.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter

_aten = torch.ops.aten


def _sdpa_forward_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict:
    formulas = {}
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_fused_attention_overrideable",
    ):
        op = getattr(_aten, name, None)
        if op is not None:
            formulas[op] = _sdpa_forward_flop
    return formulas


@torch.no_grad()
def count_macs(module: nn.Module, *inputs) -> int:
    """Multiply-accumulates of one forward pass (matmuls, convolutions, attention)."""
    with flop_counter.FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
        module(*inputs)
    return counter.get_total_flops() // 2


def warm_up() -> None:
    """Count a tiny layer's MACs once: the first count in a process costs most of a second
    (torch's dispatch machinery warming up), which a warm template (:mod:`mobattn.bench.
    forkserver`) then pays once for all the children it forks, not once per configuration."""
    count_macs(nn.Linear(2, 2), torch.zeros(1, 2))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
