"""Sweeps: a grid of configurations from a TOML file or a preset, run one by one,
each row appended to a JSONL file as it finishes; resumable and shardable."""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from mobattn.attention import list_attentions
from mobattn.errors import MobattnError
from mobattn.models import list_models

from .config import BACKENDS, DEVICES, BenchConfig


@dataclass
class Grid:
    """The axes of a sweep. Bare attentions use ``attentions x dims x hws``; models use
    ``models x model_attentions x resolutions``; both cross backends, threads,
    precisions and devices."""

    attentions: list[str] = field(default_factory=list)
    dims: list[int] = field(default_factory=lambda: [64])
    hws: list[list[int]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    model_attentions: list[str | None] = field(default_factory=lambda: [None])
    resolutions: list[int] = field(default_factory=lambda: [224])
    backends: list[str] = field(default_factory=lambda: ["torch"])
    threads: list[int] = field(default_factory=lambda: [1])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    profile: str = "default"
    timeout_s: float = 300.0

    def validate(self) -> None:
        for name in self.attentions + [a for a in self.model_attentions if a]:
            if name not in list_attentions():
                raise MobattnError(f"sweep: unknown attention '{name}'")
        for name in self.models:
            if name not in list_models():
                raise MobattnError(f"sweep: unknown model '{name}'")
        for backend in self.backends:
            if backend not in BACKENDS:
                raise MobattnError(f"sweep: unknown backend '{backend}' (valid: {', '.join(BACKENDS)})")
        for device in self.devices:
            if device not in DEVICES:
                raise MobattnError(f"sweep: unknown device '{device}'")
        if not (self.attentions and self.hws) and not self.models:
            raise MobattnError("sweep: the grid needs attentions and hws, or models")
        sizes = [*self.dims, *self.threads, *self.resolutions, *[v for hw in self.hws for v in hw]]
        if any(not isinstance(v, int) or v <= 0 for v in sizes):
            raise MobattnError("sweep: dims, threads, hws and resolutions must be positive integers")

    def configs(self) -> list[BenchConfig]:
        """Every configuration, in a fixed order (so shards agree)."""
        settings = list(itertools.product(self.backends, self.devices, self.threads, self.precisions))
        out = []
        for attention, dim, hw in itertools.product(self.attentions, self.dims, self.hws):
            for backend, device, threads, precision in settings:
                out.append(
                    BenchConfig(
                        "attention",
                        backend,
                        device,
                        threads,
                        1,
                        precision,
                        attention=attention,
                        dim=dim,
                        hw=list(hw),
                        profile=self.profile,
                        timeout_s=self.timeout_s,
                    )
                )
        for model, attention, res in itertools.product(self.models, self.model_attentions, self.resolutions):
            for backend, device, threads, precision in settings:
                out.append(
                    BenchConfig(
                        "model",
                        backend,
                        device,
                        threads,
                        1,
                        precision,
                        model=model,
                        attention=attention,
                        resolution=[res, res],
                        profile=self.profile,
                        timeout_s=self.timeout_s,
                    )
                )
        return out


def _square(sizes: list[int]) -> list[list[int]]:
    return [[s, s] for s in sizes]


PRESETS = {
    # the five mechanisms at dim 64 and 128 over 14x14 ... 128x128 tokens
    "attention-scaling": Grid(
        attentions=["eaa", "external", "hilo", "mhsa", "ufo"],
        dims=[64, 128],
        hws=_square([14, 28, 56, 80, 112, 128]),
        backends=["torch", "onnxruntime"],
        threads=[1, 2],
    ),
    # the same mechanisms under ExecuTorch's XNNPACK runtime (the mobile CPU kernels)
    "attention-scaling-executorch": Grid(
        attentions=["eaa", "external", "hilo", "mhsa", "ufo"],
        dims=[64],
        hws=_square([14, 28, 56, 80, 112, 128]),
        backends=["executorch"],
        threads=[1, 2],
    ),
    # the SwiftFormer family and its attention swaps from 224 to 1024 pixels
    "models": Grid(
        models=["swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3"],
        model_attentions=[None, "hilo", "external", "ufo", "mhsa"],
        resolutions=[224, 384, 512, 768, 1024],
        backends=["onnxruntime", "torch"],
        threads=[1],
    ),
    # a small grid for smoke runs and `make run`
    "quick": Grid(
        attentions=["eaa", "external", "hilo", "mhsa", "ufo"],
        dims=[64],
        hws=_square([14, 28, 56]),
        backends=["onnxruntime"],
        threads=[1],
        profile="quick",
    ),
}


def load_grid(preset: str | None = None, path: str | Path | None = None) -> Grid:
    """A preset, or a TOML file whose top-level keys are Grid's fields (a file may
    start from a preset with ``preset = "name"``)."""
    if (preset is None) == (path is None):
        raise MobattnError("give a sweep file or --preset NAME (one of them)")
    if preset is not None:
        if preset not in PRESETS:
            from mobattn.errors import unknown_name_error

            raise unknown_name_error("preset", preset, sorted(PRESETS))
        grid = PRESETS[preset]
    else:
        path = Path(path)
        if not path.is_file():
            raise MobattnError(f"sweep file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MobattnError(f"{path} is not valid TOML: {exc}") from None
        base = PRESETS.get(data.pop("preset", None), Grid())
        known = {f.name for f in fields(Grid)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MobattnError(
                f"{path}: unknown keys {', '.join(unknown)} (valid: {', '.join(sorted(known))})"
            )
        hws = data.get("hws")
        if hws is not None:
            data["hws"] = [[v, v] if isinstance(v, int) else list(v) for v in hws]
        grid = Grid(**{**base.__dict__, **data})
    grid.validate()
    return grid


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4): the second of four shards."""
    if text is None:
        return 1, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise MobattnError(f"--shard must look like i/n (e.g. 2/4), got '{text}'") from None
    if not 1 <= index <= count:
        raise MobattnError(f"--shard {text}: need 1 <= i <= n")
    return index, count


def shard(configs: list[BenchConfig], index: int, count: int) -> list[BenchConfig]:
    return [c for i, c in enumerate(configs) if i % count == index - 1]


def pending(configs: list[BenchConfig], results: Path, environment: dict) -> tuple[list[BenchConfig], int]:
    """The configurations not yet in ``results`` for this environment, and how many
    were skipped."""
    from .results import done_keys, read_rows

    done = done_keys(read_rows(results), environment)
    todo = [c for c in configs if c.key() not in done]
    return todo, len(configs) - len(todo)
