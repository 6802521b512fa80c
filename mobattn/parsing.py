"""Parsing and bounds of the sizes users type (``--hw 14x14``, ``--resolution 224,320``,
``--dim``, ``--threads``...), shared by the CLI and sweep files so both apply one rule.

The upper bounds keep a typo from becoming a machine-sized allocation and a traceback:
they are far above what any phone model uses and are printed in ``--help``.
"""

from __future__ import annotations

import re

from mobattn.errors import MobattnError

_HW = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

MIN_RESOLUTION = 32  # the network stride
MAX_RESOLUTION = 4096
MAX_HW_SIDE = 1024
MAX_TOKENS = 256 * 256
MAX_DIM = 4096
MAX_BATCH = 256
MAX_THREADS = 256
LIMITS_HELP = (
    f"Bounds: resolution {MIN_RESOLUTION}..{MAX_RESOLUTION} px, token grid sides up to {MAX_HW_SIDE} "
    f"and {MAX_TOKENS} tokens, dim up to {MAX_DIM}, batch up to {MAX_BATCH}, threads up to {MAX_THREADS}."
)


def check_int(value: object, option: str, low: int = 1, high: int | None = None) -> int:
    """An integer in [low, high] (booleans are not integers here), or a one-line error."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise MobattnError(f"{option} must be an integer, got {value!r}")
    if value < low:
        raise MobattnError(f"{option} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise MobattnError(f"{option} must be at most {high}, got {value}")
    return value


def check_hw(hw: object, option: str = "--hw") -> tuple[int, int]:
    """A token grid: two positive integers within the bounds."""
    if not isinstance(hw, list | tuple) or len(hw) != 2:
        raise MobattnError(f"{option} takes two sizes H and W, got {hw!r}")
    h, w = (check_int(v, option, 1, MAX_HW_SIDE) for v in hw)
    if h * w > MAX_TOKENS:
        raise MobattnError(f"{option} {h}x{w} has {h * w} tokens; at most {MAX_TOKENS}")
    return h, w


def check_resolution(size: object, option: str = "--resolution") -> tuple[int, int]:
    """An input size H x W within [MIN_RESOLUTION, MAX_RESOLUTION]."""
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise MobattnError(f"{option} takes H and W, got {size!r}")
    h, w = (check_int(v, option, 1) for v in size)
    if min(h, w) < MIN_RESOLUTION:
        raise MobattnError(
            f"{option} must be at least {MIN_RESOLUTION} pixels (the network stride), got {h}x{w}"
        )
    if max(h, w) > MAX_RESOLUTION:
        raise MobattnError(f"{option} must be at most {MAX_RESOLUTION} pixels, got {h}x{w}")
    return h, w


def parse_hw(text: str, option: str = "--hw") -> tuple[int, int]:
    """``"14x14"`` -> (14, 14); ``"14"`` -> (14, 14)."""
    match = _HW.match(text)
    if match:
        h, w = int(match.group(1)), int(match.group(2))
    elif text.strip().isdigit():
        h = w = int(text)
    else:
        raise MobattnError(f"{option} must look like HxW (e.g. 14x14), got '{text}'")
    return check_hw((h, w), option)


def parse_hw_list(text: str, option: str = "--hw") -> list[tuple[int, int]]:
    """``"14x14,28x28"`` -> [(14, 14), (28, 28)]."""
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise MobattnError(f"{option} is empty")
    return [parse_hw(t, option) for t in items]


def parse_resolutions(text: str, option: str = "--resolution") -> list[tuple[int, int]]:
    """``"224,320"`` -> [(224, 224), (320, 320)]; ``"224x320"`` is H x W."""
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise MobattnError(f"{option} is empty")
    sizes = []
    for item in items:
        match = _HW.match(item)
        if match:
            sizes.append((int(match.group(1)), int(match.group(2))))
        elif item.strip().isdigit():
            sizes.append((int(item), int(item)))
        else:
            raise MobattnError(f"{option} must look like 224 or 224x320, got '{item.strip()}'")
    return [check_resolution(s, option) for s in sizes]


def parse_resolution(text: str, option: str = "--resolution") -> tuple[int, int]:
    """Exactly one resolution: ``"224"`` or ``"224x320"``."""
    sizes = parse_resolutions(text, option)
    if len(sizes) != 1:
        raise MobattnError(f"{option} takes one resolution here, got '{text}'")
    return sizes[0]


def parse_csv(text: str, option: str) -> list[str]:
    """``"a, b"`` -> ["a", "b"]; an empty list (``","``) is an error, not a default."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise MobattnError(f"{option} is empty")
    return names


def parse_ints(text: str, option: str, high: int | None = None) -> list[int]:
    """``"1,2"`` -> [1, 2], each positive and at most ``high``."""
    values = []
    for item in parse_csv(text, option):
        try:
            values.append(int(item))
        except ValueError:
            raise MobattnError(f"{option} must be integers like 1,2, got '{text}'") from None
    return [check_int(v, option, 1, high) for v in values]


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


MAX_NAME_LENGTH = 64


def check_name(value: object, option: str) -> str:
    """A name that ends up in rows, kinds, headings and one-line errors (a node label or
    id): printable, on one line, at most MAX_NAME_LENGTH characters."""
    if not isinstance(value, str) or not value.strip():
        raise MobattnError(f"{option} must be a non-empty name, got {value!r}")
    if len(value) > MAX_NAME_LENGTH:
        raise MobattnError(f"{option} must be at most {MAX_NAME_LENGTH} characters, got {len(value)}")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise MobattnError(f"{option} must be printable text on one line, got {bad!r} in {value[:20]!r}")
    return value


def check_whole_number(text: str, option: str, low: int = 0, high: int | None = None) -> int:
    """A whole number typed as ASCII digits (``str.isdigit`` accepts '²', which ``int``
    refuses) within [low, high]."""
    if not re.fullmatch(r"[0-9]{1,18}", text.strip()):
        raise MobattnError(f"{option} must be a whole number, got {text!r}")
    number = int(text)
    if number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f"at least {low}"
        raise MobattnError(f"{option} must be {bound}, got {number}")
    return number


def listed(items, conjunction: str = "or") -> str:
    """``a, b or c``: a list in a sentence."""
    items = list(items)
    return ", ".join(items[:-1]) + f" {conjunction} {items[-1]}" if len(items) > 1 else "".join(items)


def plural(count: int, noun: str) -> str:
    """``1 configuration``, ``2 configurations``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
