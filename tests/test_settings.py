"""Every numeric setting declares its range with its default, and a value outside it ends
in one line naming the key: at composition for a word, when the stage starts
(`nasflow.config.check_settings`) for a number out of range.

The settings are found, not listed: every numeric setting of every registered component
that an option file of a config group builds (nested ones too), and every numeric stage
setting of `nasflow.config`. A new setting is tested for free, and the first test fails
for one that declares no range.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ValidationError

from nasflow.config import DataConfig, NasflowConfig, check_settings
from nasflow.errors import NasflowError
from nasflow.registry import COMPONENTS
from nasflow.schemas import cached, dataclass_fields, number_kind
from tests.conftest import compose_config, compose_option, option_files
from tests.test_cli import assert_one_line_error, run_stage

GROUPS = ("data", "search_space", "strategy", "estimator", "executor", "tracking")
TRIED = (0, -1)
BOUNDS = {
    "gt": lambda v, b: v > b,
    "ge": lambda v, b: v >= b,
    "lt": lambda v, b: v < b,
    "le": lambda v, b: v <= b,
}


@functools.cache
def _descriptions() -> dict[str, list[dict[str, Any]]]:
    """Each registered component's fields by its target (schemas.json, which
    test_config.py checks is what the signatures generate)."""
    return {
        description["target"]: description["fields"]
        for described in cached(COMPONENTS).values()
        for description in described.values()
    }


def _stage_fields(cls: type, where: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for field in dataclass_fields(cls):
        key = f"{where}.{field['name']}" if where else field["name"]
        if isinstance(field["type"], type):
            found += _stage_fields(field["type"], key)
        else:
            found.append((key, field))
    return found


def stage_settings() -> list[tuple[str, dict[str, Any]]]:
    """(key, field) of every numeric stage setting: config.yaml's own and the data split's."""
    every = [*_stage_fields(NasflowConfig, ""), *_stage_fields(DataConfig, "data")]
    return [(key, field) for key, field in every if number_kind(field["type"]) is not None]


OPTIONS = [(group, path.stem) for group in GROUPS for path in option_files(group)]


def _component_fields(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, field) of every numeric setting of the components at or under `node`."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        for field in _descriptions().get(target, []) if isinstance(target, str) else []:
            if number_kind(field["type"]) is not None:
                found.append((f"{where}.{field['name']}", field))
        for key in node:
            if not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key):
                found += _component_fields(node[key], f"{where}.{key}")
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            found += _component_fields(node[i], f"{where}[{i}]")
    return found


def component_settings(group: str, option: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, field) of every numeric setting that `option` of `group` builds."""
    return _component_fields(compose_option(group, option)[group], group)


# The stage settings, found in the dataclasses at collection; each option's components'
# settings are found in the test that checks them (composing every option here would make
# each test worker compose them all before it runs a test).
STAGE_SETTINGS = stage_settings()
STAGE_KEYS = [key for key, _ in STAGE_SETTINGS]


def _set(cfg: DictConfig, key: str, field: dict[str, Any], value: Any) -> str:
    """Set `key` of `cfg` to `value` (a list's or a dict's only element for a list or
    dict setting, OmegaConf checking its type); the key a message should name."""
    kind = field["type"].removeprefix("Optional[")
    if kind.startswith("list["):
        value, named = [value], f"{key}[0]"
    elif kind.startswith("dict["):
        value, named = {"x": value}, f"{key}.x"
        OmegaConf.update(cfg, key, {}, merge=False)
    else:
        named = key
    OmegaConf.update(cfg, key, value, merge=False)
    return named


def _allowed(value: int, field: dict[str, Any]) -> bool:
    return all(BOUNDS[bound](value, limit) for bound, limit in field["range"].items())


def _declares_a_range(key: str, field: dict[str, Any]) -> None:
    assert field.get("range"), f"{key} declares no range: annotate it, e.g. Annotated[int, Ge(1)]"


def _refused_in_one_line(group: str, option: str, key: str, field: dict[str, Any]) -> None:
    """Out of the declared range: one line naming the key, its range and the value. In
    it: no error. A word: OmegaConf refuses it, naming the key (as it does an override
    at composition, below)."""
    assert "range" in field, f"{key} declares no range"
    cfg = compose_option(group, option)
    for value in TRIED:
        named = _set(cfg, key, field, value)
        if _allowed(value, field):
            check_settings(cfg)
            continue
        with pytest.raises(NasflowError) as error:
            check_settings(cfg)
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(f"{named} must be "), message
        assert message.endswith((f"got {value!r}", f"got {float(value)!r}")), message
    with pytest.raises(ValidationError) as error:
        _set(cfg, key, field, "many")
    assert f"full_key: {named}" in str(error.value)


# The stage settings in the default config (whose strategy is random).
@pytest.mark.parametrize(("key", "field"), STAGE_SETTINGS, ids=STAGE_KEYS)
def test_every_numeric_stage_setting_declares_a_range(key: str, field: dict[str, Any]) -> None:
    _declares_a_range(key, field)


@pytest.mark.parametrize(("key", "field"), STAGE_SETTINGS, ids=STAGE_KEYS)
def test_a_stage_setting_s_zero_minus_one_and_a_word_are_refused_in_one_line(
    key: str, field: dict[str, Any]
) -> None:
    _refused_in_one_line("strategy", "random", key, field)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_numeric_setting_of_an_option_declares_a_range(group: str, option: str) -> None:
    for key, field in component_settings(group, option):
        _declares_a_range(key, field)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_an_option_s_zero_minus_one_and_a_word_are_refused_in_one_line_naming_the_key(
    group: str, option: str
) -> None:
    for key, field in component_settings(group, option):
        _refused_in_one_line(group, option, key, field)


