"""Every recipe in conf/experiment/ composes and runs the pipeline end to end (shrunk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from nasflow.stages import evaluate, retrain, search
from tests.conftest import ROOT, compose_config

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# What makes each recipe slow, made small (on 8x8 digits).
SHRINK = [
    "strategy.budget=4",
    "estimator.proposals=6",
    "estimator.keep=3",
    "estimator.then.candidates=3",
    "estimator.then.then.epochs=2",
    "retrain.epochs=1",
    "tracking=none",
]
CHAIN = ["search_space.min_layers=2", "search_space.max_layers=3", "search_space.filters=[8]"]
SPACE = {"small_gray": CHAIN, "cifar_like": CHAIN, "cifar_cells": ["search_space.channels=4"]}


def test_the_recipes_are_there() -> None:
    assert {"small_gray", "cifar_like", "cifar_cells"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_recipe_sets_what_it_promises(name: str) -> None:
    cfg = compose_config([f"experiment={name}", "data=cifar10"])
    default = compose_config(["data=cifar10"])
    # A space, a strategy and a cheaper estimator of its own; longer candidate training
    # than digits' 8 epochs would be on real data, so a proxy vote and a low rung first.
    assert cfg.search_space != default.search_space
    assert cfg.strategy._target_.endswith("RegularizedEvolution")
    assert cfg.estimator._target_.endswith("PreFilter") and cfg.estimator.then.rungs == [1]
    assert cfg.data.augment.crop_padding > 0  # retraining on real data augments
    if name.startswith("cifar"):
        assert cfg.data.augment.hflip
    if name == "cifar_cells":
        assert cfg.search_space._target_.endswith("NB201Space")
    else:  # the chain recipes: convolutions only, a FLOPs bound
        assert "dense" not in cfg.search_space.ops and cfg.search.constraints


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_recipe_runs_search_retrain_and_evaluate(name: str, tiny_cfg: DictConfig) -> None:
    cfg = compose_config(
        [
            f"experiment={name}",
            *SHRINK,
            *SPACE.get(name, []),
            *[f"paths.{key}={path}" for key, path in tiny_cfg.paths.items()],
        ]
    )
    summary = search.run(cfg)
    assert summary["evaluated"] >= 3
    retrain.run(cfg)
    assert 0.0 <= evaluate.run(cfg)["test_acc"] <= 1.0
    assert (Path(cfg.paths.retrain) / "model.json").is_file()
