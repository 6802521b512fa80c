"""A dynamically quantized pt2e graph judged in the runtime it is for: the mixed-precision
search (:mod:`.pt2e_search`) lowers each trial as the export would and runs it there.

Why not in torch: XNNPACK's and LiteRT's run-time rounding is not what any torch
emulation tried computes. On the trained ViT-Ti the closest emulation
(:func:`.pt2e_dynamic.per_token`) said 98.6% agreement on 500 held-out images where the
ExecuTorch file agreed on 97.8%; a search judged in torch stopped short of its target in
the file. Each trial costs one lowering (about 30 s for the ViT-Ti on ExecuTorch here; on
LiteRT one ai-edge-quantizer pass over the float file, a few seconds); the ranking stays in
torch (:func:`.pt2e_dynamic.impact_ranked`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .silence import quiet, quiet_native_stderr

Judge = Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]


def executorch_judge(example: torch.Tensor) -> Judge:
    """A quantized module lowered to XNNPACK and loaded in ExecuTorch's runtime, as a
    function of one input batch."""

    def judge(quantized: torch.nn.Module):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        with quiet(), quiet_native_stderr():
            program = torch.export.export(quantized, (example,))
            buffer = (
                to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
                .to_executorch()
                .buffer
            )
            method = Runtime.get().load_program(buffer).load_method("forward")
        return lambda x: method.execute([x])[0]

    return judge


def litert_judge(example: torch.Tensor) -> Judge:
    """A LiteRT dynamic int8 trial is already the file LiteRT runs
    (:class:`.litert_dynamic.DynamicFile`): judged as it is."""
    return lambda quantized: quantized


JUDGES = {"executorch": executorch_judge, "litert": litert_judge}
