"""The one table of export targets: suffix, precisions, options, runtime that validates,
and the module that implements each.

The CLI's choices, the option checks, `mobattn list targets`, the README's table and
the error messages all read :data:`TARGETS`, and every command that takes a file finds
its target here (:func:`target_for_file`). Adding a target is one row here and one
module (in the manner of Ultralytics' ``export_formats()``), which implements:

- ``check_options(subject, precision, **options)``: refuse a bad request before anything
  is built;
- ``export(subject, path, precision, **options) -> ExportResult``: write ``path`` (staged
  by the caller) and validate it against the torch module;
- ``validate_file(path, subject, precision, inputs) -> (Agreement, facts)``: an existing
  file against the subject it claims to be (``mobattn validate``);
- ``file_precision(path) -> str``: what the file computes in (fp32, fp16, int8), read
  from its content (``bench FILE`` records it; a contradicting ``--precision`` is refused);
- ``file_metadata(path) -> dict``: the key/value pairs mobattn wrote into the file
  (:func:`.subject.artifact_metadata`: its subject, so ``validate FILE`` needs nothing
  restated), {} for another tool's file;
- ``inspect(path) -> Inspection``: op histogram and what keeps it off the fast path;
- ``load_runner(path, threads, device) -> Runner``: the file loaded in its runtime, for
  ``bench``, ``eval`` and ``validate`` (a target with no runtime here raises MobattnError);
- ``check_package(path)`` (folder targets): refuse a package whose parts lie outside it.

``validate_file`` judges a file by what it is (its graph, ops and weight types) or by
what the user states, never by the metadata the file carries about itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType

from mobattn.errors import MobattnError, unknown_name_error

# Every option a target may take, with the flag users type. An option given explicitly
# to a target that does not take it is an error, never silently ignored.
OPTION_FLAGS = {
    "dynamic": "--dynamic",
    "sizes": "--sizes",
    "simplify": "--no-simplify",
    "opset": "--opset",
    "min_target": "--min-target",
    "image": "--image-input",
    "compress": "--compress",
    "calibration": "--calibration",
    "validation_images": "--validation-images",
    "form": "--form",
    "layout": "--layout",
    "int8_recipe": "--int8-recipe",
    "int8_target": "--int8-target",
}


@dataclass(frozen=True)
class Target:
    """One export format."""

    name: str
    suffix: str
    precisions: tuple[str, ...]
    default_precision: str
    options: tuple[str, ...]  # keys of OPTION_FLAGS this target takes
    runtime: str  # what executes the artifact when it is validated
    description: str
    module: str  # the module implementing it (see this module's docstring)
    is_folder: bool = False  # the artifact is a folder (a Core ML package)
    magic: tuple[int, bytes] | None = None  # (offset, bytes) every file of the format starts with
    isolated_loading: bool = False  # its loader is native code a corrupt file can crash: probe it first
    times_here: bool = True  # its runner loads here, so a benchmark backend can time its files
    extra: str | None = None  # the pip extra that installs its toolchain (None: mobattn's own)
    extra_modules: tuple[str, ...] = ()  # what that extra installs, found (not imported) to say so

    def installed(self) -> bool:
        """Whether its extra's modules are importable here (looked up, not imported)."""
        try:
            return all(find_spec(name) is not None for name in self.extra_modules)
        except (ImportError, ValueError):  # a parent package that is missing or broken
            return False

    def require(self) -> None:
        """One line naming the extra when its toolchain is not installed (nothing imported)."""
        if not self.installed():
            extra = f"mobattn[{self.extra}]"
            raise MobattnError(f"{self.name} needs {extra}: pip install '{extra}'")

    def needs(self) -> str:
        """What ``list targets`` and ``list backends`` say it needs."""
        if self.extra is None:
            return "-"
        extra = f"mobattn[{self.extra}]"
        return f"{extra}, installed" if self.installed() else f"pip install '{extra}'"

    def implementation(self) -> ModuleType:
        """The target's module, imported on demand (each pulls its toolchain)."""
        return import_module(self.module)

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise MobattnError(
                f"--to {self.name} takes --precision {' or '.join(self.precisions)}, not '{precision}'"
            )


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "onnx",
            ".onnx",
            ("fp32", "fp16", "int8"),
            "fp32",
            ("dynamic", "simplify", "opset", "calibration", "validation_images", "int8_recipe", "int8_target")
            + ("form", "sizes"),
            "onnxruntime (CPU)",
            "ONNX, torch's dynamo exporter, folded and simplified",
            "mobattn.exporters.to_onnx",
        ),
        Target(
            "coreml",
            ".mlpackage",
            ("fp16", "fp32"),
            "fp16",
            ("min_target", "image", "compress", "layout", "sizes"),
            "Core ML on macOS, mobattn's reference executor elsewhere",
            "Core ML ML Program through torch.export",
            "mobattn.exporters.to_coreml",
            is_folder=True,
            times_here=False,  # Core ML runs on Apple's OSes only
        ),
        Target(
            "executorch",
            ".pte",
            ("fp32", "int8"),
            "fp32",
            ("calibration", "validation_images", "int8_recipe", "int8_target", "sizes"),
            "ExecuTorch runtime (XNNPACK)",
            "ExecuTorch program lowered to XNNPACK",
            "mobattn.exporters.to_executorch",
            magic=(4, b"ET"),  # the flatbuffer file identifier, "ET12" today
            isolated_loading=True,
            extra="executorch",
            extra_modules=("executorch", "executorch.runtime"),
        ),
        Target(
            "litert",
            ".tflite",
            ("fp32", "int8"),
            "fp32",
            ("calibration", "validation_images", "int8_recipe", "int8_target", "sizes"),
            "LiteRT interpreter (XNNPACK)",
            "LiteRT (TensorFlow Lite) flatbuffer through litert-torch",
            "mobattn.exporters.to_litert",
            magic=(4, b"TFL3"),  # the flatbuffer file identifier
            isolated_loading=True,
            extra="litert",
            extra_modules=("litert_torch", "ai_edge_litert"),
        ),
    )
}

