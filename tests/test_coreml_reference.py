"""The ML Program reference executor: every kernel against a one-op program built with
coremltools' MIL builder, expected values from coremltools' own value inference (or
torch, for conv and pooling, which have none); mutated packages fail validation; an op
without a kernel is reported, never passed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mobattn.exporters.coreml_reference import ReferenceExecutor
from mobattn.exporters.silence import quiet

with quiet():
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb  # noqa: N813 - coremltools' own idiom
    from coremltools.converters.mil.mil import types

RNG = np.random.default_rng(0)


def rand(*shape, positive=False) -> np.ndarray:
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def save_program(build, inputs: dict[str, np.ndarray], path: Path, target=ct.target.iOS16) -> Path:
    """One MIL function of the given inputs, converted without optimisation passes."""
    specs = [mb.TensorSpec(shape=v.shape, dtype=types.fp32) for v in inputs.values()]
    # the builder counts the function's named parameters, so spell them out
    functions = {1: lambda x0: build(x0), 2: lambda x0, x1: build(x0, x1)}
    program = mb.program(input_specs=specs, opset_version=target)(functions[len(specs)])

    with quiet():
        model = ct.convert(
            program,
            convert_to="mlprogram",
            minimum_deployment_target=target,
            compute_precision=ct.precision.FLOAT32,
            pass_pipeline=ct.PassPipeline.EMPTY,
        )
        model.save(str(path))
    return path


def run_one(tmp_path: Path, build, *arrays: np.ndarray) -> tuple[np.ndarray, ReferenceExecutor]:
    names = [f"x{i}" for i in range(len(arrays))]
    path = save_program(build, dict(zip(names, arrays, strict=True)), tmp_path / "op.mlpackage")
    executor = ReferenceExecutor(path)
    feeds = dict(zip(executor.input_names, arrays, strict=True))
    (out,) = executor.predict(feeds).values()
    return out, executor


def expected(build, *arrays: np.ndarray) -> np.ndarray:
    """coremltools' own value inference: the same op on constant inputs."""

    @mb.program(input_specs=[], opset_version=ct.target.iOS16)
    def program():
        out = build(*[mb.const(val=a) for a in arrays])
        assert out.val is not None, "no value inference for this op"
        return mb.identity(x=out)

    return np.asarray(program.functions["main"].outputs[0].op.x.val)


X = rand(2, 3, 4, 5)
Y = rand(2, 3, 4, 5)
POS = rand(2, 3, 4, 5, positive=True)
W, B, GAMMA, BETA = rand(6, 5), rand(6), rand(5), rand(5)  # constants, the same in both programs

