"""Nothing forged, wave 3 (issue 27): one regression test per item of the adversarial
pass, written against the behaviour it reported."""

from __future__ import annotations

import os

import pytest

from helpers import assert_one_line_error

# 3. native crashes and hangs on corrupt input -----------------------------------------


@pytest.mark.slow
def test_a_corrupt_pte_is_one_line_not_a_crash(tmp_path, cli):
    """Random bytes once killed `validate` and `bench` with SIGABRT (exit 134)."""
    junk = tmp_path / "junk.pte"
    junk.write_bytes(os.urandom(4096))
    for command in (f"bench {junk}", f"validate {junk} --attention eaa --dim 8 --hw 2x2"):
        assert_one_line_error(cli(command), "junk.pte is not a .pte file")
    # the right header and garbage after it: loaded in a separate process first
    forged = tmp_path / "forged.pte"
    forged.write_bytes(os.urandom(4) + b"ET12" + os.urandom(4096))
    for command in (f"bench {forged}", f"validate {forged} --attention eaa --dim 8 --hw 2x2"):
        assert_one_line_error(cli(command), "forged.pte")


def test_a_fifo_or_an_empty_file_is_one_line(tmp_path, cli):
    """A FIFO named x.onnx made `inspect` hang forever; a zero-byte one, a TypeError."""
    fifo = tmp_path / "x.onnx"
    os.mkfifo(fifo)
    for command in (f"inspect {fifo}", f"validate {fifo} --attention eaa --dim 8 --hw 2x2", f"bench {fifo}"):
        assert_one_line_error(cli(command), "is not a regular file")
    empty = tmp_path / "z.onnx"
    empty.write_bytes(b"")
    for command in (
        f"inspect {empty}",
        f"validate {empty} --attention eaa --dim 8 --hw 2x2",
        f"bench {empty}",
    ):
        assert_one_line_error(cli(command), "z.onnx is empty")


# 1. a file's own claims never set how it is judged ------------------------------------


@pytest.mark.slow
def test_metadata_claiming_int8_does_not_loosen_the_criterion(tmp_path, cli):
    """An fp32 graph with perturbed weights whose metadata says int8 passed with int8's
    cosine criterion."""
    assert cli(f"export --attention eaa --dim 64 --hw 14x14 --to onnx --out {tmp_path}").code == 0
    path = tmp_path / "eaa-dim64-14x14.onnx"
    forged = _with_precision_claim(path, "int8", tmp_path / "forged.onnx", perturb=True)
    result = cli(f"validate {forged} --attention eaa --dim 64 --hw 14x14 --json")
    assert result.code == 1, result.err  # judged as the fp32 graph it is: outside 1e-4
    (record,) = result.json()
    assert record["criterion"] == "fp32" and record["content"] == "fp32"
    assert "metadata says 'int8'" in record["claim_disagrees"] and "its graph is fp32" in result.err
    # an unexpected value in the metadata once gave a KeyError traceback
    odd = _with_precision_claim(path, "bogus", tmp_path / "odd.onnx")
    result = cli(f"validate {odd} --attention eaa --dim 64 --hw 14x14")
    assert result.code == 0 and "metadata says 'bogus'" in result.err and "Traceback" not in result.err


