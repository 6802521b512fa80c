"""Properties every token mixer keeps, over random sizes (hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mobattn
from mobattn import MobattnError

NAMES = mobattn.list_attentions()


@st.composite
def configs(draw):
    name = draw(st.sampled_from(NAMES))
    heads = 1 if name == "separable" else draw(st.integers(1, 4))  # one context vector
    dim = heads * draw(st.integers(1, 8)) * 2
    kwargs = {"num_heads": heads}
    if name == "hilo":
        kwargs.update(window_size=draw(st.integers(1, 3)), alpha=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])))
    batch = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    return name, dim, kwargs, batch, (h, w)


@settings(max_examples=60, deadline=None)
@given(configs())
def test_shape_finite_and_batch_independent(config):
    name, dim, kwargs, batch, hw = config
    torch.manual_seed(0)
    module = mobattn.create_attention(name, dim, **kwargs).eval()
    x = torch.randn(batch, hw[0] * hw[1], dim)
    with torch.no_grad():
        y = module(x, hw)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()
        # each sample's output depends on that sample alone
        for i in range(batch):
            alone = module(x[i : i + 1], hw)
            torch.testing.assert_close(y[i : i + 1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_token_count_is_a_clear_error(name):
    module = mobattn.create_attention(name, 16, num_heads=1 if name == "separable" else 2)
    with pytest.raises(MobattnError, match="tokens but hw=4x4"):
        module(torch.randn(1, 15, 16), (4, 4))


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("eaa", "separable")])
def test_dim_not_divisible_by_heads_is_a_clear_error(name):
    with pytest.raises(MobattnError, match="not divisible"):
        mobattn.create_attention(name, 30, num_heads=4)


@pytest.mark.parametrize("name", NAMES)
def test_non_positive_sizes_are_clear_errors(name):
    with pytest.raises(MobattnError, match="positive"):
        mobattn.create_attention(name, 0, num_heads=1)


def test_unknown_attention_suggests_the_closest():
    with pytest.raises(MobattnError, match="did you mean hilo"):
        mobattn.create_attention("hil", 16)


def test_unknown_keyword_is_a_clear_error():
    with pytest.raises(MobattnError, match="window_size"):
        mobattn.create_attention("mhsa", 16, window_size=2)


def test_separable_takes_no_heads():
    with pytest.raises(MobattnError, match="takes no heads"):
        mobattn.create_attention("separable", 16, num_heads=2)
