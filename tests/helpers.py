"""Test helpers: reference cases, running the CLI in-process, checking one-line errors."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"


def load_case(path: Path) -> tuple[dict, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A reference case: (meta, state_dict, x, y), per tests/data/README.md."""
    case = np.load(path, allow_pickle=False)
    meta = json.loads(str(case["meta"]))
    prefix = "state_dict/"
    state_dict = {k[len(prefix) :]: torch.from_numpy(case[k]) for k in case.files if k.startswith(prefix)}
    return meta, state_dict, torch.from_numpy(case["x"]), torch.from_numpy(case["y"])


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).abs().max() / ref.abs().max())


def join(args) -> str:
    """Arguments (paths included) as one shell-quoted command string."""
    return shlex.join(str(a) for a in args)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, one line on stderr, no traceback, naming what went wrong."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)
