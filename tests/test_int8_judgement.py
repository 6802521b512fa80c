"""int8 that a trained network can ship is judged by its predictions (issue 36): an int8
calibrated on images is validated on held-out images by top-1 agreement with the float
model, refused when its 95% interval lies wholly under the floor (0.90,
``--min-agreement``); a user floor that keeps what the default refuses is recorded as kept
under a user tolerance, never as a plain pass."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_one_line_error
from mobattn.exporters.agreement import AGREEMENT_FLOOR, compare, judged_as, user_tolerance, wilson_interval


def _logits(agreeing: int, total: int, classes: int = 10):
    """Float logits, and an int8's that pick the same class on ``agreeing`` of ``total``."""
    rng = np.random.default_rng(0)
    references, outputs = [], []
    for i in range(total):
        ref = rng.normal(size=(1, classes)).astype(np.float32)
        out = ref + rng.normal(scale=0.01, size=ref.shape).astype(np.float32)
        if i >= agreeing:  # another class wins
            out[0, (int(np.argmax(ref)) + 1) % classes] = ref.max() + 1.0
        references.append(ref)
        outputs.append(out)
    return outputs, references


def test_an_int8_on_images_is_judged_by_top1_agreement_with_its_interval():
    outputs, references = _logits(19, 20)
    agreement = compare(outputs, references, judged_as("int8", on_images=True))
    assert agreement.criterion == "top1_agreement" and agreement.tolerance == AGREEMENT_FLOOR["int8-images"]
    assert agreement.passed and agreement.top1_agreement == 0.95 and agreement.images == 20
    low, high = agreement.top1_interval
    assert low < 0.95 < high and (low, high) == wilson_interval(19, 20)
    refused = compare(*_logits(12, 20), "int8-images")
    assert not refused.passed and refused.top1_agreement == 0.60 and refused.top1_interval[1] < 0.9
    noisy = compare(*_logits(22, 25), "int8-images")  # 88%, but its interval reaches the floor
    assert noisy.passed and noisy.top1_interval[1] > 0.9


def test_a_user_floor_that_keeps_what_the_default_refuses_is_recorded():
    outputs, references = _logits(12, 20)
    with user_tolerance(None, None, min_agreement=0.75):
        kept = compare(outputs, references, "int8-images")
    assert kept.passed and kept.kept_under_user_tolerance and kept.tolerance == 0.75
    assert "kept under a user tolerance" in kept.note and "top1_agreement at least 0.9" in kept.note
    with user_tolerance(None, None, min_agreement=0.75):
        plain = compare(*_logits(20, 20), "int8-images")  # the default keeps it too: a plain pass
    assert plain.passed and not plain.kept_under_user_tolerance


def test_random_inputs_and_bare_mechanisms_keep_the_cosine_floor():
    assert judged_as("int8", on_images=False) == "int8" and judged_as("fp32", on_images=True) == "fp32"
    tokens = [np.ones((1, 4, 8), np.float32)]  # no logits: judged by direction
    agreement = compare(tokens, tokens, "int8-images")
    assert agreement.criterion == "cosine" and agreement.passed and agreement.top1_agreement is None


def test_wilson_interval_is_sound_at_the_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(25, 25)
    assert high == 1.0 and 0.85 < low < 0.9  # all 25 agree: still not proof of 100%
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for folder, count in (("calib", 40), ("few", 10), ("val", 6)):
        (root / folder / "a").mkdir(parents=True)
        for i in range(count):
            pixels = np.random.default_rng(i + 100 * len(folder)).integers(
                0, 256, (24, 24, 3), dtype=np.uint8
            )
            Image.fromarray(pixels).save(root / folder / "a" / f"{i}.png")
    return root


