"""Loading local checkpoints: ``weights_only=True``, strict, with errors a user can act on."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from mobattn.errors import MobattnError, first_line


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint: a bare state_dict, or one under ``model`` or ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise MobattnError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run the file's code
        raise MobattnError(
            f"cannot read weights {path}: it holds Python objects beyond tensors, which mobattn "
            "never unpickles; save a plain state_dict (torch.save(model.state_dict(), path))"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise MobattnError(f"cannot read weights {path}: {first_line(exc)}") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MobattnError(
            f"{path} holds no state_dict (expected tensors, or a dict under 'model'/'state_dict')"
        )
    return obj


def describe_mismatch(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> str | None:
    """One line naming the first missing, unexpected and mis-shaped keys, or None."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    mistyped = [  # a float parameter given as bool/int (or the reverse) is not a cast away
        f"{k} {str(state_dict[k].dtype).removeprefix('torch.')} vs {str(own[k].dtype).removeprefix('torch.')}"
        for k in own
        if k in state_dict and _kind(state_dict[k].dtype) != _kind(own[k].dtype)
    ]
    parts = []
    kinds = (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
        ("mis-typed", mistyped),
    )
    for label, keys in kinds:
        if keys:
            more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
            parts.append(f"{len(keys)} {label}: {keys[0]}{more}")
    return "; ".join(parts) or None


def _kind(dtype: torch.dtype) -> str:
    """float (any width: an fp16 checkpoint loads into fp32), bool, or integer."""
    if dtype.is_floating_point:
        return "float"
    return "bool" if dtype == torch.bool else "integer"


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load ``path`` into ``model``; a strict mismatch is one clear error."""
    state_dict = read_state_dict(path)
    problem = describe_mismatch(model, state_dict)
    if problem and strict:
        raise MobattnError(f"weights {Path(path).name} do not fit {type(model).__name__}: {problem}")
    if not strict:  # shapes and kinds must still agree for the keys that are loaded
        own = model.state_dict()
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if k in own and v.shape == own[k].shape and _kind(v.dtype) == _kind(own[k].dtype)
        }
    model.load_state_dict(state_dict, strict=strict)
    return model
