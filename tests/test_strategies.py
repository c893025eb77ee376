"""Grid and random search through the ask/tell interface, and the loop that drives them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.estimators import Estimator
from nasflow.executors import LocalExecutor
from nasflow.loop import candidate_seed, run_search
from nasflow.records import Evaluation
from nasflow.search_spaces import Architecture, ChainSpace, NB201Space, SearchSpace
from nasflow.search_strategies import GridSearch, RandomSearch
from nasflow.tabular.nb201 import load_table

SPACE = ChainSpace(min_layers=2, max_layers=3, kernel_sizes=[3])  # 216 architectures


class FakeEstimator(Estimator):
    """Scores an architecture by a fixed function of its hash; fails on chosen ones."""

    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail = fail
        self.calls: list[tuple[str, int]] = []

    def evaluate(
        self, arch: Architecture, seed: int, fidelity: float | None = None, stop: Any = None
    ) -> Evaluation:
        self.calls.append((arch.id, seed))
        if arch.id in self.fail:
            return Evaluation(status="failed", error="RuntimeError: boom")
        return Evaluation(status="ok", score=int(arch.id, 16) / 16**16)


def ask_all(strategy, n: int) -> list[Architecture]:
    return [a for a in (strategy.ask() for _ in range(n)) if a is not None]


def test_random_search_is_seeded_and_never_repeats() -> None:
    first = [a.id for a in ask_all(RandomSearch(SPACE, budget=50, seed=3), 50)]
    again = [a.id for a in ask_all(RandomSearch(SPACE, budget=50, seed=3), 50)]
    other = [a.id for a in ask_all(RandomSearch(SPACE, budget=50, seed=4), 50)]
    assert first == again
    assert first != other
    assert len(set(first)) == 50


def test_random_search_stops_when_the_space_is_used_up() -> None:
    space = ChainSpace(min_layers=1, max_layers=1, ops=["conv"], filters=[8], kernel_sizes=[3])
    strategy = RandomSearch(space, budget=10, seed=0)
    assert len(ask_all(strategy, 10)) == space.size() == 2


def test_random_search_resumes_from_its_state() -> None:
    strategy = RandomSearch(SPACE, budget=20, seed=7)
    ask_all(strategy, 5)
    state = strategy.state_dict()
    rest = [a.id for a in ask_all(strategy, 5)]
    resumed = RandomSearch(SPACE, budget=20, seed=999)
    resumed.load_state_dict(state)
    assert [a.id for a in ask_all(resumed, 5)] == rest


def test_grid_search_enumerates_every_architecture_once_in_order() -> None:
    strategy = GridSearch(SPACE, budget=216)
    archs = ask_all(strategy, 300)
    assert len(archs) == len({a.id for a in archs}) == 216
    assert archs == list(SPACE.enumerate())
    assert strategy.ask() is None


def test_grid_search_over_nb201_asks_every_cell_once() -> None:
    strategy = GridSearch(NB201Space(), budget=15_625)
    archs = ask_all(strategy, 16_000)
    assert len({a.id for a in archs}) == len(archs) == 15_625
    table = load_table().columns["arch"].tolist()
    assert sorted(a.describe() for a in archs) == sorted(table)


@pytest.mark.parametrize("name", sorted(SearchSpace.registry))
def test_random_search_works_in_every_space(name: str) -> None:
    space = SearchSpace.registry[name].tiny()
    strategy = RandomSearch(space, budget=10, seed=0)
    archs = ask_all(strategy, 10)
    assert len({a.id for a in archs}) == 10
    for arch in archs:
        space.validate(arch)


def test_grid_search_resumes_at_its_position() -> None:
    strategy = GridSearch(SPACE, budget=216)
    ask_all(strategy, 10)
    resumed = GridSearch(SPACE, budget=216)
    resumed.load_state_dict(strategy.state_dict())
    assert ask_all(resumed, 3) == ask_all(strategy, 3)


def test_grid_search_refuses_a_space_larger_than_its_budget() -> None:
    with pytest.raises(NasflowError, match=r"needs 216 evaluations but strategy.budget is 100"):
        GridSearch(SPACE, budget=100)


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_budget_must_be_a_positive_integer(budget: object) -> None:
    with pytest.raises(NasflowError, match=r"strategy\.budget must be a positive integer"):
        RandomSearch(SPACE, budget=budget, seed=0)  # type: ignore[arg-type]


def test_loop_spends_the_budget_and_tracks_the_best() -> None:
    estimator = FakeEstimator()
    seen = []
    history = run_search(
        RandomSearch(SPACE, 12, seed=0), estimator, LocalExecutor(), 5, seen.append
    )
    assert [c.iteration for c in history] == list(range(12)) and seen == history
    scores = [c.evaluation.score for c in history]
    assert [c.best_score for c in history] == list(np.maximum.accumulate(scores))
    # Each candidate trains from a seed derived from the search seed and its position.
    assert [s for _, s in estimator.calls] == [candidate_seed(5, i) for i in range(12)]
    assert len({s for _, s in estimator.calls}) == 12


def test_loop_records_failed_candidates_and_goes_on() -> None:
    doomed = {a.id for a in ask_all(RandomSearch(SPACE, 3, seed=0), 3)}
    history = run_search(RandomSearch(SPACE, 6, seed=0), FakeEstimator(doomed), LocalExecutor(), 0)
    assert [c.evaluation.status for c in history] == ["failed"] * 3 + ["ok"] * 3
    assert history[2].best_score is None and history[3].best_score is not None


def test_loop_ends_when_the_strategy_runs_dry() -> None:
    space = ChainSpace(min_layers=1, max_layers=1, ops=["conv"], filters=[8], kernel_sizes=[3])
    history = run_search(GridSearch(space, budget=50), FakeEstimator(), LocalExecutor(), 0)
    assert len(history) == 2
