"""Public names resolved on first use (PEP 562): a package lists which module defines
each name, and importing the package imports none of them, so reading a table or
printing ``--help`` never pays for torch."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a public name to the
    module that defines it; each is imported once, then cached in the package."""
    import sys

    def __getattr__(name: str) -> object:  # noqa: N807 - the name PEP 562 looks for
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
