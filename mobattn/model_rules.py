"""What a model takes: which mechanism may be swapped in and which input sizes, as rules
over a model's facts alone (its native mechanism, why it takes no swap, the only sizes
its learned position terms allow). Imports nothing heavy, so the same rules serve the
registry (:mod:`mobattn.models`, whose configs carry these facts) and a command that
plans from the catalogue (:mod:`mobattn.catalogue`) without importing torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mobattn.errors import MobattnError, unknown_name_error


class ModelFacts(Protocol):
    """The facts the rules read (``ModelConfig`` has them, as does a catalogue entry)."""

    native_attention: str
    no_swap: str | None
    native_resolutions: tuple[int, ...] | None


def swap_rule(name: str, facts: ModelFacts, attention: str | None, attentions: Sequence[str]) -> str | None:
    """The mechanism to swap into model ``name``: None for its own; a user error for an
    unknown mechanism or a family that takes no swap (the error says why)."""
    if attention is None or attention == facts.native_attention:
        return None
    if facts.no_swap:
        raise MobattnError(f"--attention does not apply to {name}: {facts.no_swap}")
    if attention not in attentions:  # unknown names fail before any building
        raise unknown_name_error("attention", attention, sorted(attentions))
    return attention


def resolution_rule(
    name: str, facts: ModelFacts, attention: str | None, resolution: Sequence[int], attentions: Sequence[str]
) -> None:
    """Refuse an input the model cannot take (DeiT's position embeddings and
    EfficientFormer's attention biases are learned for 224x224)."""
    allowed = facts.native_resolutions
    swapped = swap_rule(name, facts, attention, attentions)
    if allowed and swapped is None and tuple(resolution) not in {(r, r) for r in allowed}:
        sizes = " or ".join(f"{r}x{r}" for r in allowed)
        raise MobattnError(
            f"{name} takes {sizes} inputs only (learned position terms), got {resolution[0]}x{resolution[1]}"
        )
