"""Where output goes: rich tables for people on stdout, plain JSON for programs,
one red line on stderr for errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# Piped output (files, CI logs) gets a wide table instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Plain JSON on stdout (no rich wrapping or colour, so programs can parse it)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_error(message: str) -> None:
    """One red line; the message is escaped, so text like ``mobattn[executorch]`` survives."""
    err_console.print(
        f"[bold red]error:[/bold red] {escape(message)}", markup=True, highlight=False, soft_wrap=True
    )


def make_table(
    title: str,
    columns: list[str],
    rows: list[list[Any]],
    right: set[str] | None = None,
    fold: set[str] | None = None,
) -> Table:
    """A rich table; columns in ``right`` are right-aligned, those in ``fold`` (paths)
    are folded rather than truncated."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        justify = "right" if right and col in right else "left"
        table.add_column(col, justify=justify, overflow="fold" if fold and col in fold else "ellipsis")
    for row in rows:  # plain cells are escaped: user text such as "[x]" is not markup
        table.add_row(*[c if isinstance(c, Text) else escape(str(c)) for c in row])
    return table


def human_count(n: float) -> str:
    """3475360 -> '3.48 M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def print_warning(message: str) -> None:
    """One yellow line on stderr."""
    err_console.print(
        f"[bold yellow]warning:[/bold yellow] {escape(message)}", markup=True, highlight=False, soft_wrap=True
    )


def print_status_line(message: str) -> None:
    """A failed result (not a usage error) as one red line on stderr, so scripts that
    keep only stderr still see why the exit code is 1."""
    err_console.print(f"[red]failed:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
