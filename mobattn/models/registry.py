"""Name -> model constructor and its default config, in the manner of timm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from mobattn.errors import unknown_name_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Published:
    """Figures the authors published for the official model, with their source."""

    top1: float  # ImageNet-1K top-1, %
    params_m: float | None  # millions; None: not found in the primary source
    gmacs: float | None  # at the default input size; None: not found in the primary source
    latency_ms: float | None  # None: no published mobile latency found for the model
    latency_device: str | None
    source: str


@dataclass(frozen=True)
class Family:
    """What tables and plots say about a family: the short label of its models
    (``swiftformer_xs`` -> ``SF-XS``) and the colour of its points."""

    name: str
    prefix: str  # the model-name prefix the short label replaces
    short: str
    colour: str  # a matplotlib colour
    rank: int  # where its models stand in zoo-wide presets (smaller first)
    # measured by the zoo-wide presets (up to 1024 px): a family joins them when it says so, so
    # a new or test family costs no sweep until asked (ViT-Ti: deit_tiny's module, measured there)
    in_presets: bool = False

    def short_name(self, model: str) -> str:
        return self.short + model.removeprefix(self.prefix).upper()


@dataclass(frozen=True)
class ModelConfig:
    """Preprocessing and provenance a model carries (timm's ``default_cfg``)."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.95
    interpolation: str = "bicubic"
    num_classes: int = 1000
    published: Published | None = None
    native_attention: str = "eaa"  # the token mixer the family ships with
    no_swap: str | None = None  # why ``attention=`` does not apply, for families that take no swap
    native_resolutions: tuple[int, ...] | None = None  # the only square inputs the native model takes
    family: Family | None = None
    extra: dict = field(default_factory=dict)


_MODELS: dict[str, tuple[Callable[..., nn.Module], ModelConfig]] = {}


def register_model(name: str, config: ModelConfig):
    """Function decorator: ``fn(**kwargs) -> nn.Module`` becomes model ``name``."""

    def wrap(fn):
        if name in _MODELS:
            raise RuntimeError(f"model '{name}' registered twice")
        _MODELS[name] = (fn, config)
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def models_by_family() -> list[str]:
    """Every model of the families the zoo-wide presets measure, family by family (by the
    family's ``rank``), each family's models in the order it registers them (smallest
    first): the order of presets that span the zoo."""
    families = {name: config.family for name, (_, config) in _MODELS.items()}
    chosen = [name for name, family in families.items() if family is None or family.in_presets]
    return sorted(chosen, key=lambda name: families[name].rank if families[name] else 99)


def get_model_entry(name: str) -> tuple[Callable[..., nn.Module], ModelConfig]:
    if name not in _MODELS:
        raise unknown_name_error("model", name, list_models())
    return _MODELS[name]


def get_model_config(name: str) -> ModelConfig:
    return get_model_entry(name)[1]
