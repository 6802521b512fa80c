"""The comparison zoo: EfficientFormer, DeiT, MobileViT and MobileViTv2 against the
reference cases of their official / timm implementations (tests/data/zoo, protocol in
its README: weights derived from key names)."""

import json
import zlib

import numpy as np
import pytest
import torch

import mobattn
from helpers import DATA, assert_one_line_error, relative_error
from mobattn.models import mobilevit

ZOO = DATA / "zoo"
CASES = {  # mobattn name -> reference name
    "efficientformer_l1": "efficientformer_l1",
    "efficientformer_l3": "efficientformer_l3",
    "efficientformer_l7": "efficientformer_l7",
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_small": "deit_small_patch16_224",
    "mobilevit_xs": "mobilevit_xs",
    "mobilevit_s": "mobilevit_s",
    "mobilevitv2_100": "mobilevitv2_100",
}


def derived_weights(entries: list) -> dict[str, torch.Tensor]:
    """The protocol's weights: randn seeded by the key's CRC-32, * 0.05, BatchNorm
    variances positive, 1-D weights around 1."""
    weights = {}
    for key, shape, dtype in entries:
        if not dtype.startswith("float"):
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        value = torch.randn(shape, generator=generator, dtype=torch.float32) * 0.05
        if key.endswith("running_var"):
            value = value.abs() + 0.5
        elif key.endswith(".weight") and len(shape) == 1:
            value = value + 1.0
        weights[key] = value
    return weights


@pytest.mark.parametrize("name", list(CASES))
def test_zoo_case(name):
    keys = json.loads((ZOO / f"{CASES[name]}.keys.json").read_text())
    case = np.load(ZOO / f"{CASES[name]}.npz")
    model = mobattn.create_model(name)
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    assert ours == {k: (shape, dtype) for k, shape, dtype in keys["state_dict"]}
    assert sum(p.numel() for p in model.parameters()) == keys["params"]
    state = model.state_dict()
    for key in case.files:  # integer buffers the model builds itself
        if key.startswith("int/"):
            assert torch.equal(state[key[4:]], torch.from_numpy(case[key])), key
    weights = derived_weights(keys["state_dict"])
    model.load_state_dict({**state, **weights}, strict=True)
    model.eval()  # after loading: EfficientFormer caches its attention biases here
    with torch.no_grad():
        y = model(torch.from_numpy(case["x"]))
    assert relative_error(y, torch.from_numpy(case["y"])) < 1e-4


def test_separable_mechanism_is_mobilevitv2s_attention():
    """The registered ``separable`` on (B, N, C) tokens is MobileViTv2's
    LinearSelfAttention on (B, C, 1, N) with the same (1x1 conv) weights."""
    torch.manual_seed(0)
    block = mobilevit.LinearSelfAttention(24).eval()
    mixer = mobattn.create_attention("separable", 24).eval()
    mixer.qkv_proj.weight.data = block.qkv_proj.weight.data[:, :, 0, 0].clone()
    mixer.qkv_proj.bias.data = block.qkv_proj.bias.data.clone()
    mixer.out_proj.weight.data = block.out_proj.weight.data[:, :, 0, 0].clone()
    mixer.out_proj.bias.data = block.out_proj.bias.data.clone()
    x = torch.randn(2, 35, 24)
    with torch.no_grad():
        reference = block(x.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)
        assert relative_error(mixer(x, (5, 7)), reference) < 1e-6


@pytest.mark.parametrize("attention", [a for a in mobattn.list_attentions()])
def test_efficientformer_swaps_only_its_attention(attention):
    own = mobattn.create_model("efficientformer_l1").state_dict()
    swapped = mobattn.create_model("efficientformer_l1", attention=attention)
    keys = set(swapped.state_dict())
    assert {k for k in own if ".token_mixer." not in k or k.startswith("network.0")} <= keys
    changed = (keys ^ set(own)) - {k for k in keys & set(own) if ".token_mixer." not in k}
    assert all(".token_mixer." in k for k in changed)
    with torch.no_grad():  # a swapped model is not tied to 224x224
        assert swapped.eval()(torch.randn(1, 3, 256, 192)).shape == (1, 1000)


