"""Where labelled images come from: an ImageFolder tree, or a list of files with labels.

``mobattn eval``, ``validate --images`` and ``--calibration`` take any of:

- a folder ``root/<class>/<image>`` (torchvision's ImageFolder: classes sorted by name);
- a CSV with a header, a ``file`` column and a ``class_index`` (or ``label``) column of the
  model's class indices, paths relative to the CSV's folder (``../shared/real``'s
  ``labels.csv``);
- a text file of ``file label`` lines (ImageNet's ``val.txt``), or of bare ``file`` lines
  where no label is needed (calibration).

``files``, a text file of one path per line (relative to its own folder), keeps only those
images, so a published split (a calibration list, an evaluation list) is used as it is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mobattn.errors import MobattnError, warn

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
LABEL_COLUMNS = ("class_index", "label")


@dataclass(frozen=True)
class ImageSource:
    """Images with their labels (None for an unlabelled list) and the size of the label
    space: the class folders of an ImageFolder, else the model's classes."""

    samples: list[tuple[Path, int | None]]
    classes: int
    kind: str  # folder | csv | list

    @property
    def labelled(self) -> bool:
        return all(label is not None for _, label in self.samples)


def image_folder(root: str | Path, option: str = "--data") -> tuple[list[tuple[Path, int]], list[str]]:
    """``root/<class>/<image>`` -> (samples, classes); classes sorted, as ImageFolder does.
    Errors name ``option``, the flag the folder came from."""
    root = Path(root)
    if not root.is_dir():
        raise MobattnError(f"{option} {root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise MobattnError(f"{option} {root} has no class folders (expected root/<class>/<image>)")
    samples = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise MobattnError(f"{option} {root} holds no images")
    return samples, classes


def read_source(
    source: str | Path,
    files: str | Path | None = None,
    option: str = "--data",
    num_classes: int = 1000,
    labels: bool = True,
) -> ImageSource:
    """The images of ``source`` (a folder or a list file), kept to ``files`` if given.
    Without ``labels`` (calibration) a folder may also hold its images directly."""
    source = Path(source)
    flat = [] if labels or not source.is_dir() else _flat_images(source)
    if flat:
        result = ImageSource([(path, None) for path in flat], num_classes, "folder")
    elif source.is_dir():
        samples, classes = image_folder(source, option)
        result = ImageSource(list(samples), len(classes), "folder")
    elif source.is_file():
        samples = _csv(source, option) if source.suffix.lower() == ".csv" else _lines(source, option)
        for path, label in samples:
            if label is not None and not 0 <= label < num_classes:
                raise MobattnError(
                    f"{option} {source}: label {label} of {path.name} is not a class of the model"
                )
        result = ImageSource(samples, num_classes, "csv" if source.suffix.lower() == ".csv" else "list")
    else:
        raise MobattnError(f"{option} {source} is neither a folder nor a list of images")
    if files is not None:
        result = ImageSource(_keep(result.samples, Path(files), option), result.classes, result.kind)
    if not result.samples:
        raise MobattnError(f"{option} {source} holds no images")
    return result


def _flat_images(root: Path) -> list[Path]:
    """The images directly inside ``root`` when it has no class folders (else none)."""
    if any(d.is_dir() for d in root.iterdir()):
        return []
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _csv(path: Path, option: str) -> list[tuple[Path, int]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MobattnError(f"{option} {path}: cannot read it as CSV ({exc})") from None
    label = next((c for c in LABEL_COLUMNS if c in columns), None)
    if "file" not in columns or label is None:
        raise MobattnError(
            f"{option} {path}: needs a 'file' column and a '{LABEL_COLUMNS[0]}' (or 'label') column"
        )
    if not rows:
        raise MobattnError(f"{option} {path} has a header and no rows: it lists no images")
    samples = [
        (path.parent / (row["file"] or ""), _label(row[label], path, number, option))
        for number, row in enumerate(rows, 2)
    ]
    return _without_repeats(samples, path, option)


def _lines(path: Path, option: str) -> list[tuple[Path, int | None]]:
    """``file label`` or bare ``file`` lines (blank lines and ``#`` comments skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MobattnError(f"{option} {path}: cannot read it ({exc})") from None
    samples = []
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 2:
            raise MobattnError(f"{option} {path}:{number}: expected 'file label' or 'file'")
        label = _label(parts[1], path, number, option) if len(parts) == 2 else None
        samples.append((path.parent / parts[0], label))
    return _without_repeats(samples, path, option)


def _without_repeats(samples: list, path: Path, option: str) -> list:
    """Each image once: a file listed twice would count as two images (twice the weight
    in a top-1 or a calibration). Repeats with one label are dropped with a warning; one
    file given two labels is an error."""
    first: dict[Path, int | None] = {}
    kept = []
    for file, label in samples:
        key = file.resolve()
        if key in first:
            if first[key] != label:
                labels = f"{first[key]} and {label}"
                raise MobattnError(f"{option} {path}: {file.name} is listed with labels {labels}")
            continue
        first[key] = label
        kept.append((file, label))
    if len(kept) < len(samples):
        warn(f"{option} {path}: {len(samples) - len(kept)} repeated lines ignored (each image counts once)")
    return kept


def _label(text: str, path: Path, number: int, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise MobattnError(f"{option} {path}:{number}: the label {text!r} is not a class index") from None


def _keep(samples: list[tuple[Path, int | None]], files: Path, option: str) -> list[tuple[Path, int | None]]:
    """The samples named in ``files`` (paths relative to its folder), in its order."""
    wanted = [path for path, _ in _lines(files, "--files")]
    by_path = {path.resolve(): (path, label) for path, label in samples}
    missing = [p for p in wanted if p.resolve() not in by_path]
    if missing:
        raise MobattnError(f"--files {files}: {len(missing)} files are not in {option}, e.g. {missing[0]}")
    return [by_path[p.resolve()] for p in wanted]
