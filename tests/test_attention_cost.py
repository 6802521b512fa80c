"""Analytic MACs against torch's own FLOP counter (matrix products only)."""

import pytest
import torch

import mobattn
from mobattn.flops import count_macs, count_params

# every registered mechanism at its swap-rule settings (a new one is tested by default),
# then settings of particular interest
SETTINGS = [
    (name, mobattn.attention.get_attention_class(name).swap_kwargs(96)) for name in mobattn.list_attentions()
]
SETTINGS += [
    ("eaa", {"num_heads": 1}),
    ("eaa", {"num_heads": 2}),
    ("hilo", {"num_heads": 6, "window_size": 2, "alpha": 0.5}),
    ("hilo", {"num_heads": 6, "window_size": 1, "alpha": 0.5}),
    ("hilo", {"num_heads": 6, "window_size": 3, "alpha": 0.0}),
    ("hilo", {"num_heads": 6, "window_size": 2, "alpha": 1.0}),
    ("external", {"num_heads": 8}),
    ("ufo", {"num_heads": 4}),
    ("mhsa", {"num_heads": 4}),
]


@pytest.mark.parametrize("hw", [(14, 14), (13, 11), (1, 1)])
@pytest.mark.parametrize(("name", "kwargs"), SETTINGS, ids=lambda s: str(s))
def test_analytic_macs_match_flop_counter(name, kwargs, hw):
    module = mobattn.create_attention(name, 96, **kwargs).eval()
    measured = count_macs(module, torch.randn(1, hw[0] * hw[1], 96), hw)
    cost = module.cost(hw)
    assert measured > 0
    assert abs(cost.macs - measured) <= 0.01 * measured
    assert cost.params == count_params(module)


@pytest.mark.parametrize(
    ("name", "growth"), [("eaa", 4), ("external", 4), ("ufo", 4), ("mhsa", 16), ("hilo", 16)]
)
def test_cost_grows_as_the_mechanism_promises(name, growth):
    """4x the tokens: linear mechanisms cost 4x; MHSA and HiLo's Lo-Fi term grow
    quadratically, so their cost tends to 16x as tokens dominate the width."""
    module = mobattn.create_attention(name, 32, num_heads=2)
    small, large = module.cost((64, 64)).macs, module.cost((128, 128)).macs
    if growth == 4:
        assert large / small == pytest.approx(4, rel=1e-6)
    else:
        assert 12 < large / small <= 16