def test_mobilevit_takes_sizes_that_are_not_whole_patches():
    """timm resizes a map to whole patches (and v1 back): 224 gives a 7x7 last map."""
    for name in ("mobilevit_xs", "mobilevitv2_100"):
        with torch.no_grad():
            y = mobattn.create_model(name).eval()(torch.randn(1, 3, 224, 224))
        assert y.shape == (1, 1000) and torch.isfinite(y).all()


def test_swaps_and_sizes_a_family_does_not_take_are_user_errors(cli):
    assert_one_line_error(cli("info --model deit_tiny --attention hilo"), "class token")
    assert_one_line_error(cli("export --model mobilevit_xs --attention eaa --out x"), "2x2 patches")
    assert_one_line_error(cli("export --model deit_small --resolution 256 --out x"), "224x224 inputs only")
    assert_one_line_error(cli("bench --model efficientformer_l1 --resolution 320"), "224x224 inputs only")
    result = cli("info --model deit_tiny")
    assert result.code == 0 and "no like-for-like swap" in result.out


@pytest.mark.slow
def test_list_models_shows_each_family_at_its_input_size(cli):
    result = cli("list models --json")
    assert result.code == 0, result.err
    infos = {i["model"]: i for i in result.json()}
    assert set(infos) == set(mobattn.list_models())
    assert infos["mobilevit_xs"]["resolution"] == [256, 256] and infos["deit_tiny"]["resolution"] == [
        224,
        224,
    ]
    assert infos["efficientformer_l1"]["published_latency_ms"] == 1.6
    assert infos["efficientformer_l3"]["published_latency_ms"] is None  # not found in the primary source
    assert not infos["deit_tiny"]["swappable"] and infos["efficientformer_l1"]["swappable"]


@pytest.mark.slow
def test_the_papers_swap_experiment_exports_everywhere(tmp_path, cli):
    """`mobattn export --model efficientformer_l1 --attention eaa` is SwiftFormer's first
    experiment; every target validates it."""
    pytest.importorskip("executorch")
    targets = "onnx,coreml,executorch"
    result = cli(f"export --model efficientformer_l1 --attention eaa --to {targets} --out {tmp_path} --json")
    assert result.code == 0, result.err
    records = result.json()
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]
    assert records[0]["path"].endswith("efficientformer_l1-eaa-224.onnx")
    assert records[2]["details"]["not_delegated"] == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deit_tiny", "mobilevit_xs", "mobilevitv2_100", "efficientformer_l1"])
def test_every_family_exports_whole_to_the_mobile_runtimes(tmp_path, name):
    from mobattn.exporters import export, model_subject
    from mobattn.exporters.mobile_check import one_partition

    subject = model_subject(name, resolution=tuple(mobattn.get_model_config(name).input_size[1:]))
    onnx_record = export(subject, "onnx", tmp_path, form="mobile")
    assert onnx_record.status == "ok", onnx_record.reason
    for provider in ("nnapi", "coreml_mlprogram"):
        assert one_partition(onnx_record.details["mobile_usability"][provider]), provider
    pytest.importorskip("executorch")
    record = export(subject, "executorch", tmp_path)
    assert record.status == "ok", record.reason
    assert record.details["not_delegated"] == {}


def test_a_table_of_swaps_no_model_takes_is_refused(cli, tmp_path):
    result = cli(f"table --models deit_tiny --attention hilo --results {tmp_path / 'r.jsonl'}")
    assert_one_line_error(result, "nothing to tabulate")
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.slow
def test_bench_takes_a_list_of_models_each_at_its_own_size(cli):
    """``bench --model a,b`` as ``table --models a,b`` (issue 38: it was refused); a bad
    name in the list, or one checkpoint for two models, is one line."""
    result = cli(
        "bench --model swiftformer_xs,deit_tiny --profile quick --runs 1 --warmup 0 --no-isolate --json"
    )
    assert result.code == 0, result.err
    rows = result.json()
    assert [(r["model"], r["resolution"]) for r in rows] == [
        ("swiftformer_xs", [224, 224]),
        ("deit_tiny", [224, 224]),
    ]
    assert all(r["status"] == "ok" for r in rows)
    assert_one_line_error(cli("bench --model swiftformer_xs,nope"), "unknown model 'nope'")
    assert_one_line_error(
        cli("bench --model swiftformer_xs,deit_tiny --weights w.pth"), "one model's weights"
    )
    assert_one_line_error(
        cli("bench --model swiftformer_xs,deit_tiny --resolution 256"), "224x224 inputs only"
    )
