"""What gets exported: a model or a bare token mixer, as a one-input module plus the
facts the artifact's name and metadata need."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

import mobattn
from mobattn.describe import default_attention_kwargs
from mobattn.errors import MobattnError
from mobattn.models import check_resolution_for, get_model_config

INIT_SEED = 0


@contextlib.contextmanager
def seeded(seed: int = INIT_SEED):
    """Random initialisation from a fixed seed, without touching the caller's RNG: an
    export of random weights can be rebuilt (``mobattn validate`` does) and compared."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class TokenMixerGraph(nn.Module):
    """A token mixer with its grid fixed, so it has the single input exporters want."""

    def __init__(self, mixer: nn.Module, hw: tuple[int, int]):
        super().__init__()
        self.mixer, self.hw = mixer, hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer(x, self.hw)


@dataclass
class Subject:
    """A module with one input, its example input shape, and its description."""

    module: nn.Module
    input_shape: tuple[int, ...]
    model: str | None
    attention: str | None
    size: str  # "224" / "224x320" for models, "dim64-14x14" for bare attentions
    input_name: str
    output_name: str
    metadata: dict[str, str] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    native: str | None = None  # a model's own token mixer (``eaa`` for SwiftFormer)

    @property
    def is_model(self) -> bool:
        return self.model is not None

    def example_input(self, seed: int = 0, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(shape or self.input_shape, generator=generator)

    def check_artifact(self, path, shape, metadata: dict) -> None:
        """Refuse, in one line, a file that is not an export of this subject: its input
        shape (dynamic dimensions match anything) or the model and attention its metadata
        names. Used by ``validate``, ``eval`` and every target's loader."""
        name = getattr(path, "name", str(path))
        expected = list(self.input_shape)
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        if len(fixed) != len(expected) or any(
            f is not None and f != e for f, e in zip(fixed, expected, strict=True)
        ):
            raise MobattnError(
                f"{name} takes input {'x'.join(str(d) for d in shape)}, but the subject given takes "
                f"{'x'.join(map(str, expected))}; describe the subject it was exported from"
            )
        check_exported_from(name, metadata, self.metadata)

    def stem(self, precision: str | None = None) -> str:
        """``{model}[-{attention}]-{size}[-{precision}]``; a bare attention is
        ``{attention}-{size}``."""
        parts = [self.model] if self.model else []
        if self.attention and (not self.model or self.attention != self.native):
            parts.append(self.attention)
        parts.append(self.size)
        if precision:
            parts.append(precision)
        return "-".join(parts)


def artifact_metadata(subject: Subject, precision: str, form: str, **facts) -> dict[str, str]:
    """The key/value metadata every mobattn export carries (ONNX metadata_props, Core ML's
    user-defined metadata, a .tflite's ``mobattn`` metadata buffer, a .pte's
    ``mobattn_metadata`` constant method): its subject, so ``validate FILE`` needs nothing
    restated, and what the export was. Editable text: never the criterion of a check."""
    from mobattn import __version__

    from .agreement import user_tolerance_in_force

    props = {**subject.metadata, "precision": precision, "form": form, **facts}
    if user_tolerance_in_force():  # the record says whether the default would have refused it
        props["user_tolerance"] = user_tolerance_in_force()
    props["mobattn_version"] = __version__
    return {key: str(value) for key, value in props.items()}


def check_exported_from(name: str, metadata: dict, subject: dict) -> None:
    """Refuse a file whose metadata names another model or attention than ``subject``
    (a subject's metadata): a wrong description, not a failed validation."""
    said = {k: metadata.get(k) for k in ("model", "attention") if metadata.get(k)}
    mine = {k: v for k, v in subject.items() if k in said}
    if said != mine:
        what = ", ".join(f"{k} {v}" for k, v in said.items())
        raise MobattnError(f"{name} is an export of {what}; describe that subject to use it")


def model_subject(
    name: str,
    attention: str | None = None,
    resolution: tuple[int, int] = (224, 224),
    batch: int = 1,
    weights: str | None = None,
) -> Subject:
    if batch <= 0:
        raise MobattnError(f"--batch must be positive, got {batch}")
    check_resolution_for(name, attention, resolution)
    with seeded():
        module = mobattn.create_model(name, attention=attention, weights=weights).eval()
    config = get_model_config(name)
    h, w = resolution
    size = str(h) if h == w else f"{h}x{w}"
    metadata = {
        "model": name,
        "attention": attention or config.native_attention,
        "resolution": f"{h}x{w}",
        "mean": ",".join(map(str, config.mean)),
        "std": ",".join(map(str, config.std)),
        "crop_pct": str(config.crop_pct),
        "interpolation": config.interpolation,
        "weights": "local checkpoint" if weights else f"random init (seed {INIT_SEED})",
    }
    return Subject(
        module=module,
        input_shape=(batch, 3, h, w),
        model=name,
        attention=attention,
        size=size,
        input_name="image",
        output_name="logits",
        metadata=metadata,
        mean=config.mean,
        std=config.std,
        native=config.native_attention,
    )


def attention_subject(
    name: str, dim: int, hw: tuple[int, int], heads: int | None = None, batch: int = 1
) -> Subject:
    for option, value in (("--dim", dim), ("--batch", batch)) + ((("--heads", heads),) if heads else ()):
        if value <= 0:
            raise MobattnError(f"{option} must be positive, got {value}")
    kwargs = default_attention_kwargs(name, dim, heads)
    with seeded():
        mixer = mobattn.create_attention(name, dim, **kwargs).eval()
    settings = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return Subject(
        module=TokenMixerGraph(mixer, hw).eval(),
        input_shape=(batch, hw[0] * hw[1], dim),
        model=None,
        attention=name,
        size=f"dim{dim}-{hw[0]}x{hw[1]}",
        input_name="tokens",
        output_name="tokens_out",
        metadata={
            "attention": name,
            "dim": str(dim),
            "hw": f"{hw[0]}x{hw[1]}",
            "settings": settings,
            "weights": f"random init (seed {INIT_SEED})",
        },
    )


def described_by(metadata: dict) -> dict | None:
    """The subject options (``model``, ``attention``, ``resolution``; or ``attention``,
    ``dim``, ``hw``, ``heads``) a mobattn export's metadata names, or None for a file that
    names none (another tool's, or a format without mobattn's metadata). ``weights`` is
    what the metadata says of them: a local checkpoint must be given again."""
    try:
        if metadata.get("model"):
            h, w = (int(v) for v in metadata["resolution"].split("x"))
            return {
                "model": metadata["model"],
                "attention": metadata.get("attention"),
                "resolution": (h, w),
                "weights": metadata.get("weights"),
            }
        if metadata.get("attention") and metadata.get("dim") and metadata.get("hw"):
            settings = dict(s.split("=", 1) for s in metadata.get("settings", "").split(",") if "=" in s)
            heads = settings.get("num_heads")
            return {
                "attention": metadata["attention"],
                "dim": int(metadata["dim"]),
                "hw": metadata["hw"],
                "heads": int(heads) if heads else None,
                "weights": metadata.get("weights"),
            }
    except (KeyError, ValueError):
        return None
    return None


def in_words(said: dict) -> str:
    """What :func:`described_by` found, as ``validate`` and ``inspect`` say it."""
    if said.get("model"):
        h, w = said["resolution"]
        return f"model {said['model']} ({said['attention']}) at {h}x{w}"
    heads = f", {said['heads']} heads" if said["heads"] else ""
    return f"{said['attention']} dim {said['dim']} at {said['hw']}{heads}"
