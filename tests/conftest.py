"""Fixtures and the fast/slow split: ``make test-fast`` deselects tests marked slow."""

from __future__ import annotations

import shlex

import pytest

from helpers import CliResult


@pytest.fixture
def cli(capsys):
    """Run one ``mobattn`` command line in-process: ``cli("list models --json")``."""
    from mobattn.cli import main

    def run(command: str) -> CliResult:
        code = main(shlex.split(command))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
