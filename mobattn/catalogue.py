"""What the registries hold, readable without importing torch: the names of the
mechanisms and models, each model's facts (input size, native mechanism, the swaps and
sizes it takes) and the heads the swap rule gives a mechanism of a width.

Why: a command plans (names checked, a grid expanded, sizes refused) before it measures,
and the registries live in modules that import torch (1-2 s). The catalogue is what the
registries said, written once to ``<cache>/catalogue/<key>.json`` by the first process
that imports them; ``key`` hashes the size and modification time of every source file
that registers a name or states a rule, so an edit, an upgrade or an added mechanism
makes a new one. A process that has the registries imported (a worker, a test that
registers a model) reads them, never the file. A folder another user can write is not
trusted: the registries are imported instead.

The rules themselves are :mod:`mobattn.model_rules`, shared with :mod:`mobattn.models`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mobattn import __version__
from mobattn.errors import unknown_name_error
from mobattn.model_rules import resolution_rule, swap_rule
from mobattn.settings import cache_root

# The packages whose modules register names or state rules (their files make the key)
SOURCES = ("attention", "models")
_PACKAGE = Path(__file__).parent
_loaded: dict = {}  # this process's catalogue, read or built once


@dataclass(frozen=True)
class ModelEntry:
    """A model's facts as the catalogue holds them (the rules' :class:`ModelFacts`)."""

    input_size: tuple[int, int, int]
    native_attention: str
    no_swap: str | None
    native_resolutions: tuple[int, ...] | None


def _live() -> bool:
    """Whether this process has the registries imported: then they, not the file, answer."""
    return "mobattn.models" in sys.modules and "mobattn.attention" in sys.modules


def key() -> str:
    """The digest of the sources that make the catalogue (names, sizes, mtimes) and the
    version: reading it stats a few dozen files and imports nothing."""
    digest = hashlib.sha256(__version__.encode())
    files = [_PACKAGE / "model_rules.py", Path(__file__)]
    files += sorted(p for package in SOURCES for p in (_PACKAGE / package).glob("*.py"))
    for path in files:
        info = path.stat()
        digest.update(f"{path.relative_to(_PACKAGE)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def build() -> dict:
    """The catalogue, from the registries themselves (imports torch)."""
    from mobattn.attention import list_attentions
    from mobattn.models import get_model_config, list_models, models_by_family

    models = {}
    for name in list_models():
        config = get_model_config(name)
        models[name] = {
            "input_size": list(config.input_size),
            "native_attention": config.native_attention,
            "no_swap": config.no_swap,
            "native_resolutions": list(config.native_resolutions) if config.native_resolutions else None,
        }
    return {
        "version": __version__,
        "attentions": list_attentions(),
        "models": models,
        "models_by_family": models_by_family(),
        "heads": {},  # (attention, width) -> heads, filled as the swap rule is asked
    }


def _folder() -> Path | None:
    """The catalogue's folder, or None where it cannot be trusted (another user can
    write it, or it is not this user's) or made."""
    folder = cache_root() / "catalogue"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return folder


def _valid(data) -> bool:
    """A catalogue file as :func:`build` writes it (a torn or edited one is rebuilt)."""
    try:
        models_ok = all(
            isinstance(n, str)
            and len(m["input_size"]) == 3
            and all(isinstance(v, int) for v in m["input_size"])
            and isinstance(m["native_attention"], str)
            and (m["no_swap"] is None or isinstance(m["no_swap"], str))
            and (m["native_resolutions"] is None or all(isinstance(v, int) for v in m["native_resolutions"]))
            for n, m in data["models"].items()
        )
        return (
            models_ok
            and data["version"] == __version__
            and all(isinstance(n, str) for n in data["attentions"])
            and all(isinstance(n, str) for n in data["models_by_family"])
            and all(
                isinstance(k, str) and (v is None or isinstance(v, int)) for k, v in data["heads"].items()
            )
        )
    except (KeyError, TypeError, AttributeError):
        return False


def _write(path: Path, data: dict) -> None:
    """Atomically: a reader sees the old file or the new one, never half of either."""
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".catalogue-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


