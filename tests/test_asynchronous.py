"""The asynchronous loop in simulated time (fast: table lookups, no training): the
simulated executor's cost model and clock, the FLOPs it reads, ASHA's promotions and
asynchronous Hyperband's brackets."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hydra.utils import instantiate

from nasflow.estimators import ASHA, AsyncHyperband, NB201TableEstimator
from nasflow.estimators.tabular import cell_flops
from nasflow.executors import LocalExecutor, SimulatedExecutor
from nasflow.loop import Candidate, run_search
from nasflow.measure import count_flops
from nasflow.search_spaces import NB201Space
from nasflow.tabular.nb201 import load_table
from tests.conftest import compose_config

SPACE = NB201Space()


def nb201_search(
    executor: Any, strategy: str = "evolution", estimator: str = "nb201_table", budget: int = 60
) -> list[Candidate]:
    cfg = compose_config(
        [f"strategy={strategy}", "search_space=nb201", f"estimator={estimator}",
         f"strategy.budget={budget}"]
    )  # fmt: skip
    space = instantiate(cfg.search_space)
    strategy_ = instantiate(cfg.strategy, space=space)
    estimator_ = instantiate(cfg.estimator, space=space, data=None, trainer=None)
    with executor:
        return run_search(strategy_, estimator_, executor, cfg.seed)


def outcome(history: list[Candidate]) -> list[tuple[int, str, float | None, float]]:
    """What a search found, in order, without its times."""
    return [(c.proposal, c.arch.id, c.evaluation.score, c.evaluation.cost) for c in history]


# -- the FLOPs the cost model reads ----------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "shape", "classes"),
    [
        ("cifar10", (3, 32, 32), 10),
        ("cifar100", (3, 32, 32), 100),
        ("imagenet16", (3, 16, 16), 120),
    ],
)
@pytest.mark.parametrize("row", [0, 857, 6111, 15624])
def test_a_cells_flops_are_what_torch_counts_for_its_network(
    dataset: str, shape: tuple[int, int, int], classes: int, row: int
) -> None:
    cell = SPACE.parse(load_table().row(row)["arch"])
    network = SPACE.build(cell, shape, num_classes=classes)
    assert cell_flops(cell.edges, dataset) == count_flops(network, shape)


def test_the_table_estimator_reports_each_cells_flops() -> None:
    cell = SPACE.parse(load_table().row(6111)["arch"])
    evaluation = NB201TableEstimator(SPACE).evaluate(cell, seed=0)
    assert evaluation.flops == cell_flops(cell.edges) > 0


# -- the simulated executor ----------------------------------------------------------------


def test_a_simulated_task_lasts_what_the_cost_model_says() -> None:
    executor = SimulatedExecutor(workers=1, seconds_per_epoch=2.0, seconds_per_gflop=10.0)
    [candidate] = nb201_search(executor, "random", budget=1)
    evaluation = candidate.evaluation
    expected = evaluation.cost * (2.0 + 10.0 * evaluation.flops / 1e9)
    assert evaluation.seconds == pytest.approx(expected)
    assert candidate.elapsed == pytest.approx(expected)  # the loop's clock is simulated


def test_one_simulated_worker_is_the_sequential_search() -> None:
    assert outcome(nb201_search(SimulatedExecutor(workers=1))) == outcome(
        nb201_search(LocalExecutor())
    )


def test_simulated_workers_overlap_and_finish_in_order_of_their_end() -> None:
    history = nb201_search(SimulatedExecutor(workers=4), "random", budget=40)
    ends = [c.elapsed for c in history]
    assert ends == sorted(ends)
    total = sum(c.evaluation.seconds for c in history)
    # Four at a time: the search ends after a quarter of the training time, give or take
    # the candidates still running when the last one is asked.
    assert total / 4 <= ends[-1] <= total / 4 + max(c.evaluation.seconds for c in history)
    # Random search proposes the same cells whatever the results: the same candidates as
    # the sequential search, in another order.
    sequential = nb201_search(LocalExecutor(), "random", budget=40)
    assert sorted(outcome(history)) == sorted(outcome(sequential))
    assert outcome(history) != outcome(sequential)


# -- ASHA ------------------------------------------------------------------------------------


def test_asha_promotes_a_candidate_in_the_best_third_of_its_rung_so_far() -> None:
    assert ASHA(NB201TableEstimator(SPACE), rungs=[12]).starts == [0]  # one bracket
    history = nb201_search(SimulatedExecutor(workers=1), "random", "nb201_asha", budget=30)
    seen: list[float] = []
    for candidate in history:  # one worker: each candidate's rung ends before the next's
        rung = candidate.evaluation.rungs[0]
        # Equal earlier results rank first (the table has no loss to break ties).
        place = 1 + sum(score >= rung["score"] for score in seen)
        seen.append(rung["score"])
        promoted = len(candidate.evaluation.rungs) == 2
        assert promoted == (place <= max(1, math.ceil(len(seen) / 3))), candidate.iteration
        assert candidate.evaluation.cost == (212.0 if promoted else 12.0)
        assert candidate.evaluation.status == ("ok" if promoted else "stopped")


def test_asha_with_workers_never_leaves_one_idle() -> None:
    """Each candidate is proposed the moment a worker frees: with 8 workers and every
    task's simulated time known, the workers are busy from 0 to the last proposal."""
    executor = SimulatedExecutor(workers=8)
    history = nb201_search(executor, "evolution", "nb201_asha", budget=80)
    assert len(history) == 80
    busy = sum(c.evaluation.seconds for c in history)
    assert busy / 8 <= executor.clock() <= busy / 8 + max(c.evaluation.seconds for c in history)


