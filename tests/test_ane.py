"""The Neural Engine: `mobattn inspect`'s rules on real packages, and `--layout ane`."""

import numpy as np
import pytest
import torch

import mobattn
from helpers import DATA, assert_one_line_error, load_case, relative_error
from mobattn.exporters import attention_subject, export, model_subject
from mobattn.exporters.coreml_reference import ReferenceExecutor
from mobattn.exporters.deploy import deployable
from mobattn.exporters.deploy.ane import FP16_TINY
from mobattn.exporters.fold import fold_for_inference


def _with_ane_twin(wanted: bool) -> list[str]:
    """The mechanisms that have (or lack) a Neural Engine twin: the twin is optional, so a
    new mechanism without one is tested by the refusal below, not failed here."""
    from mobattn.attention import get_attention_class
    from mobattn.exporters.deploy.ops import TWINS

    return [a for a in mobattn.list_attentions() if (get_attention_class(a) in TWINS["ane"]) == wanted]


@pytest.mark.parametrize("attention", _with_ane_twin(True))
@pytest.mark.parametrize("resolution", [(224, 224), (96, 160)])  # 7x7 and 3x5 last maps: HiLo pads
def test_ane_layout_computes_the_reference_model(attention, resolution):
    subject = model_subject("swiftformer_xs", attention=attention, resolution=resolution)
    ane = deployable(fold_for_inference(subject.module), "ane")
    x = subject.example_input(seed=5)
    with torch.no_grad():
        assert relative_error(ane(x), subject.module(x)) < 1e-5
    derived = (".conv_weight", ".conv_bias", ".w_g_conv")  # export-time views of the same weights
    keys = {k.replace(".attn.ref.", ".attn.") for k in ane.state_dict() if not k.endswith(derived)}
    assert keys <= set(subject.module.state_dict())


@pytest.mark.parametrize("attention", _with_ane_twin(False) or [pytest.param(None, marks=pytest.mark.skip)])
def test_a_mechanism_without_an_ane_twin_is_refused_in_one_line(cli, attention):
    result = cli(f"export --model swiftformer_xs --attention {attention} --to coreml --layout ane --out x")
    said = f"{attention} has no Neural Engine form yet"
    assert_one_line_error(result, said, f"exporters/deploy/{attention}.py")


def test_ane_epsilons_are_fp16_normals():
    assert np.float16(FP16_TINY) == FP16_TINY and FP16_TINY >= np.finfo(np.float16).tiny


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """SwiftFormer-XS with the reference case's weights, in both layouts, fp32."""
    folder = tmp_path_factory.mktemp("ane")
    _, state_dict, x, y_ref = load_case(DATA / "model_swiftformer_xs.npz")
    checkpoint = folder / "xs.pth"
    torch.save(state_dict, checkpoint)
    subject = model_subject("swiftformer_xs", weights=str(checkpoint))
    default = export(subject, "coreml", folder, precision="fp32")
    ane = export(subject, "coreml", folder, precision="fp32", layout="ane")
    return default, ane, x, y_ref


@pytest.mark.slow
def test_ane_layout_is_numerically_the_default_export(official):
    default, ane, x, y_ref = official
    assert (default.status, ane.status) == ("ok", "ok"), (default.reason, ane.reason)
    assert ane.path.endswith("swiftformer_xs-224-fp32-ane.mlpackage")
    outputs = [ReferenceExecutor(r.path).predict({"image": x.numpy()})["logits"] for r in (default, ane)]
    assert relative_error(torch.from_numpy(outputs[1]), torch.from_numpy(outputs[0])) < 1e-4
    assert relative_error(torch.from_numpy(outputs[1]), y_ref) < 1e-4


@pytest.mark.slow
def test_ane_layout_leaves_no_transpose_and_no_rank3_tensor(official):
    default, ane, _, _ = official
    before, after = default.details["ane"]["rules"], ane.details["ane"]["rules"]
    # the count for the default layout: 8 transposes, 9 reshapes, 20 linears on tokens
    assert (before["transpose"], before["reshape"], before["linear_on_tokens"]) == (8, 9, 20)
    assert before["rank3"] > 0 and before["last_axis_one"] > 0
    assert after["reshape"] == 1  # the one at the head
    for rule in ("transpose", "rank3", "linear_on_tokens", "last_axis_one", "fp16_subnormal"):
        assert rule not in after, (rule, after)
    assert ane.details["layout"] == "ane" and "layout_caveats" not in ane.details