def test_held_out_images_are_never_ones_it_calibrated_on(images):
    from mobattn.errors import MobattnError
    from mobattn.exporters import model_subject
    from mobattn.exporters.calibration import split_images

    subject = model_subject("swiftformer_xs", resolution=(32, 32))
    calibration, held_out = split_images(subject, str(images / "calib"))
    assert (len(calibration), len(held_out)) == (30, 10)  # a quarter held out
    assert not any(any(np.array_equal(h, c) for c in calibration) for h in held_out)
    calibration, held_out = split_images(subject, str(images / "few"))
    assert (len(calibration), len(held_out)) == (10, 0)  # too few to hold any out
    calibration, held_out = split_images(subject, str(images / "calib"), str(images / "val"))
    assert (len(calibration), len(held_out)) == (40, 6)
    with pytest.raises(MobattnError, match="only images --calibration calibrates on"):
        split_images(subject, str(images / "calib"), str(images / "calib"))


def test_the_options_are_refused_where_they_judge_nothing(cli, images):
    assert_one_line_error(
        cli("export --model swiftformer_xs --resolution 32 --to onnx --min-agreement 0.8 --out x"),
        "--min-agreement judges an int8 calibrated on images",
    )
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --to onnx --precision int8 --validation-images {images} --out x"),
        "give --calibration too",
    )
    assert cli("export --model swiftformer_xs --to onnx --min-agreement 1.5 --out x").code == 2


@pytest.mark.slow
def test_an_int8_export_calibrated_on_images_says_what_judged_it(cli, images, tmp_path):
    command = (
        f"export --model swiftformer_xs --resolution 32 --to onnx --precision int8 --calibration "
        f"{images / 'calib'} --out {tmp_path} --json"
    )
    result = cli(command)
    assert result.code == 0, result.err
    validation = result.json()[0]["validation"]
    assert validation["criterion"] == "top1_agreement" and validation["images"] == 10
    assert "judged on 10 held-out images" in validation["note"] and validation["cosine"] is not None
    again = cli(f"{command} --force --min-agreement 0.5")  # the default keeps it too: a plain pass
    assert again.code == 0, again.err
    validation = again.json()[0]["validation"]
    assert validation["tolerance"] == 0.5 and not validation["kept_under_user_tolerance"]
    import onnx

    path = again.json()[0]["path"]
    said = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert said["user_tolerance"] == "--min-agreement 0.5"  # the file says what it was judged by
    validated = cli(f"validate {path}")
    assert "exported under a user tolerance (--min-agreement 0.5)" in validated.err


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """SwiftFormer-XS made trained-like: its blocks contribute (layer scales 1, not 1e-5)
    and three MLPs carry an outlier channel 1000x the others, the float function kept
    (fc1's channel scaled up, fc2's column down by as much)."""
    import torch

    import mobattn
    from mobattn.exporters.subject import seeded

    with seeded():
        state = mobattn.create_model("swiftformer_xs").state_dict()
    for key in state:
        if "layer_scale" in key:
            state[key].fill_(1.0)
    for block in ("network.2.2", "network.4.5", "network.6.3"):
        state[f"{block}.linear.fc1.weight"][7] *= 1000.0
        state[f"{block}.linear.fc1.bias"][7] *= 1000.0
        state[f"{block}.linear.fc2.weight"][:, 7] /= 1000.0
    path = tmp_path_factory.mktemp("planted") / "planted.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow
def test_the_search_keeps_the_harmful_layers_in_float_until_the_target_is_met(cli, images, planted, tmp_path):
    """Every op in int8 (all-ops) loses the planted network's predictions; --int8-target
    keeps the most harmful layers in float, ranked again after each repair, and the record
    lists them with every step."""
    base = (
        f"export --model swiftformer_xs --resolution 64 --weights {planted} --to onnx --precision int8 "
        f"--calibration {images / 'calib'} --int8-recipe all-ops --out {tmp_path} --json --force"
    )
    plain = cli(base)
    assert plain.code == 1 and "wholly under the 90% floor" in plain.err  # refused: nothing written
    result = cli(f"{base} --int8-target 0.9")
    assert result.code == 0, result.err
    record = result.json()[0]
    search = record["details"]["quantization"]["mixed_precision"]
    assert search["met"] and search["target"] == 0.9
    steps = search["steps"]
    assert steps[0]["agreement"] < 0.9 <= search["agreement"] and len(steps) >= 2
    floats = search["float_layers"]  # the fewest that met the target (bisected back from the last doubling)
    meeting = [step["float_layers"] for step in steps if step["agreement"] >= 0.9]
    assert 0 < len(floats) == min(meeting)
    assert all("lost cosine" in why for why in floats.values())
    assert record["validation"]["passed"] and record["validation"]["criterion"] == "top1_agreement"
    assert_one_line_error(cli(f"{base} --int8-target 1.5"), "--int8-target is a share of images")


