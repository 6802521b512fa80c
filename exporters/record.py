"""The plain records of exports: what a target's exporter hands back, the record of one
export, and an artifact loaded in its runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agreement import Agreement


@dataclass
class ExportResult:
    """What a target's ``export`` returns: the facts of the file it wrote (the caller
    staged the path, and measures its size and writes the record)."""

    seconds: float  # conversion, before validation
    op_histogram: dict[str, int]
    validation: Agreement | None  # None: nothing here can execute the file
    details: dict = field(default_factory=dict)

    @property
    def op_count(self) -> int:
        return sum(self.op_histogram.values())


@dataclass
class Runner:
    """An artifact loaded in its runtime: what ``bench`` times, ``eval`` and ``validate``
    call. ``bind(x)`` returns a zero-argument call on a fixed input (the timed loop pays
    no conversion); ``run(x)`` maps a numpy input to the first output."""

    input_name: str
    input_shape: list  # ints; a dynamic dimension is a str or None
    input_dtype: str  # numpy dtype name: "float32", "float16"
    bind: Callable[[Any], Callable[[], Any]]
    run: Callable[[Any], Any]
    details: dict = field(default_factory=dict)  # what the row says about the runtime
    metadata: dict = field(default_factory=dict)  # the file's own key/value metadata
    op_profile: Callable[[Any], dict] | None = None  # per-op profile on an input, if the runtime has one
    keep: list = field(default_factory=list)  # objects that must outlive the runs


@dataclass
class ExportRecord:
    target: str  # a name in exporters.formats.TARGETS
    path: str
    subject: dict  # model / attention / size / input shape
    precision: str
    status: str  # ok | unvalidated (kept, not executed) | failed (validation) | error
    seconds: float = 0.0
    size_bytes: int = 0
    op_count: int = 0
    op_histogram: dict[str, int] = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_runtime_options(target: str, options: dict, accepted: dict[str, tuple]) -> None:
    """A benchmark backend's runtime options for ``target``'s runner: each a name the
    target takes, with one of its values (one line otherwise, naming what it takes)."""
    from mobattn.errors import MobattnError

    for name, value in options.items():
        if name not in accepted:
            taken = ", ".join(accepted) or "none"
            raise MobattnError(f"{target}'s runner takes no runtime option {name!r} (it takes: {taken})")
        if value not in accepted[name]:
            raise MobattnError(
                f"{target}'s runtime option {name} is one of {', '.join(accepted[name])}, not {value!r}"
            )
