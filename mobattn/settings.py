"""The environment variables mobattn reads, in one table, each checked by one function.

Every command checks them all before it does anything (:func:`check_settings`), so a
bad value is one line and exit 2 up front, never a traceback or a refusal after rows
were written and exports thrown away.
"""

from __future__ import annotations

import os
from pathlib import Path

from mobattn.errors import MobattnError
from mobattn.parsing import check_name, check_whole_number

DEFAULT_CACHE_MAX_MB = 4096
MAX_CACHE_MB = 2**40  # a bound far above any disk, so the figure stays a number

# name -> what it sets (``mobattn cache --help`` and the README repeat these)
SETTINGS = {
    "MOBATTN_CACHE": "the artifact cache's folder",
    "MOBATTN_CACHE_MAX_MB": f"the artifact cache's bound in MiB (default {DEFAULT_CACHE_MAX_MB})",
    "MOBATTN_NODE_LABEL": "a label that splits otherwise identical machines into kinds",
    "MOBATTN_NODE_ID": "this machine's id in a fleet (default: host name and machine-id digest)",
    "MOBATTN_MACHINE_ID": "the id a row's machine fingerprint hashes (default: /etc/machine-id); "
    "clones that share one set it apart, machines declared identical set it alike",
    "MOBATTN_WORKERS": "warm (a forked template, Linux default) or fresh benchmark workers",
    "MOBATTN_PRESTART": "1 (default): a command starts the warm template before it plans, so their "
    "imports overlap; 0: when measuring begins (to measure what the overlap saves)",
}


def _value(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def cache_root() -> Path:
    """mobattn's cache folder: ``$MOBATTN_CACHE``, else ``$XDG_CACHE_HOME/mobattn`` or
    ``~/.cache/mobattn`` (the artifact cache, machine facts and the catalogue live there)."""
    given = _value("MOBATTN_CACHE")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mobattn"


def cache_max_mb() -> int:
    text = _value("MOBATTN_CACHE_MAX_MB")
    if text is None:
        return DEFAULT_CACHE_MAX_MB
    return check_whole_number(text, "MOBATTN_CACHE_MAX_MB (MiB)", 0, MAX_CACHE_MB)


def node_label() -> str | None:
    label = _value("MOBATTN_NODE_LABEL")
    return None if label is None else check_name(label, "MOBATTN_NODE_LABEL")


def node_id_setting() -> str | None:
    given = _value("MOBATTN_NODE_ID")
    return None if given is None else check_name(given, "MOBATTN_NODE_ID")


def machine_id_setting() -> str | None:
    given = _value("MOBATTN_MACHINE_ID")
    return None if given is None else check_name(given, "MOBATTN_MACHINE_ID")


def workers_setting() -> str | None:
    kind = _value("MOBATTN_WORKERS")
    if kind is not None and kind not in ("warm", "fresh"):
        raise MobattnError(f"MOBATTN_WORKERS must be warm or fresh, got {kind!r}")
    return kind


def prestart_setting() -> bool:
    value = _value("MOBATTN_PRESTART") or "1"
    if value not in ("0", "1"):
        raise MobattnError(f"MOBATTN_PRESTART must be 0 or 1, got {value!r}")
    return value == "1"


def check_settings() -> None:
    """Every setting above, checked before a command runs."""
    cache_max_mb()
    node_label()
    node_id_setting()
    machine_id_setting()
    workers_setting()
    prestart_setting()