@pytest.mark.slow
def test_inspect_cli_on_both_layouts(official, cli):
    default, ane, _, _ = official
    result = cli(f"inspect {default.path} --json")
    assert result.code == 0, result.err
    (report,) = result.json()
    findings = {f["rule"]: f for f in report["ane"]["findings"]}
    assert findings["transpose"]["count"] == 8 and findings["transpose"]["blocks"] == [
        "network.0.2",
        "network.2.2",
        "network.4.5",
        "network.6.3",
    ]
    assert all(f["source"].startswith("https://") for f in findings.values())
    assert report["ane"]["summary"]["ops_at_risk"] > 0
    assert (
        report["ane"]["summary"]["ops_total"] == report["ops_total"] == sum(report["op_histogram"].values())
    )
    assert report["ranks"]["3"] > 0
    result = cli(f"inspect {ane.path} --compute-plan")
    assert result.code == 0, result.err
    assert "fp32 compute" in result.out  # an fp32 package: every op is flagged, and says why
    (report,) = cli(f"inspect {ane.path} --json").json()
    assert {f["rule"]: f["count"] for f in report["ane"]["findings"]} == {
        "reshape": 1,
        "fp32": report["ops_total"],
    }
    assert "compute plan skipped" in result.err or "Core ML compute plan" in result.out


@pytest.mark.slow
def test_mechanisms_that_keep_a_transpose_say_which_and_why(tmp_path):
    record = export(model_subject("swiftformer_xs", attention="mhsa"), "coreml", tmp_path, layout="ane")
    assert record.status == "ok", record.reason
    assert record.details["ane"]["rules"]["transpose"] == 4  # one per layer: the keys
    assert "rank3" not in record.details["ane"]["rules"]
    assert "keys" in record.details["layout_caveats"]["mhsa"]


@pytest.mark.slow
def test_inspect_onnx_and_bad_input(tmp_path, cli):
    record = export(attention_subject("ufo", 16, (4, 4)), "onnx", tmp_path, form="mobile")
    result = cli(f"inspect {record.path} --json")
    assert result.code == 0, result.err
    (report,) = result.json()
    assert report["format"] == "onnx" and report["mobile_usability"]["nnapi"]["partitions"] == 1
    assert_one_line_error(cli(f"inspect {tmp_path / 'missing.onnx'}"), "does not exist")
    assert_one_line_error(cli(f"inspect {record.path} --compute-plan"), "--compute-plan applies to Core ML")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert_one_line_error(cli(f"inspect {junk}"), "cannot read")
    assert_one_line_error(cli("inspect README.md"), "expected an .onnx, .mlpackage, .pte or .tflite")


def test_layout_option_errors(tmp_path, cli):
    assert_one_line_error(
        cli(f"export --attention eaa --dim 8 --hw 2x2 --to coreml --layout ane --out {tmp_path}"),
        "--layout ane needs a model",
    )
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --to coreml --layout sideways --out {tmp_path}"),
        "--layout must be default or ane",
    )
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --to onnx --layout ane --out {tmp_path}"),
        "--layout applies to --to coreml",
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_inspect_pte(tmp_path, cli):
    pytest.importorskip("executorch")
    record = export(attention_subject("mhsa", 16, (4, 4)), "executorch", tmp_path)
    result = cli(f"inspect {record.path} --json")
    assert result.code == 0, result.err
    (report,) = result.json()
    assert report["delegation"] == {"delegates": ["XnnpackBackend"], "portable_ops": {}}
    assert report["op_histogram"] == {"delegate:XnnpackBackend": 1}


def test_a_mechanism_without_an_ane_twin_is_one_line(tmp_path, cli, monkeypatch):
    """A mechanism registered without an ANE twin once ended in a KeyError traceback."""
    from mobattn.attention import UFOAttention
    from mobattn.exporters.deploy.ops import TWINS

    monkeypatch.delitem(TWINS["ane"], UFOAttention)
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --attention ufo --to coreml --layout ane --out {tmp_path}"),
        "--layout ane: ufo has no Neural Engine form yet",
    )
    assert not any(tmp_path.iterdir())
