"""Deployable forms (exporters.deploy): the same numbers as the reference modules, in
ops the mobile runtimes take whole (XNNPACK; onnxruntime's NNAPI and Core ML providers)."""

import math

import onnx
import pytest
import torch
import torch.nn.functional as F

import mobattn
from helpers import assert_one_line_error, relative_error
from mobattn.exporters import attention_subject, export, model_subject
from mobattn.exporters.deploy import FORMS, deployable
from mobattn.exporters.deploy.ops import ErfFreeGELU, sum_last
from mobattn.exporters.fold import fold_for_inference
from mobattn.exporters.mobile_check import one_partition

# every registered mechanism at its defaults (a new one is tested by default), then
# settings whose forms differ
VARIANTS = [(name, {}) for name in mobattn.list_attentions()]
VARIANTS += [
    ("eaa", {"score_norm": "softmax"}),
    ("mhsa", {"num_heads": 4}),
    ("external", {"num_heads": 2}),
    ("ufo", {"num_heads": 4}),
    ("hilo", {"num_heads": 4}),
    ("hilo", {"num_heads": 4, "window_size": 1}),
    ("hilo", {"num_heads": 4, "alpha": 0.0}),
    ("hilo", {"num_heads": 4, "alpha": 1.0, "window_size": 3}),
]


@pytest.mark.parametrize("form", ["xnnpack", "mobile", "litert"])
@pytest.mark.parametrize("hw", [(7, 7), (5, 9), (1, 1)])
@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_every_mechanism_in_every_form_computes_the_reference(name, kwargs, hw, form):
    torch.manual_seed(0)
    mixer = mobattn.create_attention(name, 32, **kwargs).eval()
    twin = deployable(mixer, form)
    assert type(twin) is not type(mixer)  # the form really is another module
    x = torch.randn(2, hw[0] * hw[1], 32)
    with torch.no_grad():
        reference, deployed = mixer(x, hw), twin(x, hw)
    assert relative_error(deployed, reference) < 1e-5
    # per-sample independence survives the rewrite (heads folded into the batch)
    with torch.no_grad():
        assert relative_error(twin(x[1:], hw), reference[1:]) < 1e-5


def test_forms_share_the_reference_parameters():
    mixer = mobattn.create_attention("mhsa", 32, num_heads=4)
    twin = deployable(mixer, "xnnpack")
    assert {k.removeprefix("ref.") for k in twin.state_dict()} == set(mixer.state_dict())
    assert twin.ref.qkv.weight.data_ptr() != mixer.qkv.weight.data_ptr()  # a copy: the caller's is untouched
    assert deployable(mixer, "reference") is mixer


def test_model_forms_compute_the_reference():
    subject = model_subject("swiftformer_xs", resolution=(96, 128))
    x = subject.example_input()
    for form in ("xnnpack", "mobile"):
        twin = deployable(fold_for_inference(subject.module), form)
        with torch.no_grad():
            assert relative_error(twin(x), subject.module(x)) < 1e-5


def test_sum_last_is_a_sum():
    x = torch.randn(3, 5, 7)
    torch.testing.assert_close(sum_last(x), x.sum(-1, keepdim=True), rtol=1e-6, atol=1e-6)


def test_erf_free_gelu_is_as_exact_as_torchs_own_fp32_gelu():
    x = torch.cat([torch.linspace(-12, 12, 200001), torch.tensor([0.0, -0.0, 1e-30, -1e30, 1e30])])
    got = ErfFreeGELU()(x)
    assert torch.isfinite(got).all()
    truth = F.gelu(x.double())
    ours, torchs = (got.double() - truth).abs(), (F.gelu(x).double() - truth).abs()
    assert ours.max() <= torchs.max()  # torch's fp32 GELU cancels for negative x; ours does not
    assert (ours <= 4e-7 * x.abs().double() + 1e-30).all()  # A&S bound 7.5e-8 |x| plus fp32 rounding


