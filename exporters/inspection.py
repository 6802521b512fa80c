"""What an artifact holds: op histogram, tensor ranks, and what keeps it off the fast
path of the hardware it is meant for (``mobattn inspect``).

- ``.mlpackage``: the ML Program's ops, their output ranks, and the Neural Engine rules
  of :mod:`.ane_rules` (predictions); on macOS, Core ML's own compute plan on request.
- ``.onnx``: the graph's ops and ranks (after ONNX shape inference) and onnxruntime's
  mobile usability verdict (:mod:`.mobile_check`).
- ``.pte``: the program's instructions: calls into a delegate (XNNPACK) and ops left on
  ExecuTorch's portable kernels.

Each target's module implements its ``inspect`` (see :mod:`.formats`); this module holds
the record they share.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobattn.errors import MobattnError

from .formats import target_for_file
from .probe import check_file


@dataclass
class Inspection:
    path: str
    format: str
    op_histogram: dict[str, int]
    ops_total: int
    ranks: dict[str, int] = field(default_factory=dict)  # output rank -> ops producing one
    ane: dict | None = None  # {"findings": [...], "summary": {...}} for Core ML
    mobile_usability: dict | None = None  # onnxruntime's verdict, for ONNX
    delegation: dict | None = None  # for ExecuTorch
    compute_plan: dict | None = None  # Core ML's own placement (macOS, --compute-plan)
    metadata: dict = field(default_factory=dict)  # what the file says of itself (mobattn's exports: subject)

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_artifact(path: str | Path, compute_plan: bool = False) -> Inspection:
    """What the artifact at ``path`` holds, by its target's ``inspect``."""
    path = Path(path)
    target = target_for_file(path, "inspect")
    if not path.exists():
        raise MobattnError(f"{path} does not exist")
    check_file(path, target)  # a regular file (never a FIFO), not empty, the right header
    if compute_plan and target.name != "coreml":
        raise MobattnError("--compute-plan applies to Core ML packages (.mlpackage)")
    implementation = target.implementation()
    result = implementation.inspect(path, compute_plan=compute_plan)
    result.metadata = implementation.file_metadata(path)
    return result


def rank_histogram(ranks: list[int]) -> dict[str, int]:
    """Output rank -> how many ops produce one."""
    return {str(k): v for k, v in sorted(Counter(ranks).items())}
