"""The Core ML reference executor covers what the exporter can emit (issue 41): every
elementwise op a mechanism may use is converted by coremltools, and each MIL op it
becomes has a kernel that computes what torch does. A mechanism using an op listed here
as missing would be exported "unvalidated"; this test names the op first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobattn.exporters.coreml_reference import ReferenceExecutor
from mobattn.exporters.to_coreml import coremltools

# What a token mixer's code may apply elementwise or along its last axis (coremltools 9
# converts each; log_sigmoid and celu it cannot convert, so no export can hold them)
OPS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu": F.elu,
    "selu": F.selu,
    "leaky_relu": F.leaky_relu,
    "softplus": F.softplus,
    "mish": F.mish,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "relu6": F.relu6,
    "exp": torch.exp,
    "log": lambda x: torch.log(x.abs() + 1),
    "sqrt": lambda x: torch.sqrt(x.abs()),
    "rsqrt": lambda x: torch.rsqrt(x.abs() + 1),
    "abs": torch.abs,
    "pow": lambda x: x.abs() ** 1.5,
    "clamp": lambda x: x.clamp(-1, 1),
    "softmax": lambda x: x.softmax(-1),
    "log_softmax": lambda x: x.log_softmax(-1),
    "layer_norm": lambda x: F.layer_norm(x, x.shape[-1:]),
    "l2_normalize": lambda x: x / x.norm(dim=-1, keepdim=True),
    "amax": lambda x: x - x.amax(-1, keepdim=True),
    "erf": torch.erf,
    "sin": torch.sin,
    "cos": torch.cos,
    "softsign": F.softsign,
}


# What the converter writes instead of the op itself (the kernel is judged against that):
# coremltools 9 converts gelu(approximate="tanh") to MIL gelu with mode EXACT (2.3e-4 from
# torch's tanh form on these inputs), an export's own difference, not the executor's.
CONVERTED_AS = {"gelu_tanh": F.gelu}


class Applied(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.slow
def test_every_op_the_exporter_can_emit_has_a_kernel_that_agrees_with_torch(tmp_path):
    ct = coremltools()
    x = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))
    missing, wrong = {}, {}
    for name, fn in OPS.items():
        module = Applied(fn).eval()
        program = torch.export.export(module, (x,)).run_decompositions({})
        mlmodel = ct.convert(
            program,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=ct.precision.FLOAT32,
        )
        path = tmp_path / f"{name}.mlpackage"
        mlmodel.save(str(path))
        reference = ReferenceExecutor(path)
        if reference.missing_kernels():
            missing[name] = reference.missing_kernels()
            continue
        input_name = mlmodel.get_spec().description.input[0].name
        (out,) = reference.predict({input_name: x.numpy()}).values()
        expected = CONVERTED_AS.get(name, fn)(x).detach().numpy()
        if not np.allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5):
            wrong[name] = float(np.abs(np.asarray(out) - expected).max())
    assert missing == {}, f"ops without a reference kernel: {missing}"
    assert wrong == {}, f"kernels that disagree with torch (max abs error): {wrong}"
