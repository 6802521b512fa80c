"""Name -> token-mixer constructor, in the manner of timm's model registry."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mobattn.errors import MobattnError, unknown_name_error

_ATTENTIONS: dict[str, Callable[..., nn.Module]] = {}


def register_attention(name: str):
    """Class decorator: make ``cls(dim, **kwargs)`` available as ``name``."""

    def wrap(cls):
        if name in _ATTENTIONS:
            raise RuntimeError(f"attention '{name}' registered twice")
        _ATTENTIONS[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def list_attentions() -> list[str]:
    return sorted(_ATTENTIONS)


def get_attention_class(name: str):
    if name not in _ATTENTIONS:
        raise unknown_name_error("attention", name, list_attentions())
    return _ATTENTIONS[name]


def create_attention(name: str, dim: int, **kwargs) -> nn.Module:
    """Build the token mixer ``name`` for ``dim`` channels."""
    cls = get_attention_class(name)
    try:
        return cls(dim, **kwargs)
    except TypeError as exc:  # an unknown keyword for this mechanism
        raise MobattnError(f"attention '{name}': {exc}") from None