def test_unknown_form_is_a_user_error():
    with pytest.raises(mobattn.MobattnError, match="unknown form 'fast'"):
        deployable(torch.nn.Identity(), "fast")
    assert set(FORMS) == {"reference", "xnnpack", "mobile", "ane", "litert"}


def test_litert_forms_batch1_attention_is_the_same_attention():
    """The litert form's batch-2 split of a batch-1 q k^T (HiLo's single-head Lo-Fi) and its
    use: a HiLo whose Lo-Fi branch has one head, on one sample."""
    from mobattn.exporters.deploy.ops import attend, attend_split

    for queries in (20, 21):  # split by rows (even), by channels (odd)
        q, k, v = torch.randn(1, queries, 16), torch.randn(1, 5, 16), torch.randn(1, 5, 8)
        torch.testing.assert_close(attend_split(q, k, v, 0.25), attend(q, k, v, 0.25), rtol=1e-5, atol=1e-6)
    mixer = mobattn.create_attention("hilo", 32, num_heads=2, alpha=0.5).eval()
    twin = deployable(mixer, "litert")
    x = torch.randn(1, 49, 32)
    with torch.no_grad():
        assert relative_error(twin(x, (7, 7)), mixer(x, (7, 7))) < 1e-5


# ----- onnxruntime's mobile providers ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", mobattn.list_attentions())
def test_mobile_onnx_is_one_partition_on_nnapi_and_coreml(tmp_path, name):
    record = export(attention_subject(name, 32, (6, 6)), "onnx", tmp_path, form="mobile")
    assert record.status == "ok", record.reason
    assert record.path.endswith(f"{name}-dim32-6x6-mobile.onnx")
    assert record.details["form"] == "mobile"
    verdict = record.details["mobile_usability"]
    for provider in ("nnapi", "coreml_mlprogram"):
        assert one_partition(verdict[provider]), (provider, verdict[provider])
        assert verdict[provider]["suitability"] == "YES"
    ops = {node.op_type for node in onnx.load(record.path).graph.node}
    assert not ops & {"ReduceL2", "ReduceSum", "Gelu", "Erf", "Reciprocal", "Where"}, ops


@pytest.mark.slow
def test_every_onnx_record_carries_the_checkers_verdict(tmp_path):
    record = export(attention_subject("eaa", 32, (6, 6)), "onnx", tmp_path)
    assert record.details["form"] == "reference"
    verdict = record.details["mobile_usability"]
    # the reference form's L2 norms are ReduceL2, which neither provider takes
    assert "ai.onnx:ReduceL2" in verdict["nnapi"]["unsupported_ops"]
    assert not one_partition(verdict["nnapi"]) and verdict["nnapi"]["suitability"] == "NO"


@pytest.mark.slow
def test_mobile_model_is_one_partition(tmp_path):
    record = export(model_subject("swiftformer_xs", attention="hilo"), "onnx", tmp_path, form="mobile")
    assert record.status == "ok", record.reason
    assert record.validation["max_rel"] < 1e-4  # validated against the reference module
    for provider in ("nnapi", "coreml_mlprogram"):
        assert one_partition(record.details["mobile_usability"][provider])


def test_form_cli_errors(tmp_path, cli):
    assert_one_line_error(
        cli(f"export --attention eaa --dim 8 --hw 2x2 --to coreml --form mobile --out {tmp_path}"),
        "--form applies to --to onnx",
    )
    assert_one_line_error(
        cli(f"export --attention eaa --dim 8 --hw 2x2 --to onnx --form xnnpack --out {tmp_path}"),
        "--form must be reference or mobile",
    )
    assert not any(tmp_path.iterdir())


def test_math_constants_of_the_erf_approximation_are_a_and_s():
    # erf(1) = 0.8427007929..., the approximation holds it to its stated bound
    z = torch.tensor([1.0 * math.sqrt(2.0)])
    assert abs(float(ErfFreeGELU()(z) / z) - 0.5 * (1 + math.erf(1.0))) < 2e-7
