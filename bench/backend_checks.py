"""Whether a backend can run here, and which backend runs a file: checked by the
command process before anything is measured, from the tables alone (the backends'
targets and their extras), so it imports no torch (:mod:`.backends`, which prepares
what is timed, does)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobattn.errors import MobattnError, unknown_name_error
from mobattn.exporters.formats import TARGETS, Target, target_for_file

from .config import BACKENDS, DEVICES, BenchConfig, get_backend


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_backend(backend: str, device: str, here: bool = True) -> None:
    """The backend and device exist and (``here``) can run on this machine, checked
    before anything runs (a precision a backend does not measure is a ``skipped`` row,
    see api.measure). ``here=False`` checks the names only, for a plan (``--dry-run``)."""
    spec = get_backend(backend)
    if device not in DEVICES:
        raise unknown_name_error("device", device, list(DEVICES))
    if not here:
        return
    if spec.target:
        TARGETS[spec.target].require()  # its extra, found without importing it
    check_device(device)


def check_device(device: str) -> None:
    if device == "cuda" and not cuda_available():
        raise MobattnError(
            "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False)"
        )


def artifact_backend(path: str) -> tuple[str, dict]:
    """The backend that runs an existing artifact file, and the file's facts (its input
    shape and the precision its content holds); a missing, unsupported, corrupt or
    crashing file is a one-line error before anything is measured
    (:func:`mobattn.exporters.probe.probe_file`)."""
    from mobattn.exporters.probe import probe_file

    target = target_for_file(path, "benchmark")
    runtimes = [b for b in BACKENDS.values() if b.target == target.name]
    if not runtimes:
        raise MobattnError(f"cannot benchmark {Path(path).name}: no backend runs {target.suffix} files here")
    target.require()
    return runtimes[0].name, probe_file(path, "benchmark", facts=True, precision=True)


@dataclass(frozen=True)
class Artifact:
    """What the export phase hands the measure phase: the file to time, how faithful it
    is to torch, and the export facts the row repeats (its deployable form)."""

    path: str
    validation: dict | None
    export: dict
    phases_s: dict = field(default_factory=dict)  # build, export and validation seconds
    sha256: str | None = None  # the file's content hash, from the artifact cache
    cached: bool = False  # taken from the artifact cache, not exported for this row

    def to_dict(self) -> dict:
        return asdict(self)


def target_of(config: BenchConfig) -> Target | None:
    """The export target whose file ``config`` times (None: a torch module)."""
    if config.kind == "file":
        return target_for_file(config.file, "benchmark")
    target = get_backend(config.backend).target
    return TARGETS[target] if target else None


def needs_export(config: BenchConfig) -> bool:
    """Whether ``config`` times mobattn's own export of its subject (an export phase)."""
    return config.kind != "file" and target_of(config) is not None
