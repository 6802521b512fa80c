"""Sweeps: a grid of configurations from a TOML file or a preset, run one by one,
each row appended to a JSONL file as it finishes; resumable and shardable."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from mobattn.catalogue import attention_names as list_attentions
from mobattn.catalogue import model_entry, models_by_family, swap_for
from mobattn.catalogue import model_names as list_models
from mobattn.errors import MobattnError, unknown_name_error
from mobattn.parsing import MAX_BATCH, MAX_DIM, MAX_THREADS, check_hw, check_int, check_resolution

from .api import attention_configs, model_configs
from .config import (
    BACKENDS,
    DEVICES,
    MIN_MEMORY_LIMIT_MB,
    BenchConfig,
    check_precision,
    check_profile,
    check_timeout,
)


@dataclass
class Grid:
    """The axes of a sweep. Bare attentions use ``attentions x dims x hws``; models use
    ``models x model_attentions x resolutions`` (``None``, written ``"own"`` in a grid
    file, is each model's own mechanism; ``"eaa"`` is EAA swapped in wherever it is not
    the model's own); both cross backends, threads, precisions and devices."""

    attentions: list[str] = field(default_factory=list)
    dims: list[int] = field(default_factory=lambda: [64])
    hws: list[list[int]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    model_attentions: list[str | None] = field(default_factory=lambda: [None])
    resolutions: list[int] = field(default_factory=lambda: [224])  # [] : each model's own input size
    backends: list[str] = field(default_factory=lambda: ["torch"])
    threads: list[int] = field(default_factory=lambda: [1])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    batches: list[int] = field(default_factory=lambda: [1])  # >1: throughput (images/s)
    profile: str = "default"
    timeout_s: float = 300.0
    memory_limit_mb: int | None = None
    breadth_first: bool = False  # see configs()
    op_profile: bool = False  # each row also carries its per-op profile (details["op_profile"])

    def validate(self) -> None:
        """Every field, with the CLI's rules, before the first measurement."""
        for name in (
            "attentions",
            "dims",
            "hws",
            "models",
            "model_attentions",
            "resolutions",
            "backends",
            "threads",
            "precisions",
            "devices",
            "batches",
        ):
            if not isinstance(getattr(self, name), list):
                raise MobattnError(f"sweep: {name} must be a list, got {getattr(self, name)!r}")
        for name in self.attentions + [a for a in self.model_attentions if a is not None]:
            _known(name, list_attentions(), "attention")
        for name in self.models:
            _known(name, list_models(), "model")
        for name in self.backends:
            _known(name, list(BACKENDS), "backend")
        for name in self.devices:
            _known(name, list(DEVICES), "device")
        for name in self.precisions:
            check_precision(name)
        check_profile(self.profile)
        for option, values in (
            ("backends", self.backends),
            ("threads", self.threads),
            ("precisions", self.precisions),
            ("devices", self.devices),
            ("batches", self.batches),
        ):
            if not values:
                raise MobattnError(f"sweep: {option} is empty")
        for v in self.dims:
            check_int(v, "sweep: dims", 1, MAX_DIM)
        for v in self.threads:
            check_int(v, "sweep: threads", 1, MAX_THREADS)
        for v in self.batches:
            check_int(v, "sweep: batches", 1, MAX_BATCH)
        for hw in self.hws:
            check_hw(hw, "sweep: hws")
        for v in self.resolutions:
            check_resolution([v, v], "sweep: resolutions")
        check_timeout(self.timeout_s, "sweep: timeout_s")
        for flag in ("breadth_first", "op_profile"):
            if not isinstance(getattr(self, flag), bool):
                raise MobattnError(f"sweep: {flag} must be true or false, got {getattr(self, flag)!r}")
        if self.memory_limit_mb is not None:
            check_int(self.memory_limit_mb, "sweep: memory_limit_mb", MIN_MEMORY_LIMIT_MB)
        if not (self.attentions and self.hws) and not self.models:
            raise MobattnError("sweep: the grid needs attentions and hws, or models")
        for model in self.models:
            _check_some_swap(model, self.model_attentions)

    def configs(self) -> list[BenchConfig]:
        """Every configuration, in a fixed order (so shards agree). ``breadth_first``: the
        models first, then one pass over every mechanism and backend per (precision, token
        grid, dim), so a run cut short still has every mechanism at the first sizes."""
        configs = [config for batch in self.batches for config in self._configs(batch)]
        if not self.breadth_first:
            return configs

        def rank(config: BenchConfig) -> tuple:
            if config.kind != "attention":
                return (0,)
            hw = self.hws.index(config.hw)
            return (1, self.precisions.index(config.precision), hw, self.dims.index(config.dim))

        return sorted(configs, key=rank)  # stable: the grid's order within each pass

    def _configs(self, batch: int) -> list[BenchConfig]:
        settings = dict(
            batch=batch,
            backends=self.backends,
            threads=self.threads,
            precisions=self.precisions,
            devices=self.devices,
            profile=self.profile,
            timeout_s=self.timeout_s,
            memory_limit_mb=self.memory_limit_mb,
            op_profile=self.op_profile,
        )
        bare = attention_configs(self.attentions, self.dims, self.hws, **settings) if self.hws else []
        if self.resolutions:
            sizes = [(r, r) for r in self.resolutions]
            return bare + model_configs(self.models, self.model_attentions, sizes, **settings)
        own = [  # no resolutions: each model at its own input size
            config
            for m in self.models
            for config in model_configs(
                [m], self.model_attentions, [tuple(model_entry(m).input_size[1:])], **settings
            )
        ]
        return bare + own


OWN = "own"  # in a grid file's model_attentions: each model's own mechanism


def _check_some_swap(model: str, attentions: list[str | None]) -> None:
    """A model must take at least one of the grid's mechanisms: naming ``eaa`` for DeiT
    measures nothing rather than DeiT's own attention under EAA's name."""
    reasons = []
    for attention in attentions:
        try:
            swap_for(model, attention)
            return
        except MobattnError as exc:
            reasons.append(str(exc))
    names = ", ".join(a or OWN for a in attentions)
    raise MobattnError(f"sweep: {model} takes none of model_attentions ({names}): {reasons[0]}")


def _known(name: object, valid: list[str], kind: str) -> None:
    if not isinstance(name, str) or name not in valid:
        raise unknown_name_error(kind, str(name), valid)


def _square(sizes: list[int]) -> list[list[int]]:
    return [[s, s] for s in sizes]


FAMILIES = models_by_family()  # every model of the zoo, family by family

# one member of every family, and the SwiftFormers: the GPU lease's models
GPU_MODELS = ("swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3", "efficientformer_l1")
GPU_MODELS += ("efficientformer_l3", "deit_tiny", "deit_small", "mobilevit_xs", "mobilevit_s")
GPU_MODELS += ("mobilevitv2_100", "vit_tiny_patch16_224")

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
    # ExecuTorch against onnxruntime, side by side, each in its fastest faithful form
    # (exporters.deploy): the five mechanisms and the SwiftFormer family with its swaps
    "runtime-parity": Grid(
        attentions=["eaa", "external", "hilo", "mhsa", "ufo"],
        dims=[64, 128],
        hws=_square([14, 28, 56, 80, 112, 128]),
        models=["swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3"],
        model_attentions=[None, "hilo", "external", "ufo", "mhsa"],
        backends=["onnxruntime", "executorch"],
        threads=[1],
        timeout_s=600.0,
    ),
    # LiteRT beside onnxruntime and ExecuTorch, measured in one sweep, each row with its
    # per-op profile so a ratio between runtimes is attributed to op types (`mobattn
    # report`); quick profile (the 2-core machine's budget), the smallest sizes first
    "litert-parity": Grid(
        attentions=["eaa", "external", "hilo", "mhsa", "separable", "ufo"],
        dims=[64, 128],
        hws=_square([14, 28, 56, 80, 112, 128]),
        backends=["onnxruntime", "executorch", "litert"],
        threads=[1],
        profile="quick",
        timeout_s=600.0,
        breadth_first=True,
        op_profile=True,
    ),
    # every family at its own input size on the three mobile CPU runtimes
    "families": Grid(
        models=FAMILIES,
        resolutions=[],
        backends=["onnxruntime", "executorch", "litert"],
        threads=[1],
        timeout_s=600.0,
    ),
    # the SwiftFormer paper's swap experiment: EfficientFormer-L1's attention replaced by
    # each mechanism (EAA is the paper's), at 224
    "swap-experiment": Grid(
        models=["efficientformer_l1"],
        model_attentions=[None, *list_attentions()],
        backends=["onnxruntime", "executorch"],
        threads=[1],
        timeout_s=600.0,
    ),
    # every model and its attention swaps from 224 to 1024 pixels
    "models": Grid(
        models=FAMILIES,
        model_attentions=[None, "hilo", "external", "ufo", "mhsa"],
        resolutions=[224, 384, 512, 768, 1024],
        backends=["onnxruntime", "torch"],
        threads=[1],
    ),
    # what int8 buys or costs per mechanism, on the three mobile CPU runtimes (quick
    # profile: a few runs each, so the largest grids finish in minutes)
    "precision": Grid(
        attentions=["eaa", "external", "hilo", "mhsa", "ufo"],
        dims=[64],
        hws=_square([14, 56, 128]),
        backends=["onnxruntime", "executorch", "litert"],
        precisions=["fp32", "int8"],
        threads=[1],
        profile="quick",
        timeout_s=600.0,
    ),
    # the GPU (bench/scripts/gpu_sweep.sh runs these three in-process on a GPU machine: a
    # GPU sweep pays no process start per configuration, and a CUDA out-of-memory is that
    # row's oom): six mechanisms to 256x256 tokens and one model of each family to 1024 px,
    # eager in fp32, fp16 and bf16, batch 1
    # The deployed form against eager, most informative first: every mechanism captured in
    # a CUDA graph and eager, fp16 then fp32, up to 256x256 tokens; every model family's
    # members at their own resolution (issue 40)
    "cuda": Grid(
        attentions=list_attentions(),
        dims=[64, 128],
        hws=_square([14, 28, 56, 128, 256]),
        models=list(GPU_MODELS),
        resolutions=[],
        backends=["torch-cudagraph", "torch"],
        precisions=["fp16", "fp32"],
        devices=["cuda"],
        profile="quick",
        breadth_first=True,
    ),
    # compiled against the captured graph and eager (fp16): torch.compile with and without
    # CUDA graphs, each configuration paying its compile (the row's details.compile_s)
    "cuda-compiled": Grid(
        attentions=list_attentions(),
        dims=[64],
        hws=_square([56]),
        models=["swiftformer_s", "deit_tiny", "mobilevit_xs"],
        resolutions=[],
        backends=["torch-cudagraphs", "torch-compile"],
        precisions=["fp16"],
        devices=["cuda"],
        profile="quick",
        timeout_s=600.0,
    ),
    # throughput (images/s) against batch size, the captured graph and eager, fp16
    "cuda-throughput": Grid(
        models=["swiftformer_s", "deit_tiny"],
        resolutions=[],
        backends=["torch-cudagraph", "torch"],
        precisions=["fp16"],
        devices=["cuda"],
        batches=[1, 8, 32, 128],
        profile="quick",
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
    start from a preset with ``preset = "name"``), validated in full."""
    if (preset is None) == (path is None):
        raise MobattnError("give a sweep file or --preset NAME (one of them)")
    if preset is not None:
        _known(preset, sorted(PRESETS), "preset")
        grid = PRESETS[preset]
    else:
        grid = _grid_file(Path(path))
    grid.validate()
    return grid


def _grid_file(path: Path) -> Grid:
    if not path.is_file():
        raise MobattnError(f"sweep file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MobattnError(f"{path} is not valid TOML: {exc}") from None
    base = Grid()
    if "preset" in data:
        _known(data["preset"], sorted(PRESETS), "preset")
        base = PRESETS[data.pop("preset")]
    known = {f.name for f in fields(Grid)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MobattnError(f"{path}: unknown keys {', '.join(unknown)} (valid: {', '.join(sorted(known))})")
    hws = data.get("hws")
    if isinstance(hws, list):  # 14 is shorthand for [14, 14]
        data["hws"] = [[v, v] if isinstance(v, int) and not isinstance(v, bool) else v for v in hws]
    if isinstance(data.get("model_attentions"), list):  # "own": each model's own mixer
        data["model_attentions"] = [None if a == OWN else a for a in data["model_attentions"]]
    return Grid(**{**base.__dict__, **data})


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


def shard(configs: list[BenchConfig], index: int, count: int, by_cost: bool = False) -> list[BenchConfig]:
    """Shard ``index`` of ``count``: every n-th configuration, or (``by_cost``) a greedy
    split by estimated cost, longest first to the least loaded shard. The estimate reads
    no results file, so every shard's process computes the same split."""
    if not by_cost:
        return [c for i, c in enumerate(configs) if i % count == index - 1]
    from .fleet_plan import estimated_cost_s

    costs = [estimated_cost_s(c) for c in configs]
    loads = [0.0] * count
    mine = []
    for position in sorted(range(len(configs)), key=lambda i: (-costs[i], i)):
        least = loads.index(min(loads))
        loads[least] += costs[position]
        if least == index - 1:
            mine.append(position)
    return [configs[i] for i in sorted(mine)]


def pending(configs: list[BenchConfig], results: Path) -> tuple[list[BenchConfig], int]:
    """The configurations not yet in ``results`` for this machine, and how many were
    skipped."""
    from .api import pending as not_done
    from .results import read_rows

    todo = not_done(configs, read_rows(results))
    return todo, len(configs) - len(todo)
