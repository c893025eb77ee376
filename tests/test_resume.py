"""An interrupted search continues where it stopped and ends as an uninterrupted one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nasflow.estimators import Estimator
from nasflow.executors import LocalExecutor
from nasflow.loop import Candidate, Checkpoint, Stopping, run_search
from nasflow.records import Evaluation
from nasflow.registry import STRATEGIES as REGISTERED
from nasflow.search_spaces import Architecture, NB201Space
from nasflow.search_strategies import RandomSearch, SearchStrategy
from tests.conftest import discrete_strategies

SPACE = NB201Space(channels=4, cells_per_stage=1)


class TableLikeEstimator(Estimator):
    """A deterministic score per architecture, counting calls; can be made to die."""

    def __init__(self, die_at: int | None = None) -> None:
        self.calls = 0
        self.die_at = die_at

    def evaluate(
        self, arch: Architecture, seed: int, fidelity: float | None = None, stop: Any = None
    ) -> Evaluation:
        if self.calls == self.die_at:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a training
        self.calls += 1
        return Evaluation(status="ok", score=int(arch.id[:8], 16) / 16**8 + seed % 7 * 1e-9)


SMALL = NB201Space(ops=["none", "skip_connect"])  # 64 cells: grid's budget covers them


def _make(name: str) -> Callable[[], SearchStrategy]:
    return lambda: REGISTERED[name](SMALL, budget=SMALL.size(), seed=3)  # type: ignore[no-any-return]


# Every registered ask/tell strategy (plugins' included), searching the whole small space.
STRATEGIES = {name: _make(name) for name in discrete_strategies()}


def snapshot(history: list[Candidate]) -> list[dict]:
    return [{k: v for k, v in c.to_json().items() if k != "elapsed"} for c in history]


@pytest.mark.parametrize("name", STRATEGIES)
def test_resumed_search_ends_as_an_uninterrupted_one(name: str, tmp_path: Path) -> None:
    whole = run_search(STRATEGIES[name](), TableLikeEstimator(), LocalExecutor(), seed=3)

    checkpoint = Checkpoint(tmp_path, "abc")
    with pytest.raises(KeyboardInterrupt):
        run_search(
            STRATEGIES[name](),
            TableLikeEstimator(die_at=11),
            LocalExecutor(),
            3,
            checkpoint=checkpoint,
        )
    saved = checkpoint.load()
    assert saved is not None and len(saved["history"]) == 11

    estimator = TableLikeEstimator()
    resumed = run_search(
        STRATEGIES[name](), estimator, LocalExecutor(), 3, checkpoint=checkpoint, resumed=saved
    )
    assert estimator.calls == len(whole) - 11, "nothing finished is evaluated again"
    assert snapshot(resumed) == snapshot(whole)


def test_patience_stops_a_search_that_no_longer_improves() -> None:
    history = run_search(
        RandomSearch(SPACE, budget=500, seed=0),
        TableLikeEstimator(),
        LocalExecutor(),
        0,
        stopping=Stopping(patience=20),
    )
    bests = [c.best_score for c in history]
    improved_at = [i for i in range(len(bests)) if i == 0 or bests[i] != bests[i - 1]]
    assert len(history) - 1 - improved_at[-1] == 20
    assert len(history) < 500


def test_time_limit_stops_issuing_candidates() -> None:
    history = run_search(
        RandomSearch(SPACE, budget=500, seed=0),
        TableLikeEstimator(),
        LocalExecutor(),
        0,
        stopping=Stopping(max_seconds=0.0),
    )
    assert history == []
