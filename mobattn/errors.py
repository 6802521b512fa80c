"""The one exception type for user errors.

The CLI turns a :class:`MobattnError` into one red line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


class MobattnError(Exception):
    """A problem with what the user asked for (bad name, size, file...)."""


def unknown_name_error(kind: str, name: str, valid: list[str]) -> MobattnError:
    """An error for an unknown registry name that suggests the closest valid names."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return MobattnError(f"unknown {kind} '{name}'{hint} (valid: {', '.join(valid)})")


def first_line(exc: BaseException, limit: int = 160) -> str:
    """A library exception's message in one line for a user error (its type's name when
    the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class MobattnWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it
    as one yellow line)."""


def warn(message: str) -> None:
    import warnings

    warnings.warn(message, MobattnWarning, stacklevel=2)
