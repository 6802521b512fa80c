"""Model zoo: one file per family, all registered by name."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mobattn.attention import get_attention_class

from . import swiftformer  # noqa: F401  (registers the family)
from .registry import ModelConfig, Published, get_model_config, get_model_entry, list_models
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
    if attention is not None:
        get_attention_class(attention)  # unknown names fail before any building
    model = factory(attention=attention, num_classes=num_classes, **kwargs)
    model.name = name
    model.config = config
    if weights is not None:
        load_weights(model, weights)
    return model


__all__ = ["ModelConfig", "Published", "create_model", "get_model_config", "list_models", "load_weights"]
