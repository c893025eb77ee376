"""conf/'s option files against the constructors they build: each states only what it
chooses differently from the class (never a default twice), each such choice with a
comment saying why, and every option of a group builds its group's kind."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import MISSING

from nasflow.config import DataConfig, NasflowConfig
from nasflow.registry import COMPONENTS, RANKERS, Registry
from nasflow.schemas import settings
from tests.conftest import ROOT, option_files

CONF = ROOT / "conf"
BY_GROUP = {registry.group: registry for registry in COMPONENTS}
OPTION_FILES = [path for group in (*BY_GROUP, "trainer") for path in option_files(group)]
STRUCTURAL = {"defaults", "_target_", "_partial_"}


def _schema_of(path: Path, package: str = "_here_") -> tuple[Registry[Any], str] | None:
    """(registry, name) of the schema that `path` builds at `package`, following option
    files it extends (``training@then``) to the schema they name."""
    group = path.parent.name
    for entry in yaml.safe_load(path.read_text()).get("defaults", []):
        if not isinstance(entry, str) or "@" not in entry:
            continue
        target, at = entry.rsplit("@", 1)
        if at != package:
            continue
        if target.startswith("/schema/"):
            _, _, kind, name = target.split("/")
            return (RANKERS if kind == "ranker" else BY_GROUP[kind]), name
        extended = path.parent / f"{target}.yaml"
        return _schema_of(extended if extended.is_file() else CONF / group / f"{target}.yaml")
    return None


def _commented(lines: list[str], key: str, indent: int) -> bool:
    """Whether the line setting `key` (at `indent`) has a comment, or the line above."""
    pattern = re.compile(rf"^{' ' * indent}{re.escape(key)}:")
    for i, line in enumerate(lines):
        if pattern.match(line):
            return "#" in line or (i > 0 and lines[i - 1].strip().startswith("#"))
    return False


def _defaults_of(registry: Registry[Any], name: str) -> dict[str, Any]:
    return settings(registry.load()[name], registry)


def _trainer_defaults() -> dict[str, Any]:
    import pytorch_lightning as pl

    return {
        p.name: p.default
        for p in inspect.signature(pl.Trainer).parameters.values()
        if p.default is not p.empty
    }


def _problems(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    data = yaml.safe_load(text) or {}
    problems: list[str] = []

    def check(values: dict[str, Any], defaults: dict[str, Any], indent: int, where: str) -> None:
        for key, value in values.items():
            if key in STRUCTURAL:
                continue
            if key not in defaults:
                problems.append(f"{where}{key} is not a setting of the class it builds")
            elif defaults[key] is not MISSING and _same(value, defaults[key]):
                problems.append(f"{where}{key}: {value!r} restates the class's default")
            elif defaults[key] is not MISSING and not _commented(lines, key, indent):
                problems.append(f"{where}{key} differs from the class's default without a comment")

    if path.parent.name == "trainer":
        check(data, _trainer_defaults(), 0, "")
        return problems
    if path.parent.name == "data":  # the split settings around a source
        stage = _stage_defaults(DataConfig)
        split = {k: v for k, v in stage.items() if k != "source" and "." not in k}
        check({k: v for k, v in data.items() if k not in ("source", "augment")}, split, 0, "")
        augment = {k.partition(".")[2]: v for k, v in stage.items() if k.startswith("augment.")}
        check(data.get("augment", {}), augment, 2, "augment.")
        found = _schema_of(path)
        assert found is not None, f"{path} names no /schema/data/<name>@_here_"
        check(data.get("source", {}), _defaults_of(*found), 2, "source.")
        return problems
    found = _schema_of(path)
    assert found is not None, f"{path} names no /schema/<group>/<name>@_here_"
    check(data, _defaults_of(*found), 0, "")
    for key, value in data.items():  # nested components: `then`, `ranker`
        if isinstance(value, dict) and (nested := _schema_of(path, key)) is not None:
            check(value, _defaults_of(*nested), 2, f"{key}.")
    return problems


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        default = list(default)
    return bool(value == default and type(value) is type(default))


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: f"{p.parent.name}={p.stem}")
def test_option_file_states_only_its_own_choices_with_a_why(path: Path) -> None:
    assert _problems(path) == []


def _stage_defaults(node: Any, prefix: str = "") -> dict[str, Any]:
    import dataclasses

    found: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        factory = f.default_factory
        value = f.default if factory is dataclasses.MISSING else factory()
        if dataclasses.is_dataclass(value):
            found |= _stage_defaults(type(value), f"{prefix}{f.name}.")
        else:
            found[f"{prefix}{f.name}"] = value
    return found


def test_config_yaml_restates_no_stage_default() -> None:
    """conf/config.yaml sets only what config.py's stage settings leave open (the retrain
    optimizer, say): a stage default lives in config.py alone."""
    defaults = _stage_defaults(NasflowConfig)
    data = yaml.safe_load((CONF / "config.yaml").read_text())

    def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, dict) and f"{prefix}{key}" not in defaults:
                out |= flat(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
        return out

    settings_ = {k: v for k, v in data.items() if k not in ("defaults", "hydra")}
    restated = [
        key
        for key, value in flat(settings_).items()
        if key in defaults and defaults[key] is not MISSING and value == defaults[key]
    ]
    assert restated == []


def test_a_restated_default_is_caught(tmp_path: Path) -> None:
    folder = tmp_path / "strategy"
    folder.mkdir()
    bad = folder / "evolution.yaml"
    bad.write_text(
        "defaults:\n  - /schema/strategy/evolution@_here_\nsample_size: 5\npopulation_size: 9\n"
    )
    assert _problems(bad) == [
        "sample_size: 5 restates the class's default",
        "population_size differs from the class's default without a comment",
    ]