def test_a_float_layers_weights_stay_int8():
    """Mixed precision keeps a layer's activations float, not its weights: they are stored
    int8 per output channel behind a DequantizeLinear, and the graph computes nearly the same."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mobattn.exporters.weight_only import weight_only_int8

    weight = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    x = np.random.default_rng(1).normal(size=(2, 16)).astype(np.float32)
    model, count = weight_only_int8(model, {"y"})
    stored = {i.name: i.data_type for i in model.graph.initializer}
    assert count == 1 and stored["w_w8"] == TensorProto.INT8 and "w" not in stored
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0]
    assert np.abs(y - x @ weight).max() < 0.02 * np.abs(x @ weight).max()
    _, none = weight_only_int8(model, {"other"})
    assert none == 0


@pytest.mark.slow
def test_the_pt2e_search_keeps_the_harmful_modules_in_float(images, planted):
    """The same search on the pt2e path (ExecuTorch and LiteRT quantize this graph): the
    planted MLPs' modules are kept float, each with the layer upstream of it."""
    pytest.importorskip("executorch")
    from mobattn.exporters import model_subject
    from mobattn.exporters.calibration import split_images
    from mobattn.exporters.deploy import deployable
    from mobattn.exporters.fold import fold_for_inference
    from mobattn.exporters.pt2e_int8 import calibration_inputs
    from mobattn.exporters.pt2e_search import quantize_for_target

    subject = model_subject("swiftformer_xs", resolution=(64, 64), weights=str(planted))
    calibration, held_out = split_images(subject, str(images / "calib"))
    module = deployable(fold_for_inference(subject.module), "xnnpack").eval()
    inputs, judged = calibration_inputs(subject, calibration), calibration_inputs(subject, held_out)
    _, facts = quantize_for_target(module, subject.example_input(), inputs, "all-ops", True, 0.7, judged)
    search = facts["mixed_precision"]
    assert search["met"] and search["steps"][0]["agreement"] < 0.7 <= search["agreement"], search
    first = next(iter(search["float_layers"]))
    assert first.endswith("linear.fc2") and "upstream" in search["float_layers"][first]


@pytest.mark.slow
def test_the_pt2e_search_falls_back_on_run_time_ranges_when_static_int8_is_short(images, planted):
    """Without a recipe the user chose, the search tries the static recipe first and, short
    of the target, searches on dynamic int8 (ranges per token at run time), each trial
    judged in ExecuTorch's runtime; the record says both."""
    pytest.importorskip("executorch")
    from mobattn.exporters import model_subject
    from mobattn.exporters.calibration import split_images
    from mobattn.exporters.deploy import deployable
    from mobattn.exporters.fold import fold_for_inference
    from mobattn.exporters.pt2e_int8 import calibration_inputs
    from mobattn.exporters.pt2e_search import quantize_for_target

    subject = model_subject("swiftformer_xs", resolution=(64, 64), weights=str(planted))
    calibration, held_out = split_images(subject, str(images / "calib"))
    module = deployable(fold_for_inference(subject.module), "xnnpack").eval()
    inputs, judged = calibration_inputs(subject, calibration), calibration_inputs(subject, held_out)
    example = subject.example_input()
    _, facts = quantize_for_target(module, example, inputs, "all-ops", True, 0.7, judged, recipe_given=False)
    search = facts["mixed_precision"]
    assert search["steps"][0]["recipe"] == "all-ops" and search["steps"][0]["agreement"] < 0.7, search
    assert facts["recipe"] == "dynamic" and "per token" in facts["activations"]
    assert search["met"] and search["agreement"] >= 0.7, search
