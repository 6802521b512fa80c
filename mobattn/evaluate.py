"""ImageNet-style evaluation on an ImageFolder tree, with the model's own
preprocessing (:mod:`mobattn.images`: timm's eval transform in Pillow and numpy, no
torchvision).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mobattn.errors import MobattnError
from mobattn.image_sources import IMAGE_SUFFIXES, image_folder, read_source  # noqa: F401  (re-exported)
from mobattn.images import MAX_ASPECT, MAX_PIXELS, load_image, preprocess, to_rgb  # noqa: F401  (re-exported)


def check_images(paths: list[Path]) -> None:
    """Every image's header read and its size checked before any work starts, so a bad
    image is one line up front, not an error half-way through an evaluation."""
    for path in paths:
        load_image(path, decode=False)


def batches(
    samples: list[tuple[Path, int]], size: int, prepare: Callable[[Image.Image], np.ndarray]
) -> Iterator:
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        images = np.stack([prepare(load_image(p)) for p, _ in chunk])
        yield images, np.asarray([label for _, label in chunk])


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the k highest logits."""
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


@dataclass
class EvalResult:
    model: str
    attention: str
    resolution: int
    weights: str | None
    artifact: str | None
    images: int
    classes: int
    top1: float  # %
    top5: float  # %
    agreement_top1: float | None = None  # % of images where artifact and torch agree on top-1
    max_abs_diff: float | None = None  # artifact logits vs torch logits
    data: str = ""
    dataset: str | None = None  # the name the user gave the data (e.g. imagenet-1k-val)
    num_classes: int = 1000  # classes the model predicts
    class_counts: list[int] = field(default_factory=list)  # images evaluated per class folder
    limit: int | None = None  # --limit: a class-balanced, seeded sample (see select_samples)
    caveats: list[str] = field(default_factory=list)  # why this is not a trustworthy top-1

    @property
    def trusted(self) -> bool:
        """A measured top-1 that may stand in for a published one (see :func:`caveats_of`)."""
        return not self.caveats

    def to_dict(self) -> dict:
        return {**asdict(self), "trusted": self.trusted}


# A measured top-1 replaces a published one only on a named dataset of the model's own
# classes, with trained weights, over enough images: 10,000 images (a fifth of ImageNet's
# validation set) put a top-1 near 80% within about +-0.8 points (95% interval).
MIN_TRUSTED_IMAGES = 10_000
LIMIT_SEED = 0  # --limit's sample is the same on every run


@dataclass(frozen=True)
class KnownDataset:
    """What a named dataset is, so that an evaluation can be checked against it."""

    classes: int
    images_per_class: int
    source: str


KNOWN_DATASETS = {
    "imagenet-1k-val": KnownDataset(1000, 50, "ILSVRC2012 validation set: 50 images of each of 1000 classes"),
}


def labelled_source(data: str | Path, files: str | Path | None = None, num_classes: int = 1000):
    """The images to evaluate (a folder or a labelled list, see :mod:`mobattn.image_sources`)."""
    source = read_source(data, files, "--data", num_classes)
    if not source.labelled:
        raise MobattnError(f"--data {data} lists files without labels; evaluation needs 'file label' lines")
    return source


def select_samples(samples: list[tuple[Path, int]], limit: int | None) -> list[tuple[Path, int]]:
    """All samples, or ``limit`` of them spread evenly over the classes (a seeded shuffle
    within each class, then one class after another): never the first N files, which in a
    sorted ImageNet folder are its first classes only."""
    if not limit or limit >= len(samples):
        return samples
    rng = np.random.default_rng(LIMIT_SEED)
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    queues = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(by_class.items())]
    chosen: list[tuple[Path, int]] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop())
    return chosen


def class_counts(samples: list[tuple[Path, int]], classes: int) -> list[int]:
    counts = [0] * classes
    for _, label in samples:
        counts[label] += 1
    return counts


def caveats_of(result: EvalResult | dict) -> list[str]:
    """Why an evaluation is not a trustworthy top-1 (empty when it is), judged from what
    it records, never from a ``trusted`` field: a results file is editable text. For a
    known dataset the images must cover its classes in its proportions."""
    record = result if isinstance(result, dict) else asdict(result)
    caveats = []
    if record.get("weights") is None:
        caveats.append("random weights (no --weights)")
    dataset = record.get("dataset")
    if dataset is None:
        caveats.append("dataset not named (--dataset)")
    if record.get("classes") != record.get("num_classes"):
        caveats.append(
            f"{record.get('classes')} classes in the data, the model predicts {record.get('num_classes')}"
        )
    if (record.get("images") or 0) < MIN_TRUSTED_IMAGES:
        caveats.append(f"{record.get('images')} images (fewer than {MIN_TRUSTED_IMAGES})")
    counts = record.get("class_counts") or []
    known = KNOWN_DATASETS.get(dataset or "")
    if not counts:
        caveats.append("recorded before mobattn checked class coverage")
    elif dataset is not None and known is None:
        caveats.append(f"'{dataset}' is not a dataset mobattn knows: its class proportions cannot be checked")
    elif known is not None:
        caveats += _coverage_caveats(counts, known, record.get("limit"))
    return caveats


