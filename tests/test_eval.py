"""`mobattn eval`: preprocessing against a hand computation, metrics against known logits,
and an ImageFolder built on the fly."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import assert_one_line_error, join
from mobattn.evaluate import Accumulator, image_folder, preprocess, topk_correct


def test_preprocess_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)  # H=60, W=80
    image = Image.fromarray(pixels)
    out = preprocess(image, resolution=32, crop_pct=0.8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    # by hand: shorter side -> floor(32 / 0.8) = 40, so 60x80 -> 40x53, centre crop 32
    size = math.floor(32 / 0.8)
    resized = image.resize((int(size * 80 / 60), size), Image.Resampling.BICUBIC)
    left, top = round((resized.width - 32) / 2), round((resized.height - 32) / 2)
    crop = np.asarray(resized, np.float32)[top : top + 32, left : left + 32] / 255
    expected = ((crop - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.3]).transpose(2, 0, 1)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_preprocess_converts_grey_and_portrait_images():
    out = preprocess(Image.new("L", (30, 50), 128), 16, 0.875, (0.5,) * 3, (0.5,) * 3)
    assert out.shape == (3, 16, 16)
    np.testing.assert_allclose(out, (128 / 255 - 0.5) / 0.5, atol=1e-6)


def test_topk_and_accumulator_on_known_logits():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 2, 2, 1])
    assert topk_correct(logits, labels, 1) == 2
    assert topk_correct(logits, labels, 2) == 3
    assert topk_correct(logits, labels, 5) == 4  # k larger than the classes: everything counts
    acc = Accumulator()
    acc.add(logits, labels, reference=logits + 0.01)
    assert acc.percent(acc.top1) == 50 and acc.percent(acc.agree) == 100
    assert acc.max_abs == pytest.approx(0.01)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "val"
    for name in ("cat", "ant", "bee"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "bee" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_orders_classes_like_imagefolder(folder):
    samples, classes = image_folder(folder)
    assert classes == ["ant", "bee", "cat"]
    assert [label for _, label in samples] == [0, 0, 1, 1, 2, 2]


@pytest.mark.slow
def test_eval_command_and_artifact_agreement(tmp_path, folder, cli):
    weights = tmp_path / "xs.pth"
    torch.manual_seed(0)
    import mobattn

    model = mobattn.create_model("swiftformer_xs", num_classes=3).eval()
    torch.save(model.state_dict(), weights)
    results = tmp_path / "acc.jsonl"
    common = [
        "--model",
        "swiftformer_xs",
        "--weights",
        weights,
        "--data",
        folder,
        "--resolution",
        "64",
        "--num-classes",
        "3",
        "--results",
        results,
        "--json",
    ]
    plain = cli(f"eval {join(common)}")
    assert plain.code == 0, plain.err
    (result,) = plain.json()
    assert result["images"] == 6 and result["classes"] == 3 and result["top5"] == 100.0
    # 6 images of an unnamed dataset: recorded, said where, and never taken for a real top-1
    assert not result["trusted"] and any("6 images" in c for c in result["caveats"])
    assert any("dataset not named" in c for c in result["caveats"])
    assert f"appended to {results} as an untrusted top-1" in plain.err.replace("\n", "")
    # the same number by hand from the model's own logits
    samples, _ = image_folder(folder)
    x = np.stack(
        [preprocess(Image.open(p), 64, 0.95, model.config.mean, model.config.std) for p, _ in samples]
    )
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    assert result["top1"] == pytest.approx(100 * np.mean(predicted == [l for _, l in samples]))

    export = cli(f"export --model swiftformer_xs --resolution 64 --out {tmp_path} --json")
    assert export.code == 0, export.err
    # mobattn's own export names its model: eval takes it from there, and says so (issue 41)
    said = cli(f"eval --artifact {export.json()[0]['path']} --data {folder} --json")
    assert said.code == 0 and "metadata: model swiftformer_xs (eaa) at 64x64" in said.err, said.err
    assert said.json()[0]["agreement_top1"] == 100.0 and said.json()[0]["resolution"] == 64
    # an exported 1000-class model does not fit 3-class weights: export the 3-class one by hand
    from mobattn.exporters import Subject
    from mobattn.exporters import export as do_export

    subject = Subject(model, (1, 3, 64, 64), "swiftformer_xs", None, "64", "image", "logits")
    record = do_export(subject, "onnx", tmp_path / "three", force=True)
    artifact = cli(f"eval {join(common)} --artifact {record.path}")
    assert artifact.code == 0, artifact.err
    (art,) = artifact.json()
    assert art["agreement_top1"] == 100.0 and art["max_abs_diff"] < 1e-3
    assert (
        len(results.read_text().splitlines()) == 2
        and json.loads(results.read_text().splitlines()[1])["artifact"]
    )


@pytest.mark.parametrize(
    ("data", "weights", "fragment"),
    [("nowhere", None, "neither a folder nor a list of images"), (None, "missing.pth", "not found")],
)
def test_bad_eval_input(tmp_path, folder, cli, data, weights, fragment):
    args = ["--data", data or folder] + (["--weights", weights] if weights else [])
    results = tmp_path / "acc.jsonl"
    assert_one_line_error(cli(f"eval --model swiftformer_xs {join(args)} --results {results}"), fragment)
    assert not results.exists()


def test_empty_folder_is_a_clear_error(tmp_path, cli):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    assert_one_line_error(cli(f"eval --model swiftformer_xs --data {tmp_path / 'empty'}"), "no images")


def test_image_lists_with_labels_and_a_split(tmp_path):
    """A CSV (file,class_index), `file label` lines and a list of files to keep, as the
    shared real-image set is laid out (labels.csv, calibration.txt, evaluation.txt)."""
    from mobattn import MobattnError
    from mobattn.image_sources import read_source

    (tmp_path / "images").mkdir()
    names = [f"images/{i}.png" for i in range(4)]
    for name in names:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text(
        "file,class_index,wnid\n" + "".join(f"{n},{i * 7},x\n" for i, n in enumerate(names))
    )
    (tmp_path / "val.txt").write_text("".join(f"{n} {i * 7}\n" for i, n in enumerate(names)))
    (tmp_path / "keep.txt").write_text(f"{names[3]}\n{names[1]}\n")
    source = read_source(tmp_path / "labels.csv")
    assert (
        source.kind == "csv"
        and source.classes == 1000
        and [label for _, label in source.samples] == [0, 7, 14, 21]
    )
    kept = read_source(tmp_path / "val.txt", files=tmp_path / "keep.txt")
    assert [(p.name, label) for p, label in kept.samples] == [("3.png", 21), ("1.png", 7)]
    unlabelled = read_source(tmp_path / "keep.txt")  # a bare list: calibration needs no labels
    assert not unlabelled.labelled and len(unlabelled.samples) == 2
    (tmp_path / "bad.csv").write_text("path,klass\nimages/0.png,1\n")
    with pytest.raises(MobattnError, match="needs a 'file' column"):
        read_source(tmp_path / "bad.csv")
    (tmp_path / "far.txt").write_text("images/0.png 1000\n")
    with pytest.raises(MobattnError, match="label 1000"):
        read_source(tmp_path / "far.txt")
    (tmp_path / "other.txt").write_text("images/nope.png\n")
    with pytest.raises(MobattnError, match="not in --data"):
        read_source(tmp_path / "val.txt", files=tmp_path / "other.txt")


@pytest.mark.slow
def test_eval_takes_a_labelled_list_and_a_split(tmp_path, cli):
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
    (tmp_path / "labels.csv").write_text(
        "file,class_index\n" + "".join(f"images/{i}.png,{i}\n" for i in range(3))
    )
    (tmp_path / "eval.txt").write_text("images/0.png\nimages/2.png\n")
    result = cli(
        f"eval --model swiftformer_xs --data {tmp_path / 'labels.csv'} --files {tmp_path / 'eval.txt'} "
        f"--dataset imagenet-1k-val --results {tmp_path / 'acc.jsonl'} --json"
    )
    assert result.code == 0, result.err
    (record,) = result.json()
    assert record["images"] == 2 and record["classes"] == 1000 and not record["trusted"]
    assert any("classes have no image" in c for c in record["caveats"])
