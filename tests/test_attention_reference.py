"""Every official reference case, by the protocol in tests/data/README.md."""

import pytest
import torch

import mobattn
from helpers import DATA, load_case, relative_error

CASES = sorted(DATA.glob("attention_*.npz"))


def test_every_mechanism_has_a_case():
    """``separable``'s reference is its own family's model (tests/test_zoo.py)."""
    names = {load_case(path)[0]["attention"] for path in CASES}
    assert names == set(mobattn.list_attentions()) - {"separable"}


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_reference_case(path):
    meta, state_dict, x, y_ref = load_case(path)
    module = mobattn.create_attention(meta["attention"], **meta["config"]).eval()
    module.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        y = module(x, tuple(meta["hw"]))
    assert y.shape == y_ref.shape
    assert relative_error(y, y_ref) < 1e-5


def test_eaa_softmax_option_differs_from_official_and_is_a_distribution():
    """The paper's softmax form is a real alternative, not an alias of the code's."""
    meta, state_dict, x, _ = load_case(DATA / "attention_eaa_h1.npz")
    official = mobattn.create_attention("eaa", **meta["config"]).eval()
    paper = mobattn.create_attention("eaa", score_norm="softmax", **meta["config"]).eval()
    official.load_state_dict(state_dict)
    paper.load_state_dict(state_dict)
    with torch.no_grad():
        assert not torch.allclose(official(x, (7, 7)), paper(x, (7, 7)), atol=1e-4)


def test_external_block_keeps_feature_map_shape():
    block = mobattn.attention.ExternalAttentionBlock(32).eval()
    x = torch.randn(2, 32, 5, 7)
    with torch.no_grad():
        y = block(x)
    assert y.shape == x.shape
    assert (y >= 0).all()  # ends in a ReLU
    # value memory starts tied to the key memory
    assert torch.equal(block.linear_1.weight, block.linear_0.weight.permute(1, 0, 2))
