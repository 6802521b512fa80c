"""README says what the tables and the committed rows say (issue 38): its headline is
computed from ``results/benchmarks`` and its lists of names from the registries."""

from __future__ import annotations

from pathlib import Path

from mobattn.bench.headline import END, START, headline_markdown, with_headline
from mobattn.exporters.formats import TARGETS

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_headline_is_the_one_the_committed_rows_give():
    """Regenerate with ``python -m mobattn.bench.headline --write README.md``."""
    assert START in README and END in README
    assert with_headline(README) == README, "README's headline is stale: regenerate it"
    text = headline_markdown()
    assert text.count("-core ") == 2  # both machines that produced its figures are named


def test_readme_names_every_export_target_the_table_has():
    listed = ", ".join(f"`{name}`" for name in TARGETS)
    assert f"({listed}:" in " ".join(README.split()), f"README's intro should list {listed}"


def test_benchmarks_describes_the_quick_preset_by_its_backends():
    from mobattn.bench.sweep import PRESETS

    quick = PRESETS["quick"]
    backends = ", ".join(quick.backends)
    line = f"`mobattn sweep --preset quick` ({len(quick.configs())} configurations, {backends} only)"
    assert line in (ROOT / "BENCHMARKS.md").read_text()
