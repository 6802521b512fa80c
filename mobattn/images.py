"""One image file to one model input, with the model's own preprocessing done in Pillow
and numpy (no torchvision): what evaluation and int8 calibration both read images with.

Preprocessing (timm's eval transform): resize the shorter side to
``floor(resolution / crop_pct)`` with the model's interpolation, centre-crop
``resolution``, scale to [0, 1], normalise with the model's mean and std.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mobattn.errors import MobattnError, first_line

_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def preprocess(
    image: Image.Image,
    resolution: int | tuple[int, int],
    crop_pct: float,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bicubic",
) -> np.ndarray:
    """One RGB image -> (3, H, W) float32. A square ``resolution`` resizes the shorter
    side; an (H, W) one resizes to (H, W) / crop_pct exactly, as timm does for a tuple."""
    image = to_rgb(image)
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if h == w:
        scale_size = math.floor(h / crop_pct)
        iw, ih = image.size
        if iw <= ih:
            new_w, new_h = scale_size, int(scale_size * ih / iw)
        else:
            new_w, new_h = int(scale_size * iw / ih), scale_size
    else:
        new_w, new_h = math.floor(w / crop_pct), math.floor(h / crop_pct)
    image = image.resize((new_w, new_h), _INTERPOLATION[interpolation])
    left = int(round((new_w - w) / 2.0))
    top = int(round((new_h - h) / 2.0))
    image = image.crop((left, top, left + w, top + h))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, whatever the file held. Pillow's ``convert("RGB")`` clips a 16-bit
    grey image (PNG, TIFF) at 255, turning it all white: its values are scaled to 8 bits
    instead. 32-bit integer and floating-point images have no range to scale by and are
    refused in one line (16-bit colour images are already scaled by Pillow)."""
    if image.mode in SIXTEEN_BIT_MODES:
        grey = np.round(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)  # 65535 -> 255
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in ("I", "F"):
        name = getattr(image, "filename", "") or "an image"
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        why = "which have no defined range: save it as 8 or 16 bits"
        raise MobattnError(f"{name} holds {kind} pixels, {why}")
    return image.convert("RGB")


# What an image may be before it is decoded: its pixels are held several times over while
# it is converted and resized, and preprocessing scales the shorter side to ~256 pixels, so
# a long thin strip grows by its aspect ratio.
MAX_PIXELS = 50_000_000  # 50 megapixels (ImageNet's largest validation image is ~4 MP)
MAX_ASPECT = 20  # longer side / shorter side


def load_image(path: Path, decode: bool = True) -> Image.Image:
    """Decode one image, refusing in one line (before decoding) one larger than
    :data:`MAX_PIXELS` or more elongated than :data:`MAX_ASPECT`, or that is no image.
    ``decode=False`` reads only its header (the size checks)."""
    try:
        with Image.open(path) as image:
            w, h = image.size
            if w * h > MAX_PIXELS:
                raise MobattnError(f"{path} is {w}x{h} pixels; images are limited to {MAX_PIXELS:,} pixels")
            if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
                raise MobattnError(
                    f"{path} is {w}x{h} pixels; images may be at most {MAX_ASPECT}x as long as they are wide"
                )
            if image.mode in ("I", "F"):
                to_rgb(image)  # refused from its header, before anything is decoded
            if decode:
                image.load()
            return image
    except Image.DecompressionBombError:  # Pillow's own guard, far above ours
        raise MobattnError(
            f"{path}: images are limited to {MAX_PIXELS:,} pixels; refused before decoding"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise MobattnError(f"cannot read image {path}: {first_line(exc)}") from None
