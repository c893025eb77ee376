"""A candidate that fails for its own reasons is recorded and the search goes on; failures
in a row are a bug, and stop the search with one line naming the last error and the log
that holds every traceback (`search.max_consecutive_failures`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nasflow.errors import NasflowError
from nasflow.estimators.base import Estimator
from nasflow.executors import LocalExecutor
from nasflow.loop import Stopping, run_search
from nasflow.records import Evaluation
from nasflow.search_spaces import Architecture, NB201Space
from nasflow.search_strategies.random import RandomSearch
from tests import launch

SPACE = NB201Space(channels=4, cells_per_stage=1)


class Failing(Estimator):
    """Fails every candidate whose index is in `failing`, as a bug inside training would."""

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.calls = 0

    def evaluate(
        self, arch: Architecture, seed: int, fidelity: float | None = None, stop: Any = None
    ) -> Evaluation:
        self.calls += 1
        if self.calls - 1 in self.failing:
            try:
                {}["missing"]  # the bug
            except KeyError as error:
                return Evaluation.failure(error)
        return Evaluation(status="ok", score=0.5)


def test_failures_in_a_row_stop_the_search_with_the_error_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "failures.log"
    with pytest.raises(NasflowError) as error:
        run_search(
            RandomSearch(SPACE, budget=50, seed=0),
            Failing(set(range(2, 50))),
            LocalExecutor(),
            0,
            stopping=Stopping(max_consecutive_failures=5),
            failure_log=log,
        )
    message = str(error.value)
    assert "the last 5 candidates failed" in message and "KeyError: 'missing'" in message
    assert str(log) in message and "\n" not in message
    text = log.read_text()
    assert text.count("--- candidate") == 5 and "Traceback (most recent call last)" in text


def test_scattered_failures_do_not_stop_the_search() -> None:
    estimator = Failing({i for i in range(40) if i % 5})  # four in a row, then one works
    history = run_search(
        RandomSearch(SPACE, budget=40, seed=0),
        estimator,
        LocalExecutor(),
        0,
        stopping=Stopping(max_consecutive_failures=5),
    )
    assert len(history) == 40


def test_no_limit_spends_the_budget() -> None:
    history = run_search(
        RandomSearch(SPACE, budget=12, seed=0),
        Failing(set(range(12))),
        LocalExecutor(),
        0,
        stopping=Stopping(max_consecutive_failures=None),
    )
    assert [c.evaluation.status for c in history] == ["failed"] * 12


def test_the_search_stage_stops_on_a_bug_in_one_line(tmp_path: Path, prepared_digits: Path) -> None:
    """A scheduler that does not take what nasflow hands it (StepLR has no T_max) fails
    inside every candidate's training."""
    prepared = prepared_digits
    done = launch.run(
        launch.stage("search", "estimator.scheduler._target_=torch.optim.lr_scheduler.StepLR",
         "+estimator.scheduler.step_size=1", "tracking=none",
         "search.max_consecutive_failures=3", f"paths.prepared={prepared}",
         f"paths.search={tmp_path / 'search'}", f"paths.checkpoints={tmp_path / 'ck'}"),
    )  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the last 3 candidates failed, the last with TypeError")
    assert "failures.log" in last and "Traceback" not in done.stderr
    assert (tmp_path / "search" / "failures.log").read_text().count("--- candidate") == 3
