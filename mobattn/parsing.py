"""Parsing of the size arguments users type: ``--hw 14x14``, ``--resolution 224,320``."""

from __future__ import annotations

import re

from mobattn.errors import MobattnError

_HW = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_hw(text: str, option: str = "--hw") -> tuple[int, int]:
    """``"14x14"`` -> (14, 14); ``"14"`` -> (14, 14)."""
    match = _HW.match(text)
    if match:
        h, w = int(match.group(1)), int(match.group(2))
    elif text.strip().isdigit():
        h = w = int(text)
    else:
        raise MobattnError(f"{option} must look like HxW (e.g. 14x14), got '{text}'")
    if h <= 0 or w <= 0:
        raise MobattnError(f"{option} sizes must be positive, got '{text}'")
    return h, w


def parse_hw_list(text: str, option: str = "--hw") -> list[tuple[int, int]]:
    """``"14x14,28x28"`` -> [(14, 14), (28, 28)]."""
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise MobattnError(f"{option} is empty")
    return [parse_hw(t, option) for t in items]


def parse_resolutions(text: str, option: str = "--resolution", minimum: int = 32) -> list[tuple[int, int]]:
    """``"224,320"`` -> [(224, 224), (320, 320)]; ``"224x320"`` is H x W."""
    sizes = parse_hw_list(text, option)
    for h, w in sizes:
        if h < minimum or w < minimum:
            raise MobattnError(
                f"{option} must be at least {minimum} pixels (the network stride), got {h}x{w}"
            )
    return sizes


def parse_resolution(text: str, option: str = "--resolution") -> tuple[int, int]:
    """Exactly one resolution: ``"224"`` or ``"224x320"``."""
    sizes = parse_resolutions(text, option)
    if len(sizes) != 1:
        raise MobattnError(f"{option} takes one resolution here, got '{text}'")
    return sizes[0]


def parse_names(text: str, valid: list[str], kind: str) -> list[str]:
    """Comma-separated registry names, each checked against ``valid``."""
    from mobattn.errors import unknown_name_error

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise MobattnError(f"no {kind} given")
    for name in names:
        if name not in valid:
            raise unknown_name_error(kind, name, valid)
    return names


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"