def _coverage_caveats(counts: list[int], known: KnownDataset, limit: int | None) -> list[str]:
    caveats = []
    if len(counts) != known.classes:
        caveats.append(f"{len(counts)} class folders, the dataset has {known.classes}")
    if min(counts) == 0:
        caveats.append(f"{counts.count(0)} classes have no image evaluated")
    if max(counts) - min(counts) > 1:
        caveats.append(f"{min(counts)}..{max(counts)} images per class: not the dataset's proportions")
    elif not limit and max(counts) != known.images_per_class:
        caveats.append(f"{max(counts)} images per class, the dataset has {known.images_per_class}")
    return caveats


class Accumulator:
    """Running top-1/top-5 and, for an artifact, agreement with torch."""

    def __init__(self):
        self.n = self.top1 = self.top5 = self.agree = 0
        self.max_abs = 0.0

    def add(self, logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None) -> None:
        self.n += len(labels)
        self.top1 += topk_correct(logits, labels, 1)
        self.top5 += topk_correct(logits, labels, 5)
        if reference is not None:
            self.agree += int((logits.argmax(1) == reference.argmax(1)).sum())
            self.max_abs = max(self.max_abs, float(np.abs(logits - reference).max()))

    def percent(self, count: int) -> float:
        return 100.0 * count / self.n if self.n else 0.0


def evaluate(
    model_name: str,
    data: str | Path,
    weights: str | None = None,
    attention: str | None = None,
    resolution: int | None = None,
    artifact: str | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    num_classes: int = 1000,
    on_batch: Callable[[int], None] | None = None,
    dataset: str | None = None,
    files: str | Path | None = None,
) -> EvalResult:
    """Top-1/top-5 of the torch model, or of an .onnx artifact of it together with its
    agreement with the torch model on the same images."""
    import torch

    from mobattn.models import create_model, get_model_config, native_attention

    config = get_model_config(model_name)
    resolution = resolution or config.input_size[-1]
    source = labelled_source(data, files, num_classes)
    samples = select_samples(source.samples, limit)
    if source.classes > num_classes:
        raise MobattnError(f"--data has {source.classes} classes but the model predicts {num_classes}")
    from mobattn.exporters.subject import seeded

    with seeded():  # without weights, the random init mobattn's exports are made from (seed 0)
        model = create_model(model_name, attention=attention, weights=weights, num_classes=num_classes).eval()
    own = attention or native_attention(model_name)
    session = _artifact_session(artifact, model_name, own, resolution) if artifact else None

    def prepare(image):
        return preprocess(image, resolution, config.crop_pct, config.mean, config.std, config.interpolation)

    acc = Accumulator()
    for images, labels in batches(samples, batch_size, prepare):
        with torch.inference_mode():
            reference = model(torch.from_numpy(images)).numpy()
        if session is None:
            acc.add(reference, labels)
        else:
            logits = _run_artifact(session, images)
            acc.add(logits, labels, reference)
        if on_batch:
            on_batch(len(labels))
    result = EvalResult(
        model=model_name,
        attention=attention or native_attention(model_name),
        resolution=resolution,
        weights=str(weights) if weights else None,
        artifact=str(artifact) if artifact else None,
        images=acc.n,
        classes=source.classes,
        top1=acc.percent(acc.top1),
        top5=acc.percent(acc.top5),
        agreement_top1=acc.percent(acc.agree) if session is not None else None,
        max_abs_diff=acc.max_abs if session is not None else None,
        data=str(data),
        dataset=dataset,
        num_classes=num_classes,
        class_counts=class_counts(samples, source.classes),
        limit=limit,
    )
    result.caveats = caveats_of(result)
    return result


def check_artifact(path: str, model: str, attention: str | None, resolution: int | None) -> None:
    """Refuse, before any image is read, an artifact that is not an export of this
    model at this resolution."""
    from mobattn.models import get_model_config, native_attention

    resolution = resolution or get_model_config(model).input_size[-1]
    _artifact_session(path, model, attention or native_attention(model), resolution)


def _artifact_session(path: str, model: str, attention: str, resolution: int):
    """The artifact loaded in its target's runtime, refused in one line when the file is
    not an export of ``model`` with ``attention`` taking ``resolution`` (its metadata and
    input shape say what it is)."""
    from mobattn.exporters.formats import target_for_file
    from mobattn.exporters.probe import probe_file
    from mobattn.exporters.subject import check_exported_from

    file = Path(path)
    target = target_for_file(file, "evaluate")
    probe_file(file, "evaluate")  # what the file is, and that loading it cannot crash this process
    runner = target.implementation().load_runner(file)
    check_exported_from(file.name, runner.metadata, {"model": model, "attention": attention})
    shape = runner.input_shape
    if len(shape) != 4:
        raise MobattnError(f"{file} takes {len(shape)}-d tokens, not images (an attention, not a model)")
    fixed = [d for d in shape[2:] if isinstance(d, int)]
    if fixed and fixed != [resolution] * len(fixed):
        size = "x".join(str(d) for d in shape[2:])
        raise MobattnError(
            f"{file} takes {size} images; give --resolution {fixed[0]} (or export at {resolution})"
        )
    return runner


def _run_artifact(runner, images: np.ndarray) -> np.ndarray:
    """Run image by image if the artifact's batch is fixed at 1."""
    batch_dim = runner.input_shape[0]
    if isinstance(batch_dim, int) and batch_dim != images.shape[0]:
        return np.concatenate([runner.run(images[i : i + 1]) for i in range(len(images))])
    return runner.run(images)