VALUE_INFERRED = {
    "add": (lambda x, y: mb.add(x=x, y=y), (X, Y)),
    "sub": (lambda x, y: mb.sub(x=x, y=y), (X, Y)),
    "mul": (lambda x, y: mb.mul(x=x, y=y), (X, Y)),
    "real_div": (lambda x, y: mb.real_div(x=x, y=y), (X, POS)),
    "maximum": (lambda x, y: mb.maximum(x=x, y=y), (X, Y)),
    "minimum": (lambda x, y: mb.minimum(x=x, y=y), (X, Y)),
    "pow": (lambda x, y: mb.pow(x=x, y=y), (POS, Y)),
    "relu": (lambda x: mb.relu(x=x), (X,)),
    "sigmoid": (lambda x: mb.sigmoid(x=x), (X,)),
    "tanh": (lambda x: mb.tanh(x=x), (X,)),
    "sqrt": (lambda x: mb.sqrt(x=x), (POS,)),
    "exp": (lambda x: mb.exp(x=x), (X,)),
    "abs": (lambda x: mb.abs(x=x), (X,)),
    "erf": (lambda x: mb.erf(x=x), (X,)),
    "rsqrt": (lambda x: mb.rsqrt(x=x, epsilon=1e-6), (POS,)),
    "inverse": (lambda x: mb.inverse(x=x, epsilon=1e-4), (POS,)),
    "gelu-exact": (lambda x: mb.gelu(x=x, mode="EXACT"), (X,)),
    "gelu-tanh": (lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), (X,)),
    "gelu-sigmoid": (lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), (X,)),
    "clip": (lambda x: mb.clip(x=x, alpha=-0.5, beta=0.5), (X,)),
    "softmax": (lambda x: mb.softmax(x=x, axis=2), (X,)),
    "reduce_sum": (lambda x: mb.reduce_sum(x=x, axes=[1, 3], keep_dims=True), (X,)),
    "reduce_mean": (lambda x: mb.reduce_mean(x=x, axes=[-1], keep_dims=False), (X,)),
    "reduce_max": (lambda x: mb.reduce_max(x=x, axes=[2], keep_dims=True), (X,)),
    "reduce_l2_norm": (lambda x: mb.reduce_l2_norm(x=x, axes=[1], keep_dims=True), (X,)),
    "reduce_l1_norm": (lambda x: mb.reduce_l1_norm(x=x, axes=[3], keep_dims=False), (X,)),
    "l2_norm": (lambda x: mb.l2_norm(x=x, epsilon=1e-6), (X,)),
    "linear": (lambda x: mb.linear(x=x, weight=W, bias=B), (X,)),
    "matmul": (lambda x, y: mb.matmul(x=x, y=y, transpose_y=True), (X, Y)),
    "matmul-tx": (lambda x, y: mb.matmul(x=x, y=y, transpose_x=True), (X, Y)),
    "reshape": (lambda x: mb.reshape(x=x, shape=[6, 20]), (X,)),
    "transpose": (lambda x: mb.transpose(x=x, perm=[0, 2, 3, 1]), (X,)),
    "squeeze": (lambda x: mb.squeeze(x=mb.reshape(x=x, shape=[2, 1, 60]), axes=[1]), (X,)),
    "expand_dims": (lambda x: mb.expand_dims(x=x, axes=[-2]), (X,)),
    "concat": (lambda x, y: mb.concat(values=[x, y], axis=1), (X, Y)),
    "slice_by_index": (
        lambda x: mb.slice_by_index(x=x, begin=[0, 1, 0, 0], end=[2, 3, 4, 5], stride=[1, 1, 2, 1]),
        (X,),
    ),
    "slice_by_size": (lambda x: mb.slice_by_size(x=x, begin=[0, 1, 1, 0], size=[-1, 2, 2, 3]), (X,)),
    "pad": (lambda x: mb.pad(x=x, pad=[0, 0, 0, 0, 1, 2, 3, 0], mode="constant", constant_val=0.5), (X,)),
    "tile": (lambda x: mb.tile(x=x, reps=[1, 2, 1, 1]), (X,)),
    "layer_norm": (lambda x: mb.layer_norm(x=x, axes=[-1], gamma=GAMMA, beta=BETA, epsilon=1e-5), (X,)),
    "select": (lambda x, y: mb.select(cond=mb.greater(x=x, y=y), a=x, b=y), (X, Y)),
}


@pytest.mark.slow  # 40 one-op conversions: about 20 s
@pytest.mark.parametrize("name", sorted(VALUE_INFERRED))
def test_kernel_matches_coremltools_value_inference(tmp_path, name):
    build, arrays = VALUE_INFERRED[name]
    out, _ = run_one(tmp_path, build, *arrays)
    np.testing.assert_allclose(out, expected(build, *arrays), rtol=1e-5, atol=1e-6)


def test_split_yields_every_part(tmp_path):
    path = save_program(
        lambda x: mb.split(x=x, split_sizes=[1, 2], axis=1), {"x": X}, tmp_path / "split.mlpackage"
    )
    executor = ReferenceExecutor(path)
    outs = list(executor.predict({executor.input_names[0]: X}).values())
    np.testing.assert_array_equal(outs[0], X[:, :1])
    np.testing.assert_array_equal(outs[1], X[:, 1:])


