"""The one exception type for user errors.

The CLI turns a :class:`MobattnError` into one red line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


class MobattnError(Exception):
    """A problem with what the user asked for (bad name, size, file...)."""

    exit_code = 2


class RunFailedError(MobattnError):
    """A run that could not finish (a fleet whose scheduler died): one line, exit 1 (a
    result failed), the rows so far kept."""

    exit_code = 1


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


# How allocators say they ran out (torch, onnxruntime, ExecuTorch, libc, C++)
OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "bad_alloc",
    "failed to allocate",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or a library error whose message says an allocation failed."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, MemoryError) or any(m in text for m in OOM_MARKERS)


def signal_name(signum: int) -> str:
    """``SIGABRT`` for 6; the number itself for a signal this system does not name."""
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def described(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception, for a failed row's or record's reason."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}"[:limit] if text else type(exc).__name__


class MobattnWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it
    as one yellow line)."""


def warn(message: str) -> None:
    import warnings

    warnings.warn(message, MobattnWarning, stacklevel=2)