PRECISIONS = ("fp32", "fp16", "int8")


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise unknown_name_error("export target", name, list(TARGETS))
    return TARGETS[name]


def target_for_file(path: str | Path, action: str = "use") -> Target:
    """The target whose artifact ``path`` is, from its suffix: the one place a file's
    format is decided. An unknown suffix is one line naming the known ones."""
    suffix = Path(path).suffix.lower()
    for target in TARGETS.values():
        if suffix == target.suffix:
            return target
    *rest, last = [t.suffix for t in TARGETS.values()]
    raise MobattnError(f"cannot {action} {Path(path).name}: expected an {', '.join(rest)} or {last} artifact")


def check_options_apply(targets: list[str], given: dict[str, object]) -> None:
    """Refuse an option the user set that none of ``targets`` takes."""
    for option, value in given.items():
        if value is None:
            continue
        takers = [t for t in targets if option in TARGETS[t].options]
        if not takers:
            owners = [t.name for t in TARGETS.values() if option in t.options]
            raise MobattnError(
                f"{OPTION_FLAGS[option]} applies to --to {' or '.join(owners)}, not to {', '.join(targets)}"
            )


def markdown_table() -> str:
    """The README's table of formats, generated from :data:`TARGETS`."""
    lines = [
        "| target | file | precisions (default first) | options | validated by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in TARGETS.values():
        precisions = [t.default_precision] + [p for p in t.precisions if p != t.default_precision]
        options = ", ".join(f"`{OPTION_FLAGS[o]}`" for o in t.options)
        lines.append(f"| `{t.name}` | `{t.suffix}` | {', '.join(precisions)} | {options} | {t.runtime} |")
    return "\n".join(lines) + "\n"