def _with_precision_claim(path, claim: str, out, perturb: bool = False):
    """A copy of an ONNX export whose metadata claims ``claim``, its largest weight
    perturbed by 10% on request."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    if perturb:
        weight = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        values = numpy_helper.to_array(weight)
        noise = np.random.default_rng(0).standard_normal(values.shape).astype(np.float32)
        weight.CopyFrom(numpy_helper.from_array(values * (1 + 0.1 * noise), weight.name))
    for entry in model.metadata_props:
        if entry.key == "precision":
            entry.value = claim
    onnx.save(model, str(out))
    return out


# 2. a package that reaches outside itself is not one ----------------------------------


@pytest.mark.slow
def test_a_package_whose_manifest_or_links_leave_it_is_refused(tmp_path, cli):
    import json
    import shutil

    assert cli(f"export --attention eaa --dim 16 --hw 4x4 --to coreml --out {tmp_path}").code == 0
    package = tmp_path / "eaa-dim16-4x4.mlpackage"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    escaping = tmp_path / "escaping.mlpackage"
    shutil.copytree(package, escaping)
    model = escaping / "Data" / "com.apple.CoreML" / "model.mlmodel"
    shutil.move(model, outside / "model.mlmodel")
    manifest = json.loads((escaping / "Manifest.json").read_text())
    for entry in manifest["itemInfoEntries"].values():
        if entry["name"] == "model.mlmodel":
            entry["path"] = "../../elsewhere/model.mlmodel"
    (escaping / "Manifest.json").write_text(json.dumps(manifest))
    linked = tmp_path / "linked.mlpackage"
    shutil.copytree(package, linked)
    weights = linked / "Data" / "com.apple.CoreML" / "weights"
    shutil.move(weights, outside / "weights")
    weights.symlink_to(outside / "weights")
    describe = "--attention eaa --dim 16 --hw 4x4"
    for bad, fragment in ((escaping, "outside the package"), (linked, "holds a link")):
        for command in (f"validate {bad} {describe}", f"inspect {bad}"):
            assert_one_line_error(cli(command), fragment)
    assert cli(f"validate {package} {describe}").code == 0  # the untouched package still passes


# 4. filesystem errors are one line ----------------------------------------------------


def test_filesystem_refusals_are_one_line(tmp_path, cli):
    import subprocess

    grid = tmp_path / "g.toml"
    grid.write_text('attentions = ["eaa"]\ndims = [8]\nhws = [4]\nprofile = "quick"\n')
    (tmp_path / "afile").write_text("")
    assert_one_line_error(cli(f"sweep {grid} --results {tmp_path / 'afile' / 'r.jsonl'}"), "afile")
    rows = tmp_path / "r.jsonl"
    rows.write_text(
        '{"kind": "attention", "attention": "eaa", "dim": 8, "hw": [4, 4], "status": "skipped"}\n'
    )
    assert_one_line_error(
        cli(f"merge {rows} --out {tmp_path / ('x' * 300 + '.jsonl')}"), "File name too long"
    )
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if subprocess.run(["chattr", "+i", str(frozen)], capture_output=True).returncode != 0:
        return  # no immutable attribute on this filesystem
    try:
        assert_one_line_error(cli(f"sweep {grid} --results {frozen / 'r.jsonl'}"), "cannot lock")
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)
    assert not any(frozen.iterdir())


# 6. accuracy that cannot be gamed, and a --limit that covers every class --------------


def test_limit_samples_every_class_evenly_and_the_same_way_each_time(tmp_path):
    from pathlib import Path

    from mobattn.evaluate import class_counts, select_samples

    samples = [(Path(f"c{c}/{i}.png"), c) for c in range(4) for i in range(10)]
    chosen = select_samples(samples, 10)
    assert class_counts(chosen, 4) == [3, 3, 2, 2]  # one class after another
    assert chosen == select_samples(samples, 10)  # seeded
    assert chosen != samples[:10]  # not the first files, which are one class


def test_a_gamed_folder_is_never_a_trusted_top1():
    """1000 class folders with every image in one, and weights that always answer it."""
    from mobattn.evaluate import caveats_of

    record = dict(
        weights="w.pth",
        dataset="imagenet-1k-val",
        classes=1000,
        num_classes=1000,
        images=10000,
        class_counts=[10000] + [0] * 999,
        limit=None,
    )
    assert any("999 classes have no image" in c for c in caveats_of(record))
    balanced = dict(record, class_counts=[10] * 1000)
    assert any("10 images per class, the dataset has 50" in c for c in caveats_of(balanced))
    assert caveats_of(dict(balanced, limit=10000)) == []  # an even, seeded --limit sample
    assert caveats_of(dict(record, class_counts=[50] * 1000, images=50000)) == []


# 7. invalid numbers are refused -------------------------------------------------------


def test_weights_of_the_wrong_dtype_are_refused(tmp_path, cli):
    import torch

    import mobattn

    state = mobattn.create_model("swiftformer_xs").state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].to(torch.bool)
    torch.save(state, tmp_path / "w.pth")
    assert_one_line_error(
        cli(f"export --model swiftformer_xs --weights {tmp_path / 'w.pth'} --out {tmp_path}"),
        "1 mis-typed",
        "bool vs float32",
    )


# 8. int8 at a non-square resolution with real calibration images ----------------------


@pytest.mark.slow
def test_int8_calibration_images_take_the_exports_own_height_and_width(tmp_path, cli):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "cal" / "a").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(
            tmp_path / "cal" / "a" / f"{i}.png"
        )
    result = cli(
        f"export --model swiftformer_xs --resolution 224x320 --to onnx --precision int8 "
        f"--calibration {tmp_path / 'cal'} --out {tmp_path} --json"
    )
    assert result.code == 0, result.err
    assert result.json()[0]["status"] == "ok"