def catalogue() -> dict:
    """The catalogue: this process's registries when imported, else the file for this
    source key, else built (importing the registries) and written for the next command."""
    if _live():
        data = _loaded.get("live") or build()
        _loaded["live"] = data
        return data
    if "file" in _loaded:
        return _loaded["file"]
    folder = _folder()
    path = folder / f"{key()}.json" if folder else None
    data = None
    if path is not None and path.is_file():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
    if data is None or not _valid(data):
        data = build()
        if path is not None:
            _write(path, data)
    _loaded["file"], _loaded["path"] = data, path
    return data


def attention_names() -> list[str]:
    return list(catalogue()["attentions"])


def model_names() -> list[str]:
    return sorted(catalogue()["models"])


def models_by_family() -> list[str]:
    return list(catalogue()["models_by_family"])


def check_attention(name: str) -> str:
    if name not in attention_names():
        raise unknown_name_error("attention", name, attention_names())
    return name


def model_entry(name: str) -> ModelEntry:
    """A model's facts, or the one-line error naming the known models."""
    models = catalogue()["models"]
    if name not in models:
        raise unknown_name_error("model", name, sorted(models))
    found = models[name]
    resolutions = found["native_resolutions"]
    return ModelEntry(
        tuple(found["input_size"]),
        found["native_attention"],
        found["no_swap"],
        tuple(resolutions) if resolutions else None,
    )


def native_attention(model: str) -> str:
    return model_entry(model).native_attention


def swap_for(model: str, attention: str | None) -> str | None:
    """:func:`mobattn.models.swap_for` without importing torch."""
    return swap_rule(model, model_entry(model), attention, attention_names())


def check_resolution_for(model: str, attention: str | None, resolution) -> None:
    """:func:`mobattn.models.check_resolution_for` without importing torch."""
    resolution_rule(model, model_entry(model), attention, resolution, attention_names())


def swap_rule_heads(attention: str, dim: int) -> int | None:
    """The heads the swap rule gives a bare ``attention`` of width ``dim``: remembered in
    the catalogue's file once asked (the rule is the mechanism's code, so the first
    answer for a width imports the registries)."""
    check_attention(attention)
    data = catalogue()
    remembered = f"{attention}:{dim}"
    if remembered not in data["heads"]:
        from mobattn.describe import default_attention_kwargs

        data["heads"][remembered] = default_attention_kwargs(attention, dim, None).get("num_heads")
        kept = _loaded.get("file")  # the file this process read: its other answers kept too
        if kept is not None and _loaded.get("path") is not None:
            kept["heads"][remembered] = data["heads"][remembered]
            _write(_loaded["path"], kept)
    return data["heads"][remembered]


# ---- a subject's counted figures -------------------------------------------------------------
# Params, MACs and the live-tensor peak of a forward depend on the subject alone (and the
# sources the key hashes): counting them takes torch's dispatch machinery most of a second
# in a fresh process, so a row's worker reads them here when an earlier row counted them.


def _figures_path() -> Path | None:
    folder = _folder()
    return folder / f"figures-{key()}.json" if folder else None


def _read_figures(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(path.read_text()) if path.is_file() else {}
        return known if isinstance(known, dict) else {}
    return {}


def remembered_figures(subject: dict) -> dict:
    """What was counted for ``subject`` (its identity's fields): name -> a non-negative
    number; {} when nothing was (a value of another type is ignored)."""
    path = _figures_path()
    found = _read_figures(path).get(json.dumps(subject, sort_keys=True)) if path else None
    if not isinstance(found, dict):
        return {}
    return {
        k: v for k, v in found.items() if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
    }


def remember_figures(subject: dict, figures: dict) -> None:
    """Keep ``figures`` for ``subject`` beside what was kept before (a lost race with
    another writer only costs a later row a count)."""
    path = _figures_path()
    if path is None:
        return
    known = _read_figures(path)
    entry = json.dumps(subject, sort_keys=True)
    known[entry] = {**(known.get(entry) if isinstance(known.get(entry), dict) else {}), **figures}
    _write(path, known)
