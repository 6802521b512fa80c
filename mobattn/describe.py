"""Plain records describing a subject's size and cost: what ``mobattn info`` and
``mobattn list`` print, and what other tools embed in their own records."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mobattn.attention import create_attention, get_attention_class, list_attentions
from mobattn.flops import count_macs, count_params
from mobattn.models import create_model, get_model_config, list_models
from mobattn.models.swap import mixer_kwargs
from mobattn.models.swiftformer import SwiftFormerEncoder


@dataclass
class AttentionInfo:
    attention: str
    dim: int
    hw: list[int]
    tokens: int
    settings: dict
    params: int
    macs: int  # analytic
    measured_macs: int  # torch's FLOP counter / 2
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MixerSetting:
    stage: int
    dim: int
    tokens: int
    settings: dict


@dataclass
class ModelInfo:
    model: str
    attention: str
    resolution: list[int]
    params: int
    macs: int
    published_params_m: float | None
    published_gmacs: float | None
    published_top1: float | None
    published_latency_ms: float | None
    published_device: str | None
    published_source: str | None
    input_size: list[int]
    mean: list[float]
    std: list[float]
    crop_pct: float
    interpolation: str
    mixers: list[MixerSetting]
    swap: str  # which mechanisms swap in, or why none does
    swappable: bool

    def to_dict(self) -> dict:
        return asdict(self)


def default_attention_kwargs(name: str, dim: int, num_heads: int | None) -> dict:
    """Settings for a bare module: the swap rule, unless the user fixes the heads."""
    kwargs = mixer_kwargs(name, dim)
    if num_heads is not None:
        kwargs["num_heads"] = num_heads
    return kwargs


def describe_attention(
    name: str, dim: int, hw: tuple[int, int], num_heads: int | None = None
) -> AttentionInfo:
    kwargs = default_attention_kwargs(name, dim, num_heads)
    module = create_attention(name, dim, **kwargs).eval()
    x = torch.zeros(1, hw[0] * hw[1], dim)
    cost = module.cost(hw)
    return AttentionInfo(
        attention=name,
        dim=dim,
        hw=list(hw),
        tokens=hw[0] * hw[1],
        settings=kwargs,
        params=cost.params,
        macs=cost.macs,
        measured_macs=count_macs(module, x, hw),
        description=get_attention_class(name).summary,
    )


def describe_all_attentions(dim: int, hw: tuple[int, int]) -> list[AttentionInfo]:
    return [describe_attention(name, dim, hw) for name in list_attentions()]


def mixer_settings(model: torch.nn.Module, resolution: tuple[int, int]) -> list[MixerSetting]:
    """The token mixer of each stage, its width, its tokens and its settings."""
    from mobattn.models.efficientformer import Meta3D

    settings, h, w = [], -(-resolution[0] // 4), -(-resolution[1] // 4)
    if any(isinstance(m, Meta3D) for m in model.modules()):  # EfficientFormer: the last stage, 1/32
        h, w = -(-resolution[0] // 32), -(-resolution[1] // 32)
        blocks = [m for m in model.modules() if isinstance(m, Meta3D)]
        dim = blocks[0].layer_scale_1.shape[0]
        return [MixerSetting(4, dim, h * w, mixer_kwargs(model.attention, dim))] * len(blocks)
    encoders = [m for m in model.modules() if isinstance(m, SwiftFormerEncoder)]
    for stage, block in enumerate(encoders):
        if stage:
            h, w = -(-h // 2), -(-w // 2)
        dim = block.layer_scale_1.shape[0]
        settings.append(MixerSetting(stage + 1, dim, h * w, mixer_kwargs(model.attention, dim)))
    return settings


def describe_model(
    name: str, attention: str | None = None, resolution: tuple[int, int] | None = None
) -> ModelInfo:
    """Measured params and MACs at ``resolution`` (default: the model's input size) beside
    the published figures."""
    config = get_model_config(name)
    resolution = resolution or tuple(config.input_size[1:])
    model = create_model(name, attention=attention).eval()
    pub = config.published
    x = torch.zeros(1, 3, *resolution)
    return ModelInfo(
        model=name,
        attention=attention or config.native_attention,
        resolution=list(resolution),
        params=count_params(model),
        macs=count_macs(model, x),
        published_params_m=pub.params_m if pub else None,
        published_gmacs=pub.gmacs if pub else None,
        published_top1=pub.top1 if pub else None,
        published_latency_ms=pub.latency_ms if pub else None,
        published_device=pub.latency_device if pub else None,
        published_source=pub.source if pub else None,
        input_size=list(config.input_size),
        mean=list(config.mean),
        std=list(config.std),
        crop_pct=config.crop_pct,
        interpolation=config.interpolation,
        mixers=mixer_settings(model, resolution),
        swap=config.no_swap or f"any registered mechanism replaces its {config.native_attention} blocks",
        swappable=config.no_swap is None,
    )


def describe_all_models() -> list[ModelInfo]:
    """Every model, smallest first (by parameters), as a reader compares them."""
    return sorted((describe_model(name) for name in list_models()), key=lambda info: info.params)
