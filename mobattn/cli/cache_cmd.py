"""``mobattn cache info|clear``: the artifact cache benchmarks reuse exports from."""

from __future__ import annotations

import click

from .common import CONTEXT, json_option
from .console import console, print_json


@click.group("cache", context_settings=CONTEXT)
def command() -> None:
    """The artifact cache: each distinct export kept once (with its validation record)
    and reused by later benchmarks and sweeps.

    \b
    Location: $MOBATTN_CACHE, else $XDG_CACHE_HOME/mobattn, else ~/.cache/mobattn.
    Bound: $MOBATTN_CACHE_MAX_MB (default 4096 MiB); the least recently used entries go
    first. `bench`, `sweep` and `table` take --no-cache to export everything anew.
    """


@command.command("info")
@json_option
def info(json_out: bool) -> None:
    """Where the cache is, how many artifacts it holds and how large it is."""
    from mobattn.bench.cache import ArtifactCache

    found = ArtifactCache().info()
    if json_out:
        return print_json([found.to_dict()])
    console.print(
        f"{found.location}: {found.entries} artifacts, {found.bytes / 2**20:.1f} MiB "
        f"(bound {found.max_bytes / 2**20:.0f} MiB)"
    )


@command.command("clear")
@json_option
def clear(json_out: bool) -> None:
    """Remove every cached artifact (later benchmarks export them again)."""
    from mobattn.bench.cache import ArtifactCache

    cache = ArtifactCache()
    removed = cache.clear()
    if json_out:
        return print_json([{"location": str(cache.root), "removed": removed}])
    console.print(f"{cache.root}: removed {removed} artifacts")
