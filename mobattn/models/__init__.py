"""Model zoo: one file per family, all registered by name."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mobattn.attention import list_attentions
from mobattn.model_rules import resolution_rule, swap_rule

from . import deit, efficientformer, mobilevit, swiftformer  # noqa: F401, I001  (registers the families, in this order)
from .registry import (
    Family,
    ModelConfig,
    Published,
    get_model_config,
    get_model_entry,
    list_models,
    models_by_family,
)
from .weights import load_weights


def create_model(
    name: str,
    attention: str | None = None,
    weights: str | Path | None = None,
    num_classes: int = 1000,
    **kwargs,
) -> nn.Module:
    """Build model ``name``, optionally with another token mixer and local weights.

    The model carries its :class:`ModelConfig` as ``model.config`` and its registry
    name as ``model.name``.
    """
    factory, config = get_model_entry(name)
    attention = swap_for(name, attention)
    model = factory(attention=attention, num_classes=num_classes, **kwargs)
    model.name = name
    model.config = config
    if weights is not None:
        load_weights(model, weights)
    return model


def native_attention(name: str) -> str:
    """The token mixer model ``name`` ships with (``eaa`` for SwiftFormer)."""
    return get_model_config(name).native_attention


def swap_for(name: str, attention: str | None) -> str | None:
    """The mechanism to swap into model ``name`` (:func:`mobattn.model_rules.swap_rule`)."""
    return swap_rule(name, get_model_config(name), attention, list_attentions())


def check_resolution_for(name: str, attention: str | None, resolution: tuple[int, int]) -> None:
    """Refuse an input the model cannot take (:func:`mobattn.model_rules.resolution_rule`)."""
    resolution_rule(name, get_model_config(name), attention, resolution, list_attentions())


__all__ = [
    "Family",
    "ModelConfig",
    "check_resolution_for",
    "native_attention",
    "swap_for",
    "Published",
    "create_model",
    "get_model_config",
    "imagenet_classes",
    "list_models",
    "models_by_family",
    "load_weights",
]


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (the short names of Keras'
    ``imagenet_class_index.json``), shipped with mobattn for Core ML classifier exports.
    Two names occur twice there (crane, maillot); each occurrence gets its index, e.g.
    ``crane_134`` and ``crane_517``, since a classifier's labels must be unique."""
    from collections import Counter
    from importlib.resources import files

    text = files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    return [f"{name}_{i}" if name in repeated else name for i, name in enumerate(names)]
