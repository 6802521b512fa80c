"""SwiftFormer: official state_dicts, the reference output, published figures, swaps, weights."""

import json

import pytest
import torch

import mobattn
from helpers import DATA, load_case, relative_error
from mobattn import MobattnError
from mobattn.flops import count_macs, count_params
from mobattn.models.swap import heads_for, mixer_kwargs

OFFICIAL_KEYS = json.loads((DATA / "swiftformer_state_dict.json").read_text())


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEYS))
def test_state_dict_matches_official_key_for_key(name):
    model = mobattn.create_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(OFFICIAL_KEYS[name])
    assert ours == OFFICIAL_KEYS[name]


def test_reference_output_of_official_xs():
    meta, state_dict, x, y_ref = load_case(DATA / "model_swiftformer_xs.npz")
    model = mobattn.create_model(meta["model"]).eval()
    model.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        y = model(x)
    assert relative_error(y, y_ref) < 1e-4


@pytest.mark.parametrize("name", [m for m in mobattn.list_models() if m.startswith("swiftformer")])
def test_params_and_macs_agree_with_published_at_224(name):
    model = mobattn.create_model(name).eval()
    published = model.config.published
    assert round(count_params(model) / 1e6, 1) == published.params_m
    assert round(count_macs(model, torch.zeros(1, 3, 224, 224)) / 1e9, 1) == published.gmacs


def _with_published_figures() -> list[str]:
    """The models that carry published figures (a new family may have none: it shows n/a)."""
    from mobattn.models import get_model_config

    return [m for m in mobattn.list_models() if get_model_config(m).published and not m.startswith("swift")]


@pytest.mark.parametrize("name", _with_published_figures())
def test_other_families_agree_with_the_figures_their_papers_give(name):
    """Params at the papers' rounding (DeiT-Ti's "5M" is 5.72M, so within 15%); where a
    paper's figure could not be found in its primary source, mobattn publishes none."""
    model = mobattn.create_model(name).eval()
    published = model.config.published
    assert published.top1 > 70 and published.source
    if published.params_m is not None:
        assert abs(count_params(model) / 1e6 - published.params_m) <= 0.15 * published.params_m
    assert published.latency_ms is None or published.latency_device


@pytest.mark.parametrize("attention", mobattn.list_attentions())
@pytest.mark.parametrize("size", [224, 320])
def test_every_swap_builds_and_runs(attention, size):
    model = mobattn.create_model("swiftformer_xs", attention=attention).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, size, size))
    assert y.shape == (1, 1000)
    assert torch.isfinite(y).all()
    mixers = [m.attn for m in model.modules() if hasattr(m, "local_representation")]
    assert len(mixers) == 4
    assert all(type(m) is mobattn.attention.get_attention_class(attention) for m in mixers)


def test_swap_changes_only_the_token_mixers():
    base = mobattn.create_model("swiftformer_s")
    swapped = mobattn.create_model("swiftformer_s", attention="mhsa")
    strip = lambda sd: {k: v.shape for k, v in sd.items() if ".attn." not in k}  # noqa: E731
    assert strip(base.state_dict()) == strip(swapped.state_dict())


def test_swap_rule_is_deterministic_and_divides():
    for dim in (48, 56, 64, 96, 112, 128, 168, 192, 220, 224, 320, 384, 512):
        heads = heads_for(dim)
        assert dim % heads == 0 and heads >= 1
        assert heads >= 2 or dim % 2  # HiLo gets both head groups wherever dim allows
    assert mixer_kwargs("eaa", 220) == {"num_heads": 1}
    assert mixer_kwargs("hilo", 64) == {"num_heads": 2, "window_size": 2, "alpha": 0.5}


@pytest.mark.parametrize("size", [32, 33, 97])
def test_small_and_odd_resolutions_run(size):
    model = mobattn.create_model("swiftformer_xs", attention="hilo").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size + 5)).shape == (1, 1000)


def test_training_mode_returns_both_heads():
    model = mobattn.create_model("swiftformer_xs").train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, tuple) and len(out) == 2


def test_model_carries_preprocessing_and_provenance():
    config = mobattn.get_model_config("swiftformer_l3")
    assert config.input_size == (3, 224, 224)
    assert config.interpolation == "bicubic" and 0 < config.crop_pct <= 1
    assert config.published.top1 == 83.0 and "ICCV 2023" in config.published.source


# --- weights ----------------------------------------------------------------------


@pytest.fixture
def official_xs(tmp_path):
    _, state_dict, x, y = load_case(DATA / "model_swiftformer_xs.npz")
    return state_dict, x, y


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_weights_load_bare_or_wrapped(tmp_path, official_xs, wrap):
    state_dict, x, y_ref = official_xs
    path = tmp_path / "ckpt.pth"
    torch.save(state_dict if wrap is None else {wrap: state_dict, "epoch": 3}, path)
    model = mobattn.create_model("swiftformer_xs", weights=path).eval()
    with torch.no_grad():
        assert relative_error(model(x), y_ref) < 1e-4


def test_missing_weights_file(tmp_path):
    with pytest.raises(MobattnError, match="not found"):
        mobattn.create_model("swiftformer_xs", weights=tmp_path / "nope.pth")


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(MobattnError, match="cannot read weights"):
        mobattn.create_model("swiftformer_xs", weights=path)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that needs arbitrary code does not load."""
    path = tmp_path / "evil.pth"
    torch.save({"model": object()}, path)
    with pytest.raises(MobattnError, match="cannot read weights"):
        mobattn.create_model("swiftformer_xs", weights=path)


def test_mismatched_weights_name_the_first_keys(tmp_path, official_xs):
    state_dict, _, _ = official_xs
    path = tmp_path / "xs.pth"
    torch.save(state_dict, path)
    with pytest.raises(MobattnError) as info:
        mobattn.create_model("swiftformer_s", weights=path)
    message = str(info.value)
    assert "\n" not in message
    assert "missing: network.4.5.layer_scale" in message
    assert "unexpected: network.4.5.layer_scale_1" in message
    assert "mis-shaped: network.1.proj.weight (56, 48, 3, 3) vs (64, 48, 3, 3)" in message