def test_the_settings_are_found() -> None:
    """The walk finds what is known to be there, nested settings included."""
    keys = set(STAGE_KEYS) | {
        f"{group}={option}:{key}"
        for group, option in OPTIONS
        for key, _ in component_settings(group, option)
    }
    assert {
        "seed",
        "retrain.batch_size",
        "search.patience",
        "data.val_fraction",
        "proxy_benchmark.batch_sizes",
        "estimator=training:estimator.epochs",
        "estimator=prefilter_sh:estimator.then.then.epochs",
        "estimator=prefilter_sh:estimator.ranker.batch_size",
        "strategy=darts:strategy.w_lr",
        "search_space=chain:search_space.filters",
        "data=image_folder:data.source.image_size",
    } <= keys


@pytest.mark.parametrize(
    "override", ["seed=many", "data.val_fraction=many", "retrain.epochs=many", "strategy.seed=x"]
)
def test_a_word_fails_at_composition_naming_the_key(override: str) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config([override])
    assert override in str(error.value)
    assert "could not be converted" in str(error.value.__cause__)


def test_interpolated_values_are_checked_resolved() -> None:
    """A strategy's seed follows the top-level one: a bad seed is named where it is set;
    a setting that interpolates another is checked as it resolves."""
    with pytest.raises(NasflowError, match=r"^seed must be an integer >= 0, got -1$"):
        check_settings(compose_config(["seed=-1"]))
    cfg = compose_option("estimator", "prefilter")
    OmegaConf.update(cfg, "estimator.then.epochs", "${seed}")  # 0
    with pytest.raises(
        NasflowError, match=r"^estimator\.then\.epochs must be a positive integer, got 0$"
    ):
        check_settings(cfg)
    check_settings(compose_config(["seed=3", "estimator.epochs=${seed}"]))


def test_retraining_changes_are_checked_as_the_space_settings() -> None:
    cfg = compose_config(["search_space=darts", "+retrain.search_space.layers=2"])
    with pytest.raises(
        NasflowError, match=r"^retrain\.search_space\.layers must be an integer >= 3"
    ):
        check_settings(cfg)


def test_every_option_passes_as_it_is() -> None:
    for group in GROUPS:
        for path in option_files(group):
            check_settings(compose_option(group, path.stem))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "override", "expected"),
    [
        ("search", "estimator.epochs=0", "estimator.epochs must be a positive integer, got 0"),
        ("search", "estimator.epochs=-1", "estimator.epochs must be a positive integer, got -1"),
        ("retrain", "retrain.batch_size=0", "retrain.batch_size must be a positive integer, got 0"),
    ],
)
def test_the_entry_points_say_it_in_one_line(
    stage: str, override: str, expected: str, tmp_path: Path
) -> None:
    paths = [f"paths.{p}={tmp_path / p}" for p in ("search", "checkpoints", "retrain")]
    result = run_stage(stage, override, "tracking=none", *paths)
    assert_one_line_error(result, expected)
    assert not any(tmp_path.iterdir()), "nothing is written before the settings are checked"


@pytest.mark.parametrize(
    ("stage", "overrides", "expected"),
    [
        (
            "search",
            ["estimator.optimizer.lr=-1"],
            "estimator.optimizer (torch.optim.AdamW) refuses its settings: "
            "Invalid learning rate: -1",
        ),
        (
            "search",
            ["estimator=prefilter_sh", "estimator.then.then.optimizer.weight_decay=-1"],
            "estimator.then.then.optimizer (torch.optim.AdamW) refuses its settings: "
            "Invalid weight_decay value: -1",
        ),
        (
            "retrain",
            ["retrain.optimizer.lr=-1"],
            "retrain.optimizer (torch.optim.AdamW) refuses its settings: Invalid learning rate: -1",
        ),
        (
            "retrain",
            ["trainer.precision=banana"],
            "trainer (pytorch_lightning.Trainer) refuses its settings: "
            "Precision 'banana' is invalid. Allowed precision values: (",
        ),
        (
            "retrain",
            ["retrain.strategy=dpp"],
            "trainer with retrain.devices=1 and retrain.strategy=dpp (pytorch_lightning.Trainer) "
            "refuses its settings: You selected an invalid strategy name: `strategy='dpp'`.",
        ),
        (
            "retrain",
            ["retrain.devices=0"],
            "trainer with retrain.devices=0 and retrain.strategy=auto (pytorch_lightning.Trainer) "
            "refuses its settings: `Trainer(devices=0)` value is not a valid input",
        ),
    ],
)
def test_optimizer_and_trainer_settings_are_checked_by_their_library_before_any_work(
    stage: str, overrides: list[str], expected: str, tmp_path: Path
) -> None:
    """An optimizer's settings are torch's, the Trainer's Lightning's: each library checks
    its own, once, at stage start."""
    from nasflow.stages import retrain, search

    paths = [f"paths.{p}={tmp_path / p}" for p in ("search", "checkpoints", "retrain")]
    cfg = compose_config([*overrides, "tracking=none", *paths])
    with pytest.raises(NasflowError) as error:
        {"search": search, "retrain": retrain}[stage].run(cfg)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
    assert not any(tmp_path.iterdir()), "nothing is written before the settings are checked"
