"""Contracts every registered component keeps, parametrized over the registries and the
option files (plugins' included: ``NASFLOW_PLUGINS`` / ``NASFLOW_CONF_PATH``), so a new
component is tested with no list to edit.

The strategy contracts (seeded, never repeating, exact resume, `discard`) run on a small
NB201 space with a fixed score per architecture: no training, milliseconds each.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate

from nasflow.estimators.base import Estimator
from nasflow.executors import LocalExecutor
from nasflow.loop import run_search
from nasflow.records import Evaluation
from nasflow.registry import COMPONENTS, STRATEGIES
from nasflow.search_spaces import Architecture, NB201Space
from nasflow.search_strategies.base import SearchStrategy
from nasflow.search_strategies.random import RandomSearch
from nasflow.stages import search
from nasflow.training import InMemoryData
from tests.conftest import compose_config, discrete_strategies, option_files

SPACE = NB201Space(ops=["none", "skip_connect", "nor_conv_3x3"])  # 729 cells
BUDGET = 40


def score(arch: Architecture) -> float:
    return int(arch.id, 16) / 16**16


def build(name: str, seed: int = 0) -> SearchStrategy:
    # A budget that covers the space, which grid search requires; the tests ask BUDGET.
    return STRATEGIES[name](SPACE, budget=SPACE.size(), seed=seed)  # type: ignore[no-any-return]


def drive(strategy: SearchStrategy, n: int) -> list[str]:
    proposed = []
    for _ in range(n):
        arch = strategy.ask()
        if arch is None:
            break
        strategy.tell(arch, Evaluation(status="ok", score=score(arch)))
        proposed.append(arch.id)
    return proposed


DISCRETE = discrete_strategies()


@pytest.mark.parametrize("name", DISCRETE)
def test_strategy_is_seeded_and_never_repeats(name: str) -> None:
    first = drive(build(name, seed=1), BUDGET)
    assert len(first) == BUDGET and len(set(first)) == BUDGET
    assert drive(build(name, seed=1), BUDGET) == first


@pytest.mark.parametrize("name", DISCRETE)
def test_strategy_resumes_exactly_from_its_state_dict(name: str) -> None:
    original = build(name, seed=2)
    drive(original, 13)
    resumed = build(name, seed=2)
    resumed.load_state_dict(pickle.loads(pickle.dumps(original.state_dict())))
    assert drive(resumed, BUDGET - 13) == drive(original, BUDGET - 13)


@pytest.mark.parametrize("name", DISCRETE)
def test_strategy_forgets_a_discarded_proposal(name: str) -> None:
    strategy = build(name, seed=3)
    told: list[str] = []
    for round_ in range(10):
        asked = [strategy.ask() for _ in range(3)]
        assert all(a is not None for a in asked)
        strategy.discard(asked[round_ % 3])  # type: ignore[arg-type]
        for arch in asked[: round_ % 3] + asked[round_ % 3 + 1 :]:
            assert arch is not None
            strategy.tell(arch, Evaluation(status="ok", score=score(arch)))
            told.append(arch.id)
    assert len(set(told)) == len(told) == 20, "evaluated proposals never repeat"
    state = copy.deepcopy(strategy.state_dict())
    strategy.load_state_dict(state)  # the state stays consistent after discards
    assert strategy.ask() is not None


def test_every_component_registers_under_its_option_name() -> None:
    """Each option file names the schema of a registered component of its group."""
    for registry in COMPONENTS:
        registry.load()
        for path in option_files(registry.group):
            text = path.read_text()
            assert f"/schema/{registry.group}/" in text, f"{path} builds on no schema"
            named = text.split(f"/schema/{registry.group}/")[1].split("@")[0]
            assert named in registry, f"{path}: {named!r} is not a registered {registry.kind}"


# -- every estimator option builds and evaluates -------------------------------------------


def _leaf_class(node: Any) -> type:
    while "then" in node:
        node = node.then
    module, _, name = node._target_.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)  # type: ignore[no-any-return]


ESTIMATOR_OPTIONS = [p.stem for p in option_files("estimator")]


@pytest.mark.parametrize("option", ESTIMATOR_OPTIONS)
def test_every_estimator_option_builds_and_evaluates(option: str, prepared_digits: Path) -> None:
    cfg = compose_config([f"estimator={option}"])
    needs = getattr(_leaf_class(cfg.estimator), "needs_space", None)
    # A table's chain is looked up, not trained; a trained chain is cut to two epochs.
    tiny = [f"search_space={needs}"] if needs else ["search_space.max_layers=2"]
    shorter = [] if needs else _epochs_of(cfg.estimator)
    cfg = compose_config([f"estimator={option}", *tiny, *shorter])
    data = InMemoryData.load(prepared_digits, ("train", "val"))
    space = instantiate(cfg.search_space)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))
    assert isinstance(estimator, Estimator)
    history = run_search(RandomSearch(space, budget=2, seed=0), estimator, LocalExecutor(), 0)
    assert history and all(c.evaluation.status in ("ok", "stopped") for c in history)


def _epochs_of(node: Any, prefix: str = "estimator") -> list[str]:
    """Overrides that shorten every training in an estimator's chain to two epochs."""
    found = []
    if "epochs" in node and node._target_.endswith("TrainingEstimator"):
        found.append(f"{prefix}.epochs=2")  # a rung of 1 below it
    if "rungs" in node:
        found.append(f"{prefix}.rungs=[1]")
    if "then" in node:
        found += _epochs_of(node.then, f"{prefix}.then")
    return found


# -- every strategy option runs a two-candidate search in the search stage ---------------


STRATEGY_OPTIONS = [p.stem for p in option_files("strategy")]


@pytest.mark.parametrize("option", STRATEGY_OPTIONS)
def test_every_strategy_option_runs_in_the_search_stage(
    option: str, tmp_path: Path, prepared_digits: Path
) -> None:
    node = compose_config([f"strategy={option}", "search_space=nb201"]).strategy
    # Two candidates of one epoch for an ask/tell strategy (the cost limit; grid keeps its
    # budget, which must cover the space); two supernet epochs on a slice of the data for
    # a one-shot one (whatever the option is called, its settings say which it is).
    if "budget" in node:
        shrink = ["search.max_cost=2"]
    else:
        shrink = ["strategy.epochs=2", "strategy.train_limit=64", "strategy.val_limit=64"]
        if node.get("prune_epoch") is not None:
            shrink += ["strategy.prune_epoch=1", "strategy.warmup_epochs=0"]
    cfg = compose_config(
        [
            f"strategy={option}",
            "search_space=nb201",
            "search_space.channels=4",
            "search_space.cells_per_stage=1",
            "search_space.ops=[skip_connect,nor_conv_3x3]",  # 64 cells
            *shrink,
            *(["strategy.channels=4", "strategy.cells=1"] if "cells" in node else []),
            "estimator.epochs=1",
            "tracking=none",
            f"paths.prepared={prepared_digits}",
            f"paths.search={tmp_path / 'search'}",
            f"paths.checkpoints={tmp_path / 'checkpoints'}",
        ]
    )
    summary = search.run(cfg)
    assert 0 <= summary["best_score"] <= 1
    best = json.loads((tmp_path / "search" / "best_architecture.json").read_text())
    assert best["space"] == "nb201"
