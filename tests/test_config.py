"""conf/: every option composes against its schema; params.yaml is conf/ composed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate

from nasflow.data import DataSource
from nasflow.errors import NasflowError
from nasflow.oneshot import OneShotStrategy
from nasflow.params import compose_params
from nasflow.search_spaces import SearchSpace
from nasflow.search_strategies import SearchStrategy
from tests.conftest import ROOT, compose_config, compose_option

OPTIONS = sorted(
    (group.name, option.stem)
    for group in (ROOT / "conf").iterdir()
    if group.is_dir()
    for option in group.glob("*.yaml")
)


def test_params_yaml_is_conf_composed() -> None:
    """`dvc repro` reads params.yaml as committed; it must say what conf/ says.

    After editing conf/, run `make params` (or `dvc exp run`, which rewrites it).
    """
    assert (ROOT / "params.yaml").read_text() == compose_params(ROOT / "conf")


def _target(node: Any) -> type:
    return get_class(node._target_)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group: str, option: str) -> None:
    cfg = compose_option(group, option)
    if group == "experiment":  # a recipe sets other groups' values (test_experiments.py)
        assert isinstance(instantiate(cfg.search_space), SearchSpace)
        return
    node = cfg[group]
    if group == "data":
        assert isinstance(instantiate(node.source), DataSource)
    elif group == "search_space":
        assert isinstance(instantiate(node), SearchSpace)
    elif group == "strategy":  # a one-shot search needs a cell space with a supernet
        one_shot = issubclass(_target(node), OneShotStrategy)
        space = instantiate(compose_config(["search_space=nb201"] if one_shot else []).search_space)
        assert isinstance(instantiate(node, space=space), SearchStrategy | OneShotStrategy)
    elif group == "executor":
        assert instantiate(node).name == option
    # Estimators and the trainer take runtime arguments (test_contracts.py builds them);
    # a tracker opens its store (test_pipeline.py's, in a temporary folder).


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("strategy.budgt=3", "budgt"),
        ("estimator.epochs=many", "epochs"),
        ("search_space.filters=[a]", "filters"),
        ("retrain.epoch=3", "epoch"),
        ("trainer.acelerator=gpu", "acelerator"),
    ],
)
def test_wrong_keys_and_types_fail_at_composition(override: str, named: str) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config([override])
    assert named in f"{error.value} {error.value.__cause__}"


def test_seed_reaches_the_strategy() -> None:
    assert compose_config(["seed=7"]).strategy.seed == 7


def test_hydra_plugin_registers_schemas_in_a_fresh_process(tmp_path: Path) -> None:
    """DVC composes conf/ without importing nasflow; the hydra_plugins module must suffice."""
    import subprocess
    import sys

    code = (
        "from hydra import compose, initialize_config_dir\n"
        f"with initialize_config_dir({str(ROOT / 'conf')!r}, version_base=None):\n"
        "    print(compose('config', overrides=['strategy=grid']).strategy._target_)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "nasflow.search_strategies.grid.GridSearch"


@pytest.mark.parametrize("space", ["chain", "nb201", "darts", "nasnet"])
def test_every_search_space_option_builds(space: str) -> None:
    cfg = compose_config([f"search_space={space}"])
    built = instantiate(cfg.search_space)
    assert isinstance(built, SearchSpace) and built.name == space


def test_retrain_can_stack_a_cell_larger() -> None:
    from nasflow.stages.retrain import retrain_space

    cfg = compose_config(
        [
            "search_space=darts",
            "+retrain.search_space.channels=36",
            "+retrain.search_space.layers=20",
        ]
    )
    space = retrain_space(cfg)
    assert (space.channels, space.layers) == (36, 20)
    assert instantiate(cfg.search_space).channels == 16, "the search's own space is unchanged"
    bad = compose_config(["search_space=darts", "+retrain.search_space.chanels=36"])
    with pytest.raises(NasflowError, match=r"chanels.*channels"):
        retrain_space(bad)


def test_the_committed_schemas_are_the_constructors() -> None:
    """src/nasflow/schemas.json is what the constructors' signatures generate now (Hydra
    reads it at every start instead of importing every component). After changing a
    constructor, run `make params`."""
    import json

    from nasflow.registry import COMPONENTS
    from nasflow.schemas import CACHE, generate

    assert json.loads(CACHE.read_text()) == json.loads(json.dumps(generate(COMPONENTS)))
