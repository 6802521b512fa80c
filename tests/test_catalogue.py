"""A command plans without importing torch (issue 38): names, presets and sizes are
checked from the catalogue of what the registries hold (:mod:`mobattn.catalogue`), and a
subject's counted figures are remembered, so one configuration per command costs its
start and its measurement."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import assert_one_line_error

# Runs one command line in a fresh interpreter and says whether it imported torch
RUN = """
import json, sys
from mobattn.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def command(cache, *argv: str) -> tuple[int, bool, str]:
    env = {**os.environ, "MOBATTN_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True, env=env)
    *said, verdict = done.stderr.strip().splitlines()
    found = json.loads(verdict)
    return found["code"], found["torch"], "\n".join(said)


def test_bad_names_are_refused_without_importing_torch(tmp_path):
    code, imported, _ = command(tmp_path, "bench", "--model", "nope")
    assert code == 2 and imported  # the first command to plan reads the registries and writes the catalogue
    for argv, says in [
        (("bench", "--model", "swiftformer_xxl"), "unknown model 'swiftformer_xxl'"),
        (("bench", "--attention", "nope", "--dim", "8", "--hw", "2x2"), "unknown attention 'nope'"),
        (("bench", "--model", "deit_tiny", "--resolution", "256"), "224x224 inputs only"),
        (("bench", "--model", "deit_tiny", "--attention", "hilo"), "class token"),
        (("table", "--models", "nope"), "unknown model 'nope'"),
        (("sweep", "--preset", "nope"), "unknown preset 'nope'"),
    ]:
        code, imported, err = command(tmp_path, *argv)
        assert code == 2 and says in err and "Traceback" not in err, (argv, err)
        assert not imported, f"{' '.join(argv)} imported torch to refuse a name"


@pytest.mark.slow
def test_one_configuration_is_measured_without_torch_in_the_command(tmp_path):
    """The command process plans and dispatches; only the worker imports torch. The second
    command's worker reads the subject's counts instead of counting them again."""
    argv = ("bench", "--attention", "ufo", "--dim", "16", "--hw", "4x4", "--profile", "quick", "--json")
    rows = []
    for _ in range(2):
        env = {**os.environ, "MOBATTN_CACHE": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True, env=env)
        verdict = json.loads(done.stderr.strip().splitlines()[-1])
        assert verdict["code"] == 0, done.stderr
        rows.append(json.loads(done.stdout)[0])
    assert not verdict["torch"]  # the second: the catalogue was written by the first
    first, second = rows
    for name in ("params", "macs", "param_bytes", "live_tensor_peak_mib", "heads"):
        assert first[name] == second[name] and first[name] is not None
    assert second["phases_s"]["figures"] < first["phases_s"]["figures"]


def test_a_forged_or_torn_catalogue_is_rebuilt_and_a_shared_folder_is_not_trusted(tmp_path, monkeypatch):
    from mobattn import catalogue

    monkeypatch.setenv("MOBATTN_CACHE", str(tmp_path))
    monkeypatch.setattr(catalogue, "_loaded", {})
    monkeypatch.setattr(catalogue, "_live", lambda: False)  # as a command process that planned nothing yet
    path = tmp_path / "catalogue" / f"{catalogue.key()}.json"
    built = catalogue.catalogue()
    assert path.is_file() and json.loads(path.read_text())["attentions"] == built["attentions"]
    for forged in ('{"attentions": ["eaa"]', '{"version": "0.2.0", "attentions": [1]}'):
        path.write_text(forged)
        monkeypatch.setattr(catalogue, "_loaded", {})
        assert catalogue.attention_names() == built["attentions"]  # rebuilt from the registries
        assert json.loads(path.read_text())["attentions"] == built["attentions"]
    os.chmod(path.parent, 0o777)
    forged = {**built, "models": {"planted": built["models"]["swiftformer_xs"]}}
    path.write_text(json.dumps(forged))
    monkeypatch.setattr(catalogue, "_loaded", {})
    assert "planted" not in catalogue.model_names()  # another user could have written it
    assert catalogue.remembered_figures({"kind": "attention"}) == {}


def test_a_model_registered_in_this_process_is_planned_from_the_registry(cli, tmp_path):
    """A process with the registries imported reads them, not the file: a model a user
    (or a test) registers is known at once."""
    from mobattn import catalogue
    from mobattn.models import ModelConfig, create_model
    from mobattn.models.registry import _MODELS, register_model

    register_model("catalogue_probe", ModelConfig(native_attention="eaa"))(
        lambda **kw: create_model("swiftformer_xs", **kw)
    )
    try:
        catalogue._loaded.pop("live", None)
        assert "catalogue_probe" in catalogue.model_names()
        assert catalogue.swap_for("catalogue_probe", "mhsa") == "mhsa"
    finally:
        del _MODELS["catalogue_probe"]
        catalogue._loaded.pop("live", None)
    assert_one_line_error(cli("bench --model catalogue_probe"), "unknown model")


@pytest.mark.slow
def test_heads_asked_in_several_commands_are_all_remembered(tmp_path):
    """Each command that asks the swap rule for a new width adds it to the file, keeping
    what earlier commands added (a miss imports the registries once)."""
    env = {**os.environ, "MOBATTN_CACHE": str(tmp_path)}
    ask = "import sys; from mobattn import catalogue as c; print(c.swap_rule_heads('mhsa', int(sys.argv[1])))"
    answers = [
        subprocess.run(
            [sys.executable, "-c", ask, str(dim)], capture_output=True, text=True, env=env, check=True
        )
        for dim in (64, 128, 96)
    ]
    (path,) = (tmp_path / "catalogue").glob("*.json")
    heads = json.loads(path.read_text())["heads"]
    assert set(heads) == {"mhsa:64", "mhsa:128", "mhsa:96"}
    assert [heads[f"mhsa:{d}"] for d in (64, 128, 96)] == [int(a.stdout) for a in answers]
