"""Fixtures and the fast/slow split: ``make test-fast`` deselects tests marked slow."""

from __future__ import annotations

import os
import shlex

# Tables as wide as in a log file, whatever the test process's terminal (pytest-xdist's
# workers have none): set before mobattn's consoles are made.
os.environ.setdefault("COLUMNS", "160")

import pytest  # noqa: E402

from helpers import CliResult


def pytest_configure(config):
    """One torch thread in each pytest-xdist worker: ``make test`` runs two workers on two
    cores, and two threads each left four spinning on two cores (the pt2e search's test took
    615 s beside the other worker, 114 s alone). A test that asks for threads still gets
    them, and a process a test starts keeps torch's own default."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def cli(capsys):
    """Run one ``mobattn`` command line in-process: ``cli("list models --json")``."""
    from mobattn.cli import main

    def run(command: str) -> CliResult:
        code = main(shlex.split(command))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(autouse=True, scope="session")
def private_artifact_cache(tmp_path_factory):
    """The suite's own artifact cache (never the user's ~/.cache/mobattn), shared by the
    tests of one worker: a test about the export phase passes ``cache=False``."""
    previous = os.environ.get("MOBATTN_CACHE")
    os.environ["MOBATTN_CACHE"] = str(tmp_path_factory.mktemp("artifact-cache"))
    yield
    if previous is None:
        os.environ.pop("MOBATTN_CACHE", None)
    else:
        os.environ["MOBATTN_CACHE"] = previous