@pytest.mark.parametrize(
    ("pad_type", "pad", "strides", "groups", "dilations"),
    [
        ("valid", None, [1, 1], 1, [1, 1]),
        ("custom", [1, 2, 0, 1], [2, 1], 1, [1, 1]),
        ("same", None, [2, 2], 3, [1, 1]),
        ("same_lower", None, [2, 2], 1, [2, 1]),
        ("custom", [1, 1, 1, 1], [1, 1], 3, [1, 1]),
    ],
)
def test_conv_against_torch(tmp_path, pad_type, pad, strides, groups, dilations):
    x = rand(1, 3, 9, 8)
    w = rand(6, 3 // groups, 3, 3)
    b = rand(6)
    extra = {"pad": pad} if pad is not None else {}

    def build(v):
        return mb.conv(
            x=v,
            weight=w,
            bias=b,
            strides=strides,
            pad_type=pad_type,
            dilations=dilations,
            groups=groups,
            **extra,
        )

    out, _ = run_one(tmp_path, build, x)
    xt = torch.from_numpy(x)
    if pad_type == "custom":
        xt = torch.nn.functional.pad(xt, [pad[2], pad[3], pad[0], pad[1]])
    elif pad_type.startswith("same"):
        total = [
            max((-(-s // st) - 1) * st + (3 - 1) * d + 1 - s, 0)
            for s, st, d in zip(x.shape[2:], strides, dilations, strict=True)
        ]
        before = [t - t // 2 if pad_type == "same_lower" else t // 2 for t in total]
        xt = torch.nn.functional.pad(xt, [before[1], total[1] - before[1], before[0], total[0] - before[0]])
    ref = torch.nn.functional.conv2d(
        xt, torch.from_numpy(w), torch.from_numpy(b), stride=strides, dilation=dilations, groups=groups
    )
    assert out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exclude", [True, False])
def test_avg_pool_against_torch(tmp_path, exclude):
    x = rand(1, 4, 7, 7)

    def build(v):
        return mb.avg_pool(
            x=v,
            kernel_sizes=[3, 3],
            strides=[2, 2],
            pad_type="custom",
            pad=[1, 1, 1, 1],
            exclude_padding_from_average=exclude,
        )

    out, _ = run_one(tmp_path, build, x)
    ref = torch.nn.functional.avg_pool2d(
        torch.from_numpy(x), 3, 2, padding=1, count_include_pad=not exclude
    ).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_fp16_outputs_are_rounded_after_every_op(tmp_path):
    x = rand(1, 8)

    def build(v):
        half = mb.cast(x=v, dtype="fp16")
        return mb.cast(x=mb.mul(x=half, y=np.float16(3.0)), dtype="fp32")

    out, _ = run_one(tmp_path, build, x)
    np.testing.assert_array_equal(out, (x.astype(np.float16) * np.float16(3.0)).astype(np.float32))


def test_an_op_without_a_kernel_is_unvalidated(tmp_path):
    path = save_program(lambda x: mb.sinh(x=x), {"x": X}, tmp_path / "sinh.mlpackage")
    executor = ReferenceExecutor(path)
    assert executor.missing_kernels() == ["sinh"]
    from mobattn import MobattnError

    with pytest.raises(MobattnError, match="no reference kernel for sinh"):
        executor.predict({executor.input_names[0]: X})


# ----- whole exports ------------------------------------------------------------------------


def export_eaa(tmp_path: Path, cli, *options: str) -> dict:
    result = cli(
        f"export --attention eaa --dim 16 --hw 4x4 --to coreml --out {tmp_path} --json {' '.join(options)}"
    )
    assert result.code == 0, result.err
    (record,) = result.json()
    return record


@pytest.mark.slow
def test_export_is_validated_by_the_reference_executor(tmp_path, cli):
    record = export_eaa(tmp_path, cli, "--precision fp32")
    validation = record["validation"]
    assert validation["executor"] == "reference" and validation["passed"] and validation["max_rel"] < 1e-4
    assert sorted(p.name for p in Path(record["path"]).iterdir()) == ["Data", "Manifest.json"]


@pytest.mark.slow
def test_fp16_epsilon_is_recorded_and_a_zero_vector_stays_finite(tmp_path, cli):
    record = export_eaa(tmp_path, cli)  # fp16 by default
    assert record["details"]["fp16_subnormal_constants"]["values"] == [pytest.approx(5.96e-8, rel=1e-2)]
    executor = ReferenceExecutor(record["path"])
    (out,) = executor.predict({executor.input_names[0]: np.zeros((1, 16, 16), np.float32)}).values()
    assert np.isfinite(out).all()


def _flip_weights(package: Path) -> None:
    """Corrupt the values (not the headers) of every weight blob: MIL blob metadata is
    64 bytes at the offset the spec names, with the data's size at +8 and offset at +16."""
    blob = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    spec = ct.utils.load_spec(str(package))
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    offsets = [
        op.attributes["val"].blobFileValue.offset
        for op in block.operations
        if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue"
    ]
    assert offsets, "no weight blob to corrupt"
    for meta in offsets:
        size = int.from_bytes(data[meta + 8 : meta + 16], "little")
        start = int.from_bytes(data[meta + 16 : meta + 24], "little")
        for i in range(start, start + size, 2):
            data[i] ^= 0x5A
    blob.write_bytes(bytes(data))


def _change_a_perm(package: Path) -> None:
    """Swap the last two entries of the first transpose's perm ([2,0,3,1,4] ->
    [2,0,3,4,1] in MHSA's q/k/v split, which keeps every shape at 16 tokens x 16 channels)."""
    model = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = ct.utils.load_spec(str(package))
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    transpose = next(op for op in block.operations if op.type == "transpose")
    perm_name = transpose.inputs["perm"].arguments[0].name
    const = next(op for op in block.operations if op.type == "const" and op.outputs[0].name == perm_name)
    values = const.attributes["val"].immediateValue.tensor.ints.values
    values[-1], values[-2] = values[-2], values[-1]
    model.write_bytes(spec.SerializeToString())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("subject", "mutate"),
    [
        ("--attention eaa --dim 16 --hw 4x4", _flip_weights),
        # 16 tokens and 2 heads of 16 channels: the swapped perm keeps every shape, so the
        # package still loads and only its numbers are wrong
        ("--attention mhsa --dim 32 --hw 4x4", _change_a_perm),
    ],
)
def test_a_mutated_package_fails_validation(tmp_path, cli, subject, mutate):
    result = cli(f"export {subject} --to coreml --precision fp32 --out {tmp_path} --json")
    assert result.code == 0, result.err
    package = Path(result.json()[0]["path"])
    assert cli(f"validate {package} {subject}").code == 0  # the untouched package agrees
    mutated = tmp_path / "mutated.mlpackage"
    shutil.copytree(package, mutated)
    mutate(mutated)
    result = cli(f"validate {mutated} {subject} --json")
    assert result.code == 1, result.err
    (verdict,) = result.json()
    assert not verdict["passed"]
    assert json.loads(json.dumps(verdict))  # plain JSON, no NaN literal


@pytest.mark.slow
def test_an_export_with_an_op_the_executor_lacks_is_unvalidated_not_ok(tmp_path, cli, monkeypatch):
    from mobattn.exporters import coreml_reference

    monkeypatch.delitem(coreml_reference.KERNELS, "softmax")
    result = cli(f"export --attention mhsa --dim 16 --hw 4x4 --to coreml --out {tmp_path} --json")
    assert result.code == 0, result.err
    (record,) = result.json()
    assert record["status"] == "unvalidated" and record["validation"] == {}
    assert "no reference kernel for softmax" in record["reason"] and "not validated" in result.err


@pytest.mark.slow
def test_validate_refuses_a_subject_the_artifact_is_not(tmp_path, cli):
    export_eaa(tmp_path, cli, "--precision fp32")
    package = tmp_path / "eaa-dim16-4x4-fp32.mlpackage"
    from helpers import assert_one_line_error

    assert_one_line_error(
        cli(f"validate {package} --attention ufo --dim 16 --hw 4x4"), "an export of attention eaa"
    )