# -- asynchronous Hyperband ------------------------------------------------------------------


def test_async_hyperband_deals_proposals_to_brackets_in_hyperbands_proportions() -> None:
    estimator = AsyncHyperband(NB201TableEstimator(SPACE), rungs=[12])
    assert estimator.starts == [0, 1]  # at the 12-epoch rung, at the full 200
    assert Counter(estimator.deal) == {0: 3, 1: 2}
    assert estimator.deal == [0, 1, 0, 1, 0]  # interleaved
    halving = AsyncHyperband(NB201TableEstimator(SPACE), rungs=[12], eta=2)
    assert halving.deal == [0, 1, 0, 1]  # ceil(2 / 2 * 2) : ceil(2 / 1 * 1)


def test_async_hyperband_brackets_rank_among_their_own() -> None:
    history = nb201_search(SimulatedExecutor(workers=4), "random", "nb201_async_hyperband", 50)
    estimator = AsyncHyperband(NB201TableEstimator(SPACE), rungs=[12])
    by_bracket: dict[int, list[Candidate]] = {0: [], 1: []}
    for candidate in history:
        by_bracket[estimator.deal[candidate.proposal % 5]].append(candidate)
    # The second bracket trains at the full fidelity at once: one rung, never stopped.
    assert all(c.evaluation.cost == 200.0 for c in by_bracket[1])
    assert all(c.evaluation.status == "ok" for c in by_bracket[1])
    # The first is ASHA: 12 epochs, then 200 for the best third so far.
    stopped = [c for c in by_bracket[0] if c.evaluation.status == "stopped"]
    assert stopped and all(c.evaluation.cost == 12.0 for c in stopped)
    assert all("of bracket 1" in (c.evaluation.error or "") for c in stopped)
    assert len(by_bracket[0]) == 30 and len(by_bracket[1]) == 20


def test_asha_state_round_trips_and_reads_a_checkpoint_from_before_brackets() -> None:
    estimator = AsyncHyperband(NB201TableEstimator(SPACE), rungs=[12])
    estimator.results = [[[(-0.9, 0.5), (-0.8, math.inf)]], [[]]]
    again = AsyncHyperband(NB201TableEstimator(SPACE), rungs=[12])
    again.load_state_dict(estimator.state_dict())
    assert again.results == estimator.results
    # ASHA's first checkpoints kept one list of keys per rung, without brackets.
    asha = ASHA(NB201TableEstimator(SPACE), rungs=[12])
    asha.load_state_dict({"results": [[[-0.9, 0.5]]], "past": {}})
    assert asha.results == [[[(-0.9, 0.5)]]]
    asha.load_state_dict({"results": [[]], "past": {}})
    assert asha.results == [[[]]]
